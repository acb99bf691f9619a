//! `clinvault totp …` (issue 15) and the login's code step: the QR code and secret for the
//! authenticator app, the first code, the recovery codes (shown once).

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use zeroize::Zeroizing;

use clinvault::api::TotpEnrolment;
use clinvault::client::totp::{LoginStep, PendingLogin, qr_lines};
use clinvault::client::{ApiClient, LoggedIn};
use clinvault::config::Config;

use super::signed_in;

#[derive(Subcommand)]
pub enum TotpCommand {
    /// Enrol an authenticator app: shows a QR code and the secret, asks for the first code,
    /// then prints one-time recovery codes.
    Enrol,
    /// End TOTP for this account, with a current code or a recovery code (CLINVAULT_TOTP).
    Disable,
    /// Whether this account has TOTP, whether its role requires it, recovery codes left.
    Status,
}

pub async fn run(cfg: &Config, cmd: TotpCommand) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    match cmd {
        TotpCommand::Enrol => {
            let e = c.totp_enrol().await?;
            show_enrolment(&e)?;
            let code = code("First code from the app: ")?;
            let recovery = c.totp_confirm(&code).await?;
            out!("TOTP enrolled: from now on, log in with a code after the password.");
            show_recovery_codes(&recovery);
        }
        TotpCommand::Disable => {
            let code = code("Current code (or a recovery code): ")?;
            c.totp_disable(&code).await?;
            out!("TOTP disabled for this account.");
        }
        TotpCommand::Status => {
            let s = c.totp_status().await?;
            out!(
                "TOTP {}{}; {} recovery codes left",
                if s.enrolled {
                    "enrolled"
                } else {
                    "not enrolled"
                },
                if s.required {
                    " (required for your role)"
                } else {
                    ""
                },
                s.recovery_codes_left
            );
        }
    }
    Ok(())
}

/// From `CLINVAULT_TOTP` or a prompt without echo.
fn code(prompt: &str) -> Result<Zeroizing<String>> {
    if let Ok(c) = std::env::var("CLINVAULT_TOTP") {
        return Ok(Zeroizing::new(c));
    }
    let c = Zeroizing::new(rpassword::prompt_password(prompt).context("reading the code")?);
    if c.trim().is_empty() {
        bail!("no code given");
    }
    Ok(c)
}

fn show_enrolment(e: &TotpEnrolment) -> Result<()> {
    out!("Scan this with an authenticator app (dark background; or type the secret):\n");
    for line in qr_lines(&e.otpauth_uri, 40).map_err(|e| anyhow::anyhow!("QR code: {e:?}"))? {
        out!("  {line}");
    }
    out!("\n  secret: {}", group4(&e.secret_base32));
    out!("  URI:    {}\n", e.otpauth_uri);
    Ok(())
}

/// `ABCD EFGH …`: easier to type into an app.
fn group4(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn show_recovery_codes(codes: &[String]) {
    out!(
        "\nRecovery codes: each works once instead of a code, if the phone is lost. They are \
         shown only now: print them or keep them in a password manager.\n"
    );
    for c in codes {
        out!("  {c}");
    }
}

/// The whole login: the password step, then (for an account that needs it) the code, or the
/// enrolment that the account's role requires.
pub async fn login(c: &mut ApiClient, email: &str, password: &str) -> Result<LoggedIn> {
    let p: PendingLogin = match c.login_start(email, password).await? {
        LoginStep::Done(logged) => return Ok(*logged),
        LoginStep::Totp(p) => p,
    };
    if p.needs_enrolment() {
        eprintln!(
            "Your role requires a second factor (TOTP) and this account has none yet: enrol now."
        );
        let e = c.login_enrol(&p).await?;
        show_enrolment(&e)?;
        let code = code("First code from the app: ")?;
        let done = c.login_totp(&p, &code).await?;
        show_recovery_codes(&done.recovery_codes);
        return Ok(done.logged);
    }
    let code = code("TOTP code (or a recovery code): ")?;
    Ok(c.login_totp(&p, &code).await?.logged)
}
