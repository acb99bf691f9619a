//! Password rules (NIST SP 800-63B-4, DESIGN.md §3). Only the client can check them: the server
//! never sees a password.

use unicode_normalization::UnicodeNormalization;

pub const MIN_PASSWORD_CHARS: usize = 15;
pub const MAX_PASSWORD_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("password is {0} characters; use at least 15 (a few unrelated words work well)")]
    TooShort(usize),
    #[error("password is {0} characters; the limit is 128")]
    TooLong(usize),
    #[error("password contains your email address or name; choose one that does not")]
    ContainsIdentity,
    #[error("password is too easy to guess ({0}); add more unrelated words")]
    TooWeak(String),
}

/// NFKC, as both the KDF and the length rule see it.
pub fn normalize_password(password: &str) -> String {
    password.nfkc().collect()
}

/// Checks a new password. `identity` holds the user's email and name (any may be empty).
pub fn check_password(password: &str, identity: &[&str]) -> Result<(), PasswordProblem> {
    // Copies of the password are wiped when this returns (issue 17).
    let normalized = zeroize::Zeroizing::new(normalize_password(password));
    let chars = normalized.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordProblem::TooShort(chars));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordProblem::TooLong(chars));
    }
    let lower = zeroize::Zeroizing::new(normalized.to_lowercase());
    let mut inputs: Vec<&str> = Vec::new();
    for item in identity {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if item.chars().count() >= 3 && lower.contains(&item.to_lowercase()) {
            return Err(PasswordProblem::ContainsIdentity);
        }
        inputs.push(item);
        // The local part of an email on its own counts too.
        if let Some((local, _)) = item.split_once('@')
            && local.chars().count() >= 3
            && lower.contains(&local.to_lowercase())
        {
            return Err(PasswordProblem::ContainsIdentity);
        }
    }
    let estimate = zxcvbn::zxcvbn(&normalized, &inputs);
    if (estimate.score() as u8) < 3 {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning().map(|w| w.to_string()))
            .unwrap_or_else(|| "score below 3 of 4".to_string());
        return Err(PasswordProblem::TooWeak(why));
    }
    Ok(())
}
