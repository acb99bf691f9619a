//! The SQL of the ledger routes' reads that are not the ledger store's own: a user's keys with
//! the entry that registered them, and every key entry naming the user.

use sqlx::Row;
use uuid::Uuid;

use crate::api::LedgerEntryOut;
use crate::server::error::AppError;

/// A user's row for the keys answer (`id`, `name`, `role`, `x25519_pub`, `ed25519_pub`,
/// `key_index`, and the entry at `key_index` as `key_entry`).
pub async fn user_keys_row(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<Option<sqlx::any::AnyRow>, AppError> {
    Ok(sqlx::query(
        "SELECT u.id, u.name, u.role, u.x25519_pub, u.ed25519_pub, u.key_index, le.entry AS key_entry \
         FROM users u LEFT JOIN ledger_entries le ON le.idx = u.key_index WHERE u.id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(ex)
    .await?)
}

/// Every key registration (kind 1) and key rotation (kind 10) naming `user`, in order.
pub async fn key_entries(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    user: Uuid,
) -> Result<Vec<LedgerEntryOut>, AppError> {
    sqlx::query(
        "SELECT e.idx, e.entry FROM ledger_entries e JOIN ledger_subjects s ON s.idx = e.idx \
         WHERE s.user_id = $1 AND e.kind IN (1, 10) ORDER BY e.idx",
    )
    .bind(user.to_string())
    .fetch_all(ex)
    .await?
    .into_iter()
    .map(|r| {
        let idx: i64 = r.try_get("idx")?;
        Ok(LedgerEntryOut {
            index: u64::try_from(idx).map_err(|_| AppError::internal("negative index"))?,
            entry: r.try_get("entry")?,
            authenticated: None,
        })
    })
    .collect()
}
