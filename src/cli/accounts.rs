//! Registration, login, logout, `whoami`, `password`, and the recovery kit.

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use clap::Args;
use uuid::Uuid;

use clinvault::client::session;
use clinvault::config::Config;
use zeroize::Zeroizing;

use super::{client, password, read_line, server_url, signed_in};

#[derive(Args)]
pub struct RegisterArgs {
    /// Complete an invite with the mailed code.
    #[arg(long, conflicts_with_all = ["admin_code", "email", "name"])]
    invite: Option<String>,
    /// Register the first administrator with the code `serve` printed.
    #[arg(long)]
    admin_code: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "")]
    phone: String,
    /// Patient, non-interactive: the verification id printed by an earlier run.
    #[arg(long, requires = "code")]
    verification: Option<Uuid>,
    /// Patient, non-interactive: the mailed code.
    #[arg(long, requires = "verification")]
    code: Option<String>,
    /// Patient: only ask for the mail and print the verification id.
    #[arg(long)]
    request_code: bool,
}

pub async fn register(cfg: &Config, a: RegisterArgs) -> Result<()> {
    let c = client(cfg)?;
    if let Some(code) = a.invite {
        let info = c.invite_info(&code).await?;
        out!(
            "invite for {} <{}> as {}",
            super::shown(&info.name),
            super::shown(&info.email),
            info.role
        );
        let pw = password("New password (15+ characters): ", true)?;
        let r = c.register_invite(&code, &pw).await?;
        out!(
            "registered {} as {}; now `clinvault login --email {}`",
            r.user_id,
            r.role,
            info.email
        );
        return kit_after_registration(cfg, &info.email, &pw).await;
    }
    let email = a.email.ok_or_else(|| anyhow!("--email is required"))?;
    let name = a.name.ok_or_else(|| anyhow!("--name is required"))?;
    if let Some(code) = a.admin_code {
        let pw = password("New password (15+ characters): ", true)?;
        let r = c.register_admin(&code, &email, &name, &pw).await?;
        out!(
            "registered administrator {}; now `clinvault login --email {email}`",
            r.user_id
        );
        return kit_after_registration(cfg, &email, &pw).await;
    }
    // A patient: a mailed code proves the address.
    let (verification, code) = match (a.verification, a.code) {
        (Some(id), Some(code)) => {
            let pre = c.prelogin(&email).await?;
            (
                clinvault::api::VerifyEmailResponse {
                    verification_id: id,
                    expires_at: Utc::now(),
                    kdf: pre.kdf,
                },
                code,
            )
        }
        _ => {
            let v = c.verify_email(&email).await?;
            if a.request_code {
                out!("{}", v.verification_id);
                eprintln!(
                    "a code was mailed to {email}; finish with --verification {} --code CODE",
                    v.verification_id
                );
                return Ok(());
            }
            let code = read_line(&format!("Code mailed to {email}: "))?;
            (v, code)
        }
    };
    let pw = password("New password (15+ characters): ", true)?;
    let r = c
        .register_patient(&verification, &code, &email, &name, &a.phone, &pw)
        .await?;
    out!(
        "registered {}; now `clinvault login --email {email}`",
        r.user_id
    );
    kit_after_registration(cfg, &email, &pw).await
}

/// `clinvault login`; with `legacy_salt`, the user's opt-in for an account on the old salt
/// scheme (issue 17.9), moved to the new one at once.
pub async fn login(cfg: &Config, email: &str, legacy_salt: bool) -> Result<()> {
    let url = server_url(cfg)?;
    let mut c = client(cfg)?;
    let pw = password("Password: ", false)?;
    let t = std::time::Instant::now();
    if legacy_salt {
        c.opt_in_legacy_salt();
    }
    let logged = super::totp::login(&mut c, email, &pw).await?;
    super::monitor_self(cfg, &c, &logged).await?;
    session::save(
        &cfg.client.state_path(),
        &session::SavedSession {
            server: url,
            token: logged.login.token.clone(),
            // The address typed, which the KDF salt is bound to (not the server's echo).
            email: clinvault::client::account::normalize_email(email),
            user_id: logged.login.user.id,
            role: logged.login.user.role,
        },
    )?;
    out!(
        "logged in as {} ({}), keys {} ({:.2} s)",
        super::shown(&logged.login.user.name),
        logged.login.user.role,
        clinvault::seal::fingerprint(&logged.secrets.public()),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn logout(cfg: &Config) -> Result<()> {
    let state = cfg.client.state_path();
    if let Ok((c, _)) = signed_in(cfg)
        && let Err(e) = c.logout().await
    {
        eprintln!("the server did not confirm the logout: {e}");
    }
    session::remove(&state)?;
    out!("logged out");
    Ok(())
}

pub async fn whoami(cfg: &Config) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let me = c.me().await?;
    out!(
        "{} <{}> {} {}",
        super::shown(&me.name),
        super::shown(&me.email),
        me.role,
        me.id
    );
    Ok(())
}

/// The new password: `CLINVAULT_NEW_PASSWORD`, or asked twice without echo.
fn new_password() -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("CLINVAULT_NEW_PASSWORD") {
        return Ok(Zeroizing::new(p));
    }
    let p = Zeroizing::new(
        rpassword::prompt_password("New password (15+ characters): ")
            .context("reading the password")?,
    );
    let again =
        Zeroizing::new(rpassword::prompt_password("Repeat it: ").context("reading the password")?);
    if *again != *p {
        bail!("the two passwords differ");
    }
    Ok(p)
}

