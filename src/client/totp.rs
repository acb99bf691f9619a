//! TOTP second factor (issue 15), client side: the login's code step, enrolment and
//! disabling, and the enrolment QR code drawn with Unicode half blocks.

use zeroize::Zeroizing;

use super::{ApiClient, ClientError, LoggedIn};
use crate::api::{
    Done, LoginAnswer, LoginRequest, TotpChallenge, TotpCodeRequest, TotpEnrolment,
    TotpLoginRequest, TotpLoginResponse, TotpPendingRequest, TotpRecoveryCodes, TotpStatus, codes,
};

/// Where a login stands after the password.
pub enum LoginStep {
    Done(Box<LoggedIn>),
    /// The account needs a TOTP code (or, with `needs_enrolment`, to enrol first).
    Totp(PendingLogin),
}

/// The password step passed: what the code step needs. Holds the password's master key
/// (to open the bundle once the session comes) and the password (for a KDF re-key).
pub struct PendingLogin {
    pub challenge: TotpChallenge,
    master: crate::seal::MasterKey,
    password: Zeroizing<String>,
    email: String,
    pre: crate::api::PreloginResponse,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl PendingLogin {
    /// The account's role requires TOTP and it has none: enrol, then confirm with the code.
    pub fn needs_enrolment(&self) -> bool {
        self.challenge.enrol
    }

    pub(crate) fn as_error(&self) -> ClientError {
        totp_required_error()
    }
}

pub(crate) fn totp_required_error() -> ClientError {
    ClientError::Server {
        status: 200,
        code: codes::TOTP_REQUIRED.into(),
        message: "the password is right, and this account also needs its TOTP code (second \
                  factor): log in with the code"
            .into(),
        retry_after: None,
    }
}

/// A completed code step: the session, and the recovery codes when it completed an
/// enrolment (show them once).
pub struct TotpLoggedIn {
    pub logged: LoggedIn,
    pub recovery_codes: Vec<String>,
}

impl ApiClient {
    /// Pre-login, key derivation and the password step. Accounts without TOTP are logged in
    /// at once; the others get the code step's [`PendingLogin`].
    pub async fn login_start(
        &mut self,
        email: &str,
        password: &str,
    ) -> Result<LoginStep, ClientError> {
        let allow_legacy = std::mem::take(&mut self.legacy_salt_opt_in);
        let pre = self.prelogin(email).await?;
        let master = self
            .master_key(
                email,
                password,
                &pre.salt,
                pre.salt_scheme,
                &pre.kdf,
                allow_legacy,
            )
            .await?;
        let answer: LoginAnswer = self
            .post(
                "/v1/auth/login",
                &LoginRequest {
                    email: email.into(),
                    auth_key: master.auth_key().0.to_vec().into(),
                },
            )
            .await?;
        match answer {
            LoginAnswer::Session(login) => Ok(LoginStep::Done(Box::new(
                self.finish_login(*login, &master, password, email, &pre)
                    .await?,
            ))),
            LoginAnswer::Totp { totp_required } => Ok(LoginStep::Totp(PendingLogin {
                challenge: totp_required,
                master,
                password: Zeroizing::new(password.to_string()),
                email: email.to_string(),
                pre,
            })),
        }
    }

    /// For a pending login that must enrol: a new secret for the authenticator app. The
    /// first code from it, given to [`ApiClient::login_totp`], confirms it.
    pub async fn login_enrol(&self, p: &PendingLogin) -> Result<TotpEnrolment, ClientError> {
        self.post(
            "/v1/auth/totp/login-enrol",
            &TotpPendingRequest {
                pending: p.challenge.pending.clone(),
            },
        )
        .await
    }

    /// The code step: a six-digit code or a recovery code. A wrong code can be retried with
    /// the same pending login (each counts toward the account's backoff).
    pub async fn login_totp(
        &mut self,
        p: &PendingLogin,
        code: &str,
    ) -> Result<TotpLoggedIn, ClientError> {
        let r: TotpLoginResponse = self
            .post(
                "/v1/auth/totp/login",
                &TotpLoginRequest {
                    pending: p.challenge.pending.clone(),
                    code: code.trim().to_string(),
                },
            )
            .await?;
        let logged = self
            .finish_login(r.login, &p.master, &p.password, &p.email, &p.pre)
            .await?;
        Ok(TotpLoggedIn {
            logged,
            recovery_codes: r.recovery_codes,
        })
    }

    pub async fn totp_status(&self) -> Result<TotpStatus, ClientError> {
        self.get("/v1/auth/totp", &[]).await
    }

