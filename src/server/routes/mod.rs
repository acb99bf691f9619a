//! One module per area; each returns its routes with their policies (see `policy`).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod bookings;
pub mod chunks;
pub mod doctors;
pub mod emergency;
pub mod grants;
pub mod health;
pub mod ledger;
pub mod otp;
pub mod patients;
pub mod recovery;
pub mod reports;
pub mod stations;

use uuid::Uuid;

use super::error::AppError;

pub const PER_PAGE: u32 = 20;

/// Case-folded, checked address. The check is shape only: the mailed code proves it.
pub fn fold_email(raw: &str) -> Result<String, AppError> {
    let email = raw.trim().to_lowercase();
    let bad = || AppError::bad_request("email: not an address like name@example.org");
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || email.contains(['<', '>', '"', ',', ';', '(', ')', '[', ']', '\\'])
    {
        return Err(bad());
    }
    Ok(email)
}

/// Trimmed text without control characters, `max` characters at most.
pub fn clean_text(field: &str, raw: &str, max: usize, required: bool) -> Result<String, AppError> {
    let text = raw.trim();
    if required && text.is_empty() {
        return Err(AppError::bad_request(format!("{field}: required")));
    }
    if text.chars().count() > max {
        return Err(AppError::bad_request(format!(
            "{field}: at most {max} characters"
        )));
    }
    // Stored and shown to other users: nothing that makes text read other than it is.
    crate::text::check_lines(text).map_err(|e| AppError::bad_request(format!("{field}: {e}")))?;
    Ok(text.to_string())
}

pub fn clean_phone(raw: &str) -> Result<String, AppError> {
    let p = raw.trim();
    if p.len() > 32
        || !p
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
    {
        return Err(AppError::bad_request(
            "phone: digits, spaces and + - ( ) . only, at most 32",
        ));
    }
    Ok(p.to_string())
}

/// `%text%` for `LIKE … ESCAPE '\'`, with the user's `%`, `_` and `\` taken literally.
pub fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Page number (1-based) to SQL offset.
pub fn page_offset(page: Option<u32>) -> Result<(u32, i64), AppError> {
    let page = page.unwrap_or(1);
    if page == 0 || page > 100_000 {
        return Err(AppError::bad_request("page: from 1"));
    }
    Ok((page, i64::from(page - 1) * i64::from(PER_PAGE)))
}

pub fn parse_uuid(s: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(s).map_err(|_| AppError::internal("bad id in database"))
}

pub fn ms_to_utc(ms: i64) -> Result<chrono::DateTime<chrono::Utc>, AppError> {
    chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| AppError::internal("bad time"))
}
