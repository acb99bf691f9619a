//! Shared by the `server_*` tests: a real server on 127.0.0.1:0 over a temporary folder, on
//! SQLite or (with CLINVAULT_TEST_DATABASE_URL) on a fresh PostgreSQL database, and helpers to
//! make accounts through the real API, reading codes from the file outbox.
#![allow(dead_code)]

pub mod clinic;
pub mod tui;

use std::path::Path;

use clinvault::api::{InviteRequest, Role};
use clinvault::client::ApiClient;
use clinvault::config::Config;
use clinvault::seal::KdfParams;
use clinvault::server::{ServerHandle, start};
use sqlx::Connection;
use uuid::Uuid;

pub const PASSWORD: &str = "amber trellis quietly folds marmalade";
/// Cheap Argon2id for tests only; the shipped defaults stay 64 MiB / 3 / 1.
pub const TEST_KDF: KdfParams = KdfParams {
    m_kib: 256,
    t: 1,
    p: 1,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub handle: ServerHandle,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.data = dir.to_path_buf();
    c.server.kdf = TEST_KDF;
    c.server.auth_per_address_per_minute = 100_000;
    c.server.demo = true;
    c.server.timezone = "Europe/Berlin".into();
    c.client.kdf_floor = TEST_KDF;
    c
}

/// A fresh, empty PostgreSQL database for one test.
pub async fn fresh_pg_database() -> String {
    let base = std::env::var("CLINVAULT_TEST_DATABASE_URL")
        .expect("needs PostgreSQL: set CLINVAULT_TEST_DATABASE_URL");
    let name = format!("cv_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to CLINVAULT_TEST_DATABASE_URL");
    // The name is ours (hex), not user input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    match base.rfind('/') {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => panic!("CLINVAULT_TEST_DATABASE_URL needs a database path"),
    }
}

pub async fn start_with(db: Db, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    if db == Db::Postgres {
        config.server.database_url = fresh_pg_database().await;
        // Many tests run at once against one PostgreSQL: keep each pool small.
        config.server.max_db_connections = 6;
    }
    tweak(&mut config);
    let handle = start(config.clone()).await.expect("server starts");
    let url = handle.url();
    TestServer {
        handle,
        url,
        dir,
        config,
    }
}

pub async fn start_server(db: Db) -> TestServer {
    start_with(db, |_| {}).await
}

impl TestServer {
    /// Stops the server (its folder, secrets and database stay).
    pub async fn stop(&mut self) {
        self.handle.stop().await.expect("server stops");
    }

    /// A pool of the test's own on the (stopped) server's database, as an attacker with
    /// database access alone would have.
    pub async fn offline_db(&self) -> sqlx::AnyPool {
        clinvault::server::db::connect(
            &self.config.server.database_url,
            &self.config.server.data,
            2,
        )
        .await
        .expect("open the database")
        .0
    }

    /// Starts the server again on the same address, folder and secrets.
    pub async fn start_again(&mut self) {
        let mut cfg = self.config.clone();
        cfg.server.listen = self.handle.addr.to_string();
        self.handle = start(cfg).await.expect("server starts again");
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.url, false, TEST_KDF).expect("client")
    }

    /// The newest mail to `to` in the outbox.
    pub fn last_mail(&self, to: &str) -> String {
        let dir = self.dir.path().join("outbox");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("outbox")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        for p in names.iter().rev() {
            let text = std::fs::read_to_string(p).expect("mail");
            if text
                .lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
            {
                return text;
            }
        }
        panic!("no mail to {to} in {}", dir.display());
    }

    pub fn mails_to(&self, to: &str) -> usize {
        let dir = self.dir.path().join("outbox");
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| {
                        std::fs::read_to_string(e.path())
                            .map(|t| t.lines().any(|l| l == format!("To: {to}")))
                            .unwrap_or(false)
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// Registers the first admin with the printed enrollment code and logs in.
    pub async fn admin(&self) -> ApiClient {
        let code = self
            .handle
            .admin_enrollment_code
            .clone()
            .expect("a fresh server has an enrollment code");
        let c = self.client();
        c.register_admin(&code, "admin@clinic.test", "Ada Admin", PASSWORD)
            .await
            .expect("admin registers");
        self.login("admin@clinic.test").await
    }

    pub async fn login(&self, email: &str) -> ApiClient {
        let mut c = self.client();
        c.login(email, PASSWORD).await.expect("login");
        c
    }

    /// Invites `email` as `role`, completes the invite with the mailed code, logs in.
    pub async fn staff(
        &self,
        admin: &ApiClient,
        role: Role,
        email: &str,
        name: &str,
        specialty: &str,
    ) -> (ApiClient, Uuid) {
        admin
            .invite(&InviteRequest {
                role,
                email: email.into(),
                name: name.into(),
                specialty: specialty.into(),
                bio: format!("{name} has practised for years."),
            })
            .await
            .expect("invite");
        let code = invite_code(&self.last_mail(email));
        let r = self
            .client()
            .register_invite(&code, PASSWORD)
            .await
            .expect("invite completes");
        (self.login(email).await, r.user_id)
    }

    /// A patient through verify-email and the mailed code; logged in.
    pub async fn patient(&self, email: &str, name: &str) -> (ApiClient, Uuid) {
        let c = self.client();
        let v = c.verify_email(email).await.expect("verify-email");
        let code = six_digits(&self.last_mail(email));
        let r = c
            .register_patient(&v, &code, email, name, "+49 30 1234567", PASSWORD)
            .await
            .expect("patient registers");
        (self.login(email).await, r.user_id)
    }
}

/// SQL moving a booking to have begun a second ago: visits are checked in on their day and
/// completed only once begun, and the API books only future slots. Binds: now − 1 s (ms), id.
pub const BACKDATE_BOOKING: &str =
    "UPDATE bookings SET ends_at = $1 + (ends_at - starts_at), starts_at = $1 WHERE id = $2";

/// Moves booking `id` to have begun a second ago (see `BACKDATE_BOOKING`).
pub async fn backdate_booking(db: &sqlx::AnyPool, id: Uuid) {
    sqlx::query(BACKDATE_BOOKING)
        .bind(chrono::Utc::now().timestamp_millis() - 1000)
        .bind(id.to_string())
        .execute(db)
        .await
        .expect("backdate booking");
}

/// The `XXXXX-XXXXX-XXXXX-XXXXX` code in an invite mail.
pub fn invite_code(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 23 && l.split('-').count() == 4 && !l.contains(' '))
        .expect("invite code in mail")
        .to_string()
}

