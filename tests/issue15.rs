//! Issue 15: password change and reactivation, against a real server on SQLite and PostgreSQL.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use clinvault::api::{Role, codes};
use clinvault::client::ClientError;
use clinvault::client::ledger::Ledger;
use clinvault::client::recovery::RecoveryCode;
use clinvault::client::reports::{TransferOptions, download};
use clinvault::ledger::{AccountState, Entry};
use clinvault::seal::BUNDLE_LEN;
use common::clinic::{clinic_with, release, report_bytes, upload_file, write_file};
use common::{Db, PASSWORD, TEST_KDF, cli, http, start_server};
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "seven lanterns drift over the harbour";

fn code_of(e: &ClientError) -> &str {
    e.code().unwrap_or("<no server code>")
}

/// The old password stops working, the new one opens the same keys, other sessions end and
/// the changing session goes on.
async fn password_change(db: Db) {
    let ts = start_server(db).await;
    let (here, _) = ts.patient("pia@clinic.test", "Pia Patient").await;
    let there = ts.login("pia@clinic.test").await;
    let before = ts
        .client()
        .login("pia@clinic.test", PASSWORD)
        .await
        .unwrap()
        .secrets
        .public();
    let changed = here.change_password(PASSWORD, NEW_PASSWORD).await.unwrap();
    assert_eq!(changed.secrets.public(), before, "the keys do not change");
    here.me().await.expect("the changing session goes on");
    let e = there.me().await.unwrap_err();
    assert_eq!(code_of(&e), codes::SESSION_REVOKED, "other sessions end");
    let e = ts
        .client()
        .login("pia@clinic.test", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&e),
        codes::INVALID_CREDENTIALS,
        "the old password fails"
    );
    let mut c = ts.client();
    let logged = c.login("pia@clinic.test", NEW_PASSWORD).await.unwrap();
    assert_eq!(
        logged.secrets.public(),
        before,
        "same keys under the new one"
    );
    // The same keys also unseal from the session's bundle.
    assert_eq!(
        here.unlock_session(NEW_PASSWORD)
            .await
            .unwrap()
            .secrets
            .public(),
        before
    );
    ts.handle.shutdown().await.unwrap();
}
both_backends!(
    password_change_keeps_keys_and_ends_other_sessions,
    password_change
);

/// A wrong old password: refused by the client before anything is sent, and by the server
/// when sent anyway; nothing changes either way.
async fn wrong_old_password(db: Db) {
    let ts = start_server(db).await;
    let (here, _) = ts.patient("pia@clinic.test", "Pia Patient").await;
    let there = ts.login("pia@clinic.test").await;
    let e = here
        .change_password("not the password at all, sorry", NEW_PASSWORD)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Seal(_)),
        "refused on the client: {e}"
    );
    // The same through raw HTTP, as a hostile or buggy client would send it.
    let r = http()
        .post(format!("{}/v1/auth/password", ts.url))
        .bearer_auth(here.token().unwrap())
        .json(&json!({
            "old_auth_key": "17".repeat(32),
            "salt": "22".repeat(16),
            "kdf": TEST_KDF,
            "auth_key": "33".repeat(32),
            "bundle": "44".repeat(BUNDLE_LEN),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], codes::INVALID_CREDENTIALS);
    there.me().await.expect("other sessions stay");
    ts.client()
        .login("pia@clinic.test", PASSWORD)
        .await
        .expect("the old password still works");
    let e = ts
        .client()
        .login("pia@clinic.test", NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::INVALID_CREDENTIALS);
    ts.handle.shutdown().await.unwrap();
}
both_backends!(wrong_old_password_changes_nothing, wrong_old_password);

