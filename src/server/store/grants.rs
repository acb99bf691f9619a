//! The SQL of grants (DESIGN.md §5): the request, the patient's approval, the wrap of the key
//! to the reader and the revocation. The route decides who may do what; these functions run
//! its statements, on the pool, a connection or the route's transaction as it passes.

use sqlx::Row;
use uuid::Uuid;

use crate::api::Grant;
use crate::server::db::now_ms;
use crate::server::error::AppError;
use crate::server::routes::{ms_to_utc, parse_uuid};

/// The columns [`grant_row`] reads, with the reader's name, the report's patient and author,
/// the approval's ledger entry and the open mailed code.
const GRANT_SELECT: &str = "SELECT g.id, g.report_id, g.reader_id, g.status, g.created_at, g.expires_at, \
     g.approved_at, g.approval_index, g.consent_sig, u.name AS reader_name, r.patient_id, r.author_id, \
     le.entry AS approval_entry, \
     (SELECT o.id FROM otp_requests o WHERE o.grant_id = g.id AND o.used_at IS NULL ORDER BY o.created_at DESC LIMIT 1) AS request_id \
     FROM grants g JOIN reports r ON r.id = g.report_id JOIN users u ON u.id = g.reader_id \
     LEFT JOIN ledger_entries le ON le.idx = g.approval_index";

/// A grant row; a grant past its expiry shows as `expired` unless it was revoked.
fn grant_row(r: &sqlx::any::AnyRow) -> Result<Grant, AppError> {
    let now = now_ms();
    let expires: i64 = r.try_get("expires_at")?;
    let mut status: String = r.try_get("status")?;
    if expires <= now && status != "revoked" {
        status = "expired".into();
    }
    let approval: Option<i64> = r.try_get("approval_index")?;
    let approved: Option<i64> = r.try_get("approved_at")?;
    Ok(Grant {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        report_id: parse_uuid(&r.try_get::<String, _>("report_id")?)?,
        reader_id: parse_uuid(&r.try_get::<String, _>("reader_id")?)?,
        reader_name: r.try_get("reader_name")?,
        patient_id: parse_uuid(&r.try_get::<String, _>("patient_id")?)?,
        author_id: parse_uuid(&r.try_get::<String, _>("author_id")?)?,
        status,
        created_at: ms_to_utc(r.try_get("created_at")?)?,
        expires_at: ms_to_utc(expires)?,
        approved_at: approved.map(ms_to_utc).transpose()?,
        approval_index: approval.and_then(|i| u64::try_from(i).ok()),
        approval_entry: r.try_get("approval_entry")?,
        consent_signature: r.try_get("consent_sig")?,
        request_id: r
            .try_get::<Option<String>, _>("request_id")?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
    })
}

/// One grant by id, whoever may see it (the route checks that).
pub async fn load(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<Option<Grant>, AppError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{GRANT_SELECT} WHERE g.id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(ex)
    .await?;
    row.as_ref().map(grant_row).transpose()
}

/// The newest 200 grants `user` reads, or on reports `user` is the patient or author of.
pub async fn list_for(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
) -> Result<Vec<Grant>, AppError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{GRANT_SELECT} WHERE g.reader_id = $1 OR r.patient_id = $1 OR r.author_id = $1 \
         ORDER BY g.created_at DESC LIMIT 200"
    )))
    .bind(user.to_string())
    .fetch_all(ex)
    .await?;
    rows.iter().map(grant_row).collect()
}

/// Whether `reader` already has a grant on `report` that is neither revoked nor expired at
/// `now`, so a second request is refused.
pub async fn has_live(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    report: Uuid,
    reader: Uuid,
    now: i64,
) -> Result<bool, AppError> {
    let live: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM grants WHERE report_id = $1 AND reader_id = $2 AND status <> 'revoked' AND expires_at > $3",
    )
    .bind(report.to_string())
    .bind(reader.to_string())
    .bind(now)
    .fetch_optional(ex)
    .await?;
    Ok(live.is_some())
}