    /// Signed in: a new, unconfirmed secret.
    pub async fn totp_enrol(&self) -> Result<TotpEnrolment, ClientError> {
        self.post("/v1/auth/totp/enrol", &serde_json::json!({}))
            .await
    }

    /// Confirms an enrolment with its first code; answers the recovery codes (shown once).
    pub async fn totp_confirm(&self, code: &str) -> Result<Vec<String>, ClientError> {
        let r: TotpRecoveryCodes = self
            .post(
                "/v1/auth/totp/confirm",
                &TotpCodeRequest {
                    code: code.trim().to_string(),
                },
            )
            .await?;
        Ok(r.recovery_codes)
    }

    /// Ends this account's TOTP, proven by a current code or a recovery code.
    pub async fn totp_disable(&self, code: &str) -> Result<(), ClientError> {
        let _: Done = self
            .post(
                "/v1/auth/totp/disable",
                &TotpCodeRequest {
                    code: code.trim().to_string(),
                },
            )
            .await?;
        Ok(())
    }
}

/// The QR code of `data` as text lines of Unicode half blocks, two modules per character
/// cell, with a quiet zone of two modules (one when that does not fit in `max_rows` lines).
/// Light modules are drawn (`█ ▀ ▄`), dark ones left blank: on a terminal's dark
/// background, or with the light-on-dark style the TUI sets, that reads as dark modules on
/// light paper. Low error correction keeps an `otpauth://` URI with an address of up to
/// about 40 characters at version 5: 41 × 21 cells.
pub fn qr_lines(data: &str, max_rows: usize) -> Result<Vec<String>, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::L)?;
    let w = code.width();
    let quiet = if (w + 4).div_ceil(2) <= max_rows {
        2
    } else {
        1
    };
    let size = w + 2 * quiet;
    let colors = code.to_colors();
    // Out of the symbol (the quiet zone) counts as light.
    let light = |x: usize, y: usize| -> bool {
        if x < quiet || y < quiet || x >= w + quiet || y >= w + quiet {
            return true;
        }
        colors[(y - quiet) * w + (x - quiet)] == qrcode::Color::Light
    };
    let mut lines = Vec::with_capacity(size.div_ceil(2));
    for row in (0..size).step_by(2) {
        let mut line = String::with_capacity(size * 3);
        for x in 0..size {
            let top = light(x, row);
            let bottom = row + 1 >= size || light(x, row + 1);
            line.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        lines.push(line);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_otpauth_uri_fits_an_80_by_24_screen() {
        let uri = crate::server::routes::totp::otpauth_uri(
            "dr.konstantin.oberholzer-weiss@clinic.example",
            "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        );
        // Version 6 for a long address: the quiet zone narrows to fit 22 rows.
        let lines = qr_lines(&uri, 22).unwrap();
        let width = lines[0].chars().count();
        assert!(lines.len() <= 22, "{} rows", lines.len());
        assert!(width <= 43, "{width} columns");
        assert!(lines.iter().all(|l| l.chars().count() == width));
        // A usual address: version 5 with the full two-module quiet zone.
        let uri = crate::server::routes::totp::otpauth_uri(
            "dana.herz@clinic.demo",
            "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        );
        let lines = qr_lines(&uri, 22).unwrap();
        assert_eq!((lines.len(), lines[0].chars().count()), (21, 41));
    }

    #[test]
    fn half_blocks_follow_the_modules() {
        let code = qrcode::QrCode::with_error_correction_level(b"x", qrcode::EcLevel::L).unwrap();
        // A one-module quiet zone (max_rows forces it): the first symbol row is the lower
        // half of line 0.
        let lines = qr_lines("x", 11).unwrap();
        let w = code.width();
        let colors = code.to_colors();
        for (x, color) in colors.iter().take(w).enumerate() {
            let c = lines[0].chars().nth(x + 1).unwrap();
            let dark = *color == qrcode::Color::Dark;
            assert_eq!(matches!(c, '▀' | ' '), dark, "column {x}: {c:?}");
        }
        // The quiet zone's column is light top to bottom.
        assert!(lines.iter().all(|l| l.starts_with('█')));
        // Two modules: line 0 is all quiet zone, the symbol begins on line 1.
        let lines = qr_lines("x", 40).unwrap();
        assert!(lines[0].chars().all(|c| c == '█'));
        for (x, color) in colors.iter().take(w).enumerate() {
            let c = lines[1].chars().nth(x + 2).unwrap();
            assert_eq!(
                c == ' ' || c == '▄',
                *color == qrcode::Color::Dark,
                "column {x}"
            );
        }
    }
}