/// `clinvault password`: the same keys under a new password. The keys the old password opens
/// are checked against the ledger before anything is sealed again.
pub async fn change_password(cfg: &Config) -> Result<()> {
    let (c, saved) = signed_in(cfg)?;
    let old = password(&format!("Current password for {}: ", saved.email), false)?;
    let logged = c.unlock_session(&old).await?;
    super::monitor_self(cfg, &c, &logged).await?;
    let new = new_password()?;
    if *new == *old {
        bail!("the new password is the old one");
    }
    let changed = c.change_password(&old, &new).await?;
    out!(
        "password changed; keys {} unchanged; every other session of this account was ended",
        clinvault::seal::fingerprint(&changed.secrets.public())
    );
    Ok(())
}

const KIT_INSTRUCTION: &str = "Print this recovery code or write it down, and keep it somewhere safe \
    (not on this computer). With it you can set a new password if you forget yours; without \
    both, your reports cannot be opened again. It is shown only this once.";

fn show_kit(code: &clinvault::client::recovery::RecoveryCode) {
    out!("\nRecovery code:\n\n    {}\n", &*code.display());
    out!("{KIT_INSTRUCTION}");
}

/// Right after registration: logs in once (no session is kept) to store a recovery kit.
async fn kit_after_registration(cfg: &Config, email: &str, pw: &str) -> Result<()> {
    let mut c = client(cfg)?;
    let logged = super::totp::login(&mut c, email, pw).await?;
    super::monitor_self(cfg, &c, &logged).await?;
    let made = c.make_recovery_kit(pw).await;
    let _ = c.logout().await;
    show_kit(&made?);
    Ok(())
}

/// `clinvault recovery-kit`: a new code (the earlier one stops working).
pub async fn recovery_kit(cfg: &Config) -> Result<()> {
    let (c, saved) = signed_in(cfg)?;
    let pw = password(&format!("Password for {}: ", saved.email), false)?;
    let logged = c.unlock_session(&pw).await?;
    super::monitor_self(cfg, &c, &logged).await?;
    let code = c.make_recovery_kit(&pw).await?;
    show_kit(&code);
    out!("Any earlier recovery code no longer works.");
    Ok(())
}

/// `clinvault recover --email`: lost password, recovery code at hand.
pub async fn recover(cfg: &Config, email: &str) -> Result<()> {
    let url = server_url(cfg)?;
    let typed = match std::env::var("CLINVAULT_RECOVERY_CODE") {
        Ok(c) => Zeroizing::new(c),
        Err(_) => Zeroizing::new(
            rpassword::prompt_password("Recovery code: ").context("reading the code")?,
        ),
    };
    let code = clinvault::client::recovery::RecoveryCode::parse(&typed)?;
    let new = new_password()?;
    let mut c = client(cfg)?;
    let logged = match c.recover(email, &code, &new).await {
        Ok(l) => l,
        // The new password is set; a staff account with TOTP logs in with its code as well.
        Err(e) if e.code() == Some(clinvault::api::codes::TOTP_REQUIRED) => {
            super::totp::login(&mut c, email, &new).await?
        }
        Err(e) => return Err(e.into()),
    };
    super::monitor_self(cfg, &c, &logged).await?;
    session::save(
        &cfg.client.state_path(),
        &session::SavedSession {
            server: url,
            token: logged.login.token.clone(),
            email: clinvault::client::account::normalize_email(email),
            user_id: logged.login.user.id,
            role: logged.login.user.role,
        },
    )?;
    out!(
        "new password set and logged in; keys {} unchanged; every earlier session was ended. \
         The recovery code still works: if anyone may have seen it, make a new one with \
         `clinvault recovery-kit`.",
        clinvault::seal::fingerprint(&logged.secrets.public())
    );
    Ok(())
}

/// `clinvault accept-key --user ID`: after comparing fingerprints with the user, take the keys
/// their verified key rotation (issue 15) leads to as the ones this client knows.
pub async fn accept_key(cfg: &Config, user: Uuid) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let l = super::ledger(cfg, &c).await?;
    let change = l.accept_key_change(user).await?;
    if change.rotations.is_empty() {
        out!(
            "{}: keys {} — nothing changed since this client saw them",
            super::shown(&change.name),
            change.now
        );
        return Ok(());
    }
    for r in &change.rotations {
        out!(
            "key rotation at ledger entry {}, authorised by {}",
            r.index,
            r.by_text()
        );
    }
    out!(
        "accepted: {} now has keys {} (were {})",
        super::shown(&change.name),
        change.now,
        change.before
    );
    Ok(())
}

/// `clinvault reset-keys --email`: the user's side of a key reset, with the code an
/// administrator's reset (staff) or registering again with the address (patients) mailed.
pub async fn reset_keys(cfg: &Config, email: &str) -> Result<()> {
    let url = server_url(cfg)?;
    let code = match std::env::var("CLINVAULT_RESET_CODE") {
        Ok(c) => Zeroizing::new(c),
        Err(_) => Zeroizing::new(read_line("Reset code from the mail: ")?),
    };
    let new = new_password()?;
    let mut c = client(cfg)?;
    let (logged, index) = c.complete_key_reset(email, &code, &new).await?;
    super::monitor_self(cfg, &c, &logged).await?;
    session::save(
        &cfg.client.state_path(),
        &session::SavedSession {
            server: url,
            token: logged.login.token.clone(),
            email: clinvault::client::account::normalize_email(email),
            user_id: logged.login.user.id,
            role: logged.login.user.role,
        },
    )?;
    out!(
        "new keys {} recorded in the ledger (entry #{index}) and logged in. Your colleagues will \
         be asked to compare this fingerprint with you before sharing; reports come back as \
         their authors wrap them again. Make a recovery kit now: `clinvault recovery-kit`.",
        clinvault::seal::fingerprint(&logged.secrets.public())
    );
    Ok(())
}