/// The swap and the end of the other sessions are one transaction: a failure between the two
/// writes (a trigger makes the second one fail, as a crash there would) leaves the old
/// password working and the new one not: never neither, never half.
async fn interrupted_change(db: Db) {
    let ts = start_server(db).await;
    let (here, _) = ts.patient("pia@clinic.test", "Pia Patient").await;
    let there = ts.login("pia@clinic.test").await;
    let pool = ts.offline_db().await;
    match db {
        Db::Sqlite => {
            sqlx::query(
                "CREATE TRIGGER fail_revoke BEFORE UPDATE OF revoked_at ON sessions \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
            )
            .execute(&pool)
            .await
            .unwrap();
        }
        Db::Postgres => {
            sqlx::query(
                "CREATE FUNCTION fail_revoke() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "CREATE TRIGGER fail_revoke BEFORE UPDATE OF revoked_at ON sessions \
                 FOR EACH ROW EXECUTE FUNCTION fail_revoke()",
            )
            .execute(&pool)
            .await
            .unwrap();
        }
    }
    let e = here
        .change_password(PASSWORD, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Server { status: 500, .. }), "{e}");
    ts.client()
        .login("pia@clinic.test", PASSWORD)
        .await
        .expect("the old password still works");
    let e = ts
        .client()
        .login("pia@clinic.test", NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::INVALID_CREDENTIALS);
    there.me().await.expect("no session was ended");
    sqlx::query(match db {
        Db::Sqlite => "DROP TRIGGER fail_revoke",
        Db::Postgres => "DROP TRIGGER fail_revoke ON sessions",
    })
    .execute(&pool)
    .await
    .unwrap();
    here.change_password(PASSWORD, NEW_PASSWORD).await.unwrap();
    ts.client()
        .login("pia@clinic.test", NEW_PASSWORD)
        .await
        .expect("the retried change took");
    pool.close().await;
    ts.handle.shutdown().await.unwrap();
}
both_backends!(interrupted_change_leaves_one_password, interrupted_change);

/// An administrator reactivates a deactivated doctor: both changes are ledger entries, the
/// doctor logs in with the same password and keys, and peers still find those keys.
async fn reactivation(db: Db) {
    let ts = start_server(db).await;
    let admin = ts.admin().await;
    let admin_id = admin.me().await.unwrap().id;
    let (_, doc) = ts
        .staff(&admin, Role::Doctor, "doc@clinic.test", "Otto Zweit", "GP")
        .await;
    let (peer, _) = ts
        .staff(&admin, Role::Doctor, "peer@clinic.test", "Pia Peer", "GP")
        .await;
    let keys = ts
        .client()
        .login("doc@clinic.test", PASSWORD)
        .await
        .unwrap()
        .secrets
        .public();
    let e = admin.reactivate(doc).await.unwrap_err();
    assert_eq!(code_of(&e), codes::CONFLICT, "an active account");
    admin.deactivate(doc).await.unwrap();
    let e = ts
        .client()
        .login("doc@clinic.test", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::ACCOUNT_DEACTIVATED);
    let r = admin.reactivate(doc).await.unwrap();
    let logged = ts
        .client()
        .login("doc@clinic.test", PASSWORD)
        .await
        .expect("logs in again");
    assert_eq!(logged.secrets.public(), keys, "the same keys");
    let e = admin.reactivate(uuid::Uuid::new_v4()).await.unwrap_err();
    assert_eq!(code_of(&e), codes::NOT_FOUND);
    // The admin reads the whole ledger: deactivation, then reactivation, by the admin.
    let state = tempfile::tempdir().unwrap();
    let l = Ledger::sync(&admin, state.path(), None, 3600)
        .await
        .unwrap();
    let entries = l.entries(0, r.ledger_index + 1).await.unwrap();
    let status: Vec<_> = entries
        .iter()
        .filter_map(|(i, e)| match e {
            Entry::AccountStatus {
                user_id,
                state,
                admin_id: by,
                ..
            } => Some((*i, *user_id, *state, *by)),
            _ => None,
        })
        .collect();
    let (d, a) = (*doc.as_bytes(), *admin_id.as_bytes());
    assert_eq!(status.len(), 2, "{status:?}");
    assert_eq!(
        (status[0].1, status[0].2, status[0].3),
        (d, AccountState::Deactivated, a)
    );
    assert_eq!(
        status[1],
        (r.ledger_index, d, AccountState::Reactivated, a),
        "the index the route answered"
    );
    // A peer's known keys: unchanged, no key-change warning.
    let peer_state = tempfile::tempdir().unwrap();
    let pl = Ledger::sync(&peer, peer_state.path(), None, 3600)
        .await
        .unwrap();
    let k = pl.user_keys(doc, Some(Role::Doctor)).await.unwrap();
    assert_eq!(k.public_keys, keys);
    // The auditor's replay takes kind 9 like every other kind: clean.
    let (aud, _) = ts
        .staff(&admin, Role::Auditor, "aud@clinic.test", "Audrey Audit", "")
        .await;
    let aud_state = tempfile::tempdir().unwrap();
    let al = Ledger::sync(&aud, aud_state.path(), None, 3600)
        .await
        .unwrap();
    let summary = clinvault::client::audit::audit(&aud, &al, false)
        .await
        .unwrap();
    assert!(summary.clean(), "{:?}", summary.findings);
    assert!(summary.tree_size > r.ledger_index);
    ts.handle.shutdown().await.unwrap();
}
both_backends!(reactivation_keeps_keys_and_is_in_the_ledger, reactivation);