/// Inserts a `requested` grant.
pub async fn insert_requested(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    report: Uuid,
    reader: Uuid,
    now: i64,
    expires: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO grants (id, report_id, reader_id, status, created_at, expires_at) \
         VALUES ($1, $2, $3, 'requested', $4, $5)",
    )
    .bind(id.to_string())
    .bind(report.to_string())
    .bind(reader.to_string())
    .bind(now)
    .bind(expires)
    .execute(ex)
    .await?;
    Ok(())
}

/// A user's stored Ed25519 public key, as stored (the caller checks its length).
pub async fn ed25519_pub(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<Vec<u8>, AppError> {
    Ok(
        sqlx::query_scalar("SELECT ed25519_pub FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(ex)
            .await?,
    )
}

/// Marks a `requested` grant approved with its ledger index and the patient's signature;
/// false when it was no longer `requested`.
pub async fn mark_approved(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    now: i64,
    index: i64,
    signature: Vec<u8>,
) -> Result<bool, AppError> {
    let updated = sqlx::query(
        "UPDATE grants SET status = 'approved', how = 2, approved_at = $1, approval_index = $2, consent_sig = $3 \
         WHERE id = $4 AND status = 'requested'",
    )
    .bind(now)
    .bind(index)
    .bind(signature)
    .bind(id.to_string())
    .execute(ex)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Ends the unused mailed codes of a grant at `now`: once approved or revoked they are moot.
pub async fn expire_codes(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    grant: Uuid,
    now: i64,
) -> Result<(), AppError> {
    sqlx::query("UPDATE otp_requests SET expires_at = $1 WHERE grant_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(grant.to_string())
        .execute(ex)
        .await?;
    Ok(())
}

/// Marks an approved, unexpired grant `wrapped`; false when it was not.
pub async fn mark_wrapped(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    now: i64,
) -> Result<bool, AppError> {
    let updated = sqlx::query(
        "UPDATE grants SET status = 'wrapped' WHERE id = $1 AND status = 'approved' AND expires_at > $2",
    )
    .bind(id.to_string())
    .bind(now)
    .execute(ex)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// A wrapped key as stored for its reader, with the ledger entry that recorded it.
pub struct NewWrap<'a> {
    pub report: Uuid,
    pub reader: Uuid,
    pub wrapped: &'a [u8],
    pub wrapper: Uuid,
    pub grant: Uuid,
    pub ledger_index: i64,
    pub now: i64,
}

/// Stores the DEK wrapped to a grant's reader.
pub async fn insert_wrapped_key(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    w: &NewWrap<'_>,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO wrapped_keys (report_id, reader_id, wrapped, wrapper_id, grant_id, ledger_index, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(w.report.to_string())
    .bind(w.reader.to_string())
    .bind(w.wrapped.to_vec())
    .bind(w.wrapper.to_string())
    .bind(w.grant.to_string())
    .bind(w.ledger_index)
    .bind(w.now)
    .execute(ex)
    .await?;
    Ok(())
}

/// Whether the grant is a re-wrap request made by a key rotation (issue 15.3).
pub async fn is_rewrap(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<bool, AppError> {
    let flag: i64 = sqlx::query_scalar("SELECT rewrap FROM grants WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(ex)
        .await?;
    Ok(flag != 0)
}

/// The row of a user's two public keys (`x25519_pub`, `ed25519_pub`).
pub async fn public_keys_row(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<sqlx::any::AnyRow, AppError> {
    Ok(
        sqlx::query("SELECT x25519_pub, ed25519_pub FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(ex)
            .await?,
    )
}

/// Marks a grant revoked with its ledger index.
pub async fn mark_revoked(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
    now: i64,
    index: i64,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE grants SET status = 'revoked', revoked_at = $1, revoke_index = $2 WHERE id = $3",
    )
    .bind(now)
    .bind(index)
    .bind(id.to_string())
    .execute(ex)
    .await?;
    Ok(())
}

/// Deletes the keys wrapped under a grant: the server stops serving them.
pub async fn delete_wrapped_keys(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    grant: Uuid,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM wrapped_keys WHERE grant_id = $1")
        .bind(grant.to_string())
        .execute(ex)
        .await?;
    Ok(())
}
