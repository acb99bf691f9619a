//! The SQL about accounts that several routes share.

use uuid::Uuid;

use crate::server::error::AppError;

/// A user's display name (for mails and answers); an error when there is no such user.
pub async fn name(
    ex: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: Uuid,
) -> Result<String, AppError> {
    Ok(sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(ex)
        .await?)
}