/// Everything the server process logs (the server runs in this test process), at every level.
#[derive(Clone)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let l = Logs(Arc::new(Mutex::new(Vec::new())));
        let w = l.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init()
            .expect("the only subscriber");
        l
    })
    .clone()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` (database, its journal, buckets, outbox).
fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Lost password + kit: a new password, the same keys, the report readable; a wrong code is
/// refused; neither the code nor the key it makes reaches the database, the data folder
/// (buckets, outbox) or the server's logs.
async fn recovery(db: Db) {
    let logs = logs();
    let c = clinic_with(db, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let data = report_bytes(300_000, b"RECOVERY-MARKER");
    let file = write_file(dir.path(), "panel.pdf", &data);
    let up = upload_file(&c, &file, "Blood panel").await;
    release(&c).await;
    let code = c.pat.c.make_recovery_kit(PASSWORD).await.unwrap();
    let shown = code.display().to_string();
    let keys = c.pat.me.secrets.public();

    let wrong = RecoveryCode::generate().unwrap();
    let mut fresh = c.ts.client();
    let e = fresh
        .recover("pat@clinic.test", &wrong, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::INVALID_CREDENTIALS, "a wrong code");
    let e = fresh
        .recover("nobody@clinic.test", &code, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::INVALID_CREDENTIALS, "another address");

    // Typed back loosely, as a user would.
    let typed = RecoveryCode::parse(&shown.replace('-', " ").to_lowercase()).unwrap();
    let logged = fresh
        .recover("pat@clinic.test", &typed, NEW_PASSWORD)
        .await
        .unwrap();
    assert_eq!(logged.secrets.public(), keys, "the same keys");
    let e = c.pat.c.me().await.unwrap_err();
    assert_eq!(code_of(&e), codes::SESSION_REVOKED, "earlier sessions end");
    let e =
        c.ts.client()
            .login("pat@clinic.test", PASSWORD)
            .await
            .unwrap_err();
    assert_eq!(
        code_of(&e),
        codes::INVALID_CREDENTIALS,
        "the old password is gone"
    );
    let state = tempfile::tempdir().unwrap();
    let l = Ledger::sync(&fresh, state.path(), None, 3600)
        .await
        .unwrap();
    let target = dir.path().join("back.pdf");
    download(
        &fresh,
        &logged,
        &l,
        up.report_id,
        &target,
        &TransferOptions::new(2),
    )
    .await
    .expect("the report opens with the recovered keys");
    assert!(std::fs::read(&target).unwrap() == data);

    // The code, in any spelling, and the key it makes appear nowhere on the server's side.
    let plain = shown.replace('-', "");
    let wrap = code.wrap_key().0;
    let wrap_hex: String = wrap.iter().map(|b| format!("{b:02x}")).collect();
    let needles: Vec<&[u8]> = vec![
        shown.as_bytes(),
        plain.as_bytes(),
        &plain.as_bytes()[..16],
        &wrap[..],
        wrap_hex.as_bytes(),
    ];
    let mut files = Vec::new();
    files_under(c.ts.dir.path(), &mut files);
    assert!(files.len() > 3, "database, buckets and outbox: {files:?}");
    // The search finds what is there: the address is in the outbox (and the SQLite file).
    assert!(
        files
            .iter()
            .any(|f| contains(&std::fs::read(f).unwrap(), b"pat@clinic.test"))
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in &needles {
            assert!(
                !contains(&bytes, n),
                "{} holds the recovery code",
                f.display()
            );
        }
    }
    if db == Db::Postgres {
        let pool = c.ts.offline_db().await;
        for table in ["users", "sessions", "rate_limits", "ledger_entries"] {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text FROM {table} t"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            let all = rows.join("\n").into_bytes();
            for n in &needles {
                assert!(!contains(&all, n), "table {table} holds the recovery code");
            }
        }
        pool.close().await;
    }
    let log = logs.0.lock().unwrap().clone();
    assert!(
        contains(&log, b"password reset with the recovery kit"),
        "the logs are captured"
    );
    for n in &needles {
        assert!(!contains(&log, n), "the logs hold the recovery code");
    }
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(recovery_kit_gives_back_the_same_keys, recovery);

/// Guessing codes online is counted like logins: after `account_failures` wrong codes even
/// the right one waits out the back-off; a user without a kit answers like a wrong code.
async fn recovery_guessing(db: Db) {
    let ts = start_server(db).await;
    let (p, _) = ts.patient("pia@clinic.test", "Pia Patient").await;
    let code = p.make_recovery_kit(PASSWORD).await.unwrap();
    ts.patient("nokit@clinic.test", "No Kit").await;
    let mut c = ts.client();
    let e = c
        .recover("nokit@clinic.test", &code, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::INVALID_CREDENTIALS);
    for _ in 0..ts.config.server.account_failures {
        let wrong = RecoveryCode::generate().unwrap();
        let e = c
            .recover("pia@clinic.test", &wrong, NEW_PASSWORD)
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), codes::INVALID_CREDENTIALS);
    }
    let e = c
        .recover("pia@clinic.test", &code, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::RATE_LIMITED, "backed off: {e}");
    ts.client()
        .login("pia@clinic.test", PASSWORD)
        .await
        .expect("nothing changed");
    // A kit can only be made with the password, not with a session token alone.
    let r = http()
        .post(format!("{}/v1/auth/recovery-kit", ts.url))
        .bearer_auth(p.token().unwrap())
        .json(&json!({
            "auth_key": "17".repeat(32),
            "recovery_auth": "22".repeat(32),
            "recovery_bundle": "44".repeat(BUNDLE_LEN),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    ts.handle.shutdown().await.unwrap();
}
both_backends!(recovery_guessing_is_rate_limited, recovery_guessing);

// ---------------------------------------------------------------- the binary

/// The commands end to end: registration prints a kit, `password` changes the password,
/// `recover` sets another with the printed code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_password_and_recovery() {
    let ts = start_server(Db::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (d, url) = (dir.path(), ts.url.as_str());
    let email = "cli@clinic.test";
    let pw = [("CLINVAULT_PASSWORD", PASSWORD)];
    let reg = ["register", "--email", email, "--name", "Cleo Line"];
    let (rc, out, err) = cli(d, url, &[&reg[..], &["--request-code"]].concat(), &[]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let vid = out.trim().to_string();
    let code = common::six_digits(&ts.last_mail(email));
    let (rc, out, err) = cli(
        d,
        url,
        &[&reg[..], &["--verification", &vid, "--code", &code]].concat(),
        &pw,
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("Recovery code:") && out.contains("shown only this once"));
    let kit = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 44 && l.split('-').count() == 9)
        .expect("the recovery code is printed")
        .to_string();
    let (rc, out, err) = cli(d, url, &["login", "--email", email], &pw).await;
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = cli(
        d,
        url,
        &["password"],
        &[
            ("CLINVAULT_PASSWORD", PASSWORD),
            ("CLINVAULT_NEW_PASSWORD", NEW_PASSWORD),
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("password changed"), "{out}");
    let (rc, _, _) = cli(d, url, &["login", "--email", email], &pw).await;
    assert_ne!(rc, 0, "the old password fails");
    let (rc, out, err) = cli(
        d,
        url,
        &["login", "--email", email],
        &[("CLINVAULT_PASSWORD", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    let third = "violet ferries hum beneath old bridges";
    let (rc, out, err) = cli(
        d,
        url,
        &["recover", "--email", email],
        &[
            ("CLINVAULT_RECOVERY_CODE", &kit),
            ("CLINVAULT_NEW_PASSWORD", third),
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("new password set"), "{out}");
    let (rc, out, err) = cli(d, url, &["whoami"], &[]).await;
    assert_eq!(rc, 0, "recover left a session: {out}{err}");
    ts.client()
        .login(email, third)
        .await
        .expect("the recovered password works");
    ts.handle.shutdown().await.unwrap();
}
