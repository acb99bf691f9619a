//! The metadata database: SQLite (WAL, busy timeout) by default, PostgreSQL by `database_url`.
//! One code path through sqlx's `Any` driver; SQL is portable and always parameterized
//! (`$1` placeholders work on both), migrations are embedded per backend.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, ConnectOptions, Connection};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {what}: {source}")]
    Sqlx {
        what: &'static str,
        source: sqlx::Error,
    },
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database_url must start with postgres:// or postgresql:// (or be empty for SQLite)")]
    Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `migrations/{sqlite,postgres}/*.sql`, embedded by build.rs.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// The embedded migrations of one backend, for sqlx's migrator (same checksums as its
/// `migrate!` macro computes, so databases migrated by either agree).
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> sqlx::migrate::MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures::future::BoxFuture<
        's,
        Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    sqlx::migrate::Migration::new(
                        *version,
                        std::borrow::Cow::Borrowed(*description),
                        sqlx::migrate::MigrationType::Simple,
                        sqlx::SqlSafeStr::into_sql_str(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Opens the pool and brings the schema up to date.
pub async fn connect(
    database_url: &str,
    data: &Path,
    max_connections: u32,
) -> Result<(AnyPool, Backend), DbError> {
    install_default_drivers();
    let sx = |what| move |source| DbError::Sqlx { what, source };
    let (url, backend) = if database_url.is_empty() {
        let path = data.join("meta.db");
        // WAL is a property of the file: set it once here, with the file's creation.
        let conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .connect()
            .await
            .map_err(sx("open"))?;
        conn.close().await.map_err(sx("open"))?;
        let url = SqliteConnectOptions::from_str("sqlite://")
            .map_err(sx("url"))?
            .filename(&path)
            .to_url_lossy();
        (url.to_string(), Backend::Sqlite)
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        (database_url.to_string(), Backend::Postgres)
    } else {
        return Err(DbError::Url);
    };
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Writers queue instead of failing with "database is locked".
                    sqlx::query("PRAGMA busy_timeout = 15000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(sx("connect"))?;
    let source = match backend {
        Backend::Sqlite => Embedded(embedded::SQLITE),
        Backend::Postgres => Embedded(embedded::POSTGRES),
    };
    sqlx::migrate::Migrator::new(source)
        .await?
        .run(&pool)
        .await?;
    Ok((pool, backend))
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