/// The six-digit code in a verification mail.
pub fn six_digits(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.chars().all(|c| c.is_ascii_digit()))
        .expect("code in mail")
        .to_string()
}

/// Raw HTTP for what the typed client will not send.
pub fn http() -> reqwest::Client {
    clinvault::install_tls_provider();
    reqwest::Client::new()
}

/// Runs `body` once on SQLite (`NAME_sqlite`) and once on PostgreSQL (`NAME_postgres`, ignored
/// unless asked for).
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::common::Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs PostgreSQL: set CLINVAULT_TEST_DATABASE_URL"]
            async fn postgres() {
                super::$body($crate::common::Db::Postgres).await;
            }
        }
    };
}

/// The two buckets `.ci/run` makes on its S3 server (moto), at CLINVAULT_TEST_S3_ENDPOINT.
pub fn s3_buckets() -> Vec<clinvault::server::chunk_store::BucketConfig> {
    let endpoint = std::env::var("CLINVAULT_TEST_S3_ENDPOINT")
        .expect("needs an S3 server: set CLINVAULT_TEST_S3_ENDPOINT");
    ["cv-a", "cv-b"]
        .into_iter()
        .map(|b| clinvault::server::chunk_store::BucketConfig::S3 {
            name: b.to_string(),
            bucket: b.to_string(),
            endpoint: Some(endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            path_style: true,
            allow_http: true,
        })
        .collect()
}

/// Runs the real binary with its own config and state folder (the test KDF floor) against
/// `url`, with no secret taken from the caller's environment: (exit code, stdout, stderr).
pub async fn cli(
    dir: &Path,
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[client]\nserver = \"{url}\"\nstate_dir = \"{}\"\n\n[client.kdf_floor]\nm_kib = 256\nt = 1\np = 1\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_clinvault"));
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .current_dir(dir);
    for secret in [
        "CLINVAULT_LOG",
        "CLINVAULT_PASSWORD",
        "CLINVAULT_NEW_PASSWORD",
        "CLINVAULT_RECOVERY_CODE",
        "CLINVAULT_RESET_CODE",
        "CLINVAULT_TOTP",
    ] {
        cmd.env_remove(secret);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks that ledger entry `index`, as the server stored it, rotates `user`'s keys from `old`
/// to `new`, `by` whom, with `authoriser` (all zeros: no administrator).
pub async fn assert_key_rotated(
    db: &sqlx::AnyPool,
    index: u64,
    user: uuid::Uuid,
    (old, new): (&clinvault::seal::PublicKeys, &clinvault::seal::PublicKeys),
    by: clinvault::ledger::RotationBy,
    authoriser: [u8; 16],
) {
    use clinvault::ledger::{Entry, keys_hash};
    let bytes: Vec<u8> = sqlx::query_scalar("SELECT entry FROM ledger_entries WHERE idx = $1")
        .bind(index as i64)
        .fetch_one(db)
        .await
        .unwrap();
    match Entry::from_bytes(&bytes).unwrap() {
        Entry::KeyRotated {
            user_id,
            old_keys_hash,
            x25519_public,
            ed25519_public,
            by: entry_by,
            authoriser_id,
            ..
        } => {
            assert_eq!(user_id, *user.as_bytes());
            assert_eq!(old_keys_hash, keys_hash(&old.x25519, &old.ed25519));
            assert_eq!((x25519_public, ed25519_public), (new.x25519, new.ed25519));
            assert_eq!(entry_by, by);
            assert_eq!(authoriser_id, authoriser, "authoriser");
        }
        other => panic!("entry {index} is {other:?}"),
    }
}
