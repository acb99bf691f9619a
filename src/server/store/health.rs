//! The readiness probe's one statement.

use crate::server::error::AppError;

/// One trivial round trip: the database answers.
pub async fn ping(ex: impl sqlx::Executor<'_, Database = sqlx::Any>) -> Result<(), AppError> {
    sqlx::query("SELECT 1").execute(ex).await?;
    Ok(())
}
