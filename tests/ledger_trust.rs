//! Issue 11: trust nobody can quietly break. The key substitution of the issue reproduced with
//! database access alone (a second key entry for doctor Otto, here James Wilson): the honest
//! server refuses to sign over it; a server that signs anything (test-only hook) still meets
//! the author's client refusing to wrap, Otto's client refusing at login, and the audit. Then
//! truncation and an older copy of the database: the signer remembers and refuses.

mod common;

use clinvault::api::Role;
use clinvault::client::ClientError;
use clinvault::client::audit::{Finding, audit};
use clinvault::client::ledger::monitor_self;
use clinvault::client::reports::check_grant_for_wrap;
use clinvault::ledger::Entry;
use clinvault::server::ledger_store::{AppendKey, append};
use common::clinic::{Clinic, clinic_with, release, report_bytes, upload_file, write_file};
use common::{Db, PASSWORD, six_digits};
use sqlx::Row;

const IMPERSONATION: &str = "the ledger shows a different key for your account (entry";

/// Fresh clients after a restart (the old ones' pooled connections went with the server).
fn reconnect(c: &mut Clinic) {
    for u in [
        &mut c.doc,
        &mut c.doc2,
        &mut c.pat,
        &mut c.pat2,
        &mut c.rec,
        &mut c.auditor,
        &mut c.admin,
    ] {
        let token = u.c.token().expect("logged in").to_string();
        u.c = c.ts.client().with_token(token);
    }
}

async fn ready(c: &Clinic) -> (u16, String) {
    let r = reqwest::get(format!("{}/v1/ready", c.ts.url))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// What the attacker of the issue did, with the database only: a second kind-1 entry for
/// `user` with keys of their own, appended like the server would (leaf and parent hashes,
/// size, subjects) but with an authenticator under a key of their own, and the user's row
/// pointed at it. Returns the forged entry's index.
async fn forge_key_entry(pool: &sqlx::AnyPool, user: uuid::Uuid) -> u64 {
    let keys = clinvault::seal::UserSecrets::generate().unwrap().public();
    let entry = Entry::UserRegistered {
        time_ms: chrono::Utc::now().timestamp_millis(),
        user_id: *user.as_bytes(),
        role: clinvault::ledger::Role::Doctor,
        x25519_public: keys.x25519,
        ed25519_public: keys.ed25519,
    };
    let mut tx = pool.begin().await.unwrap();
    let not_the_servers = AppendKey::new(clinvault::seal::random_array::<32>().unwrap());
    let index = append(&mut tx, &not_the_servers, &entry, &[user.to_string()])
        .await
        .unwrap();
    sqlx::query("UPDATE users SET x25519_pub = $1, ed25519_pub = $2, key_index = $3 WHERE id = $4")
        .bind(keys.x25519.to_vec())
        .bind(keys.ed25519.to_vec())
        .bind(index as i64)
        .bind(user.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    index
}

async fn key_substitution(db: Db) {
    let mut c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "r.pdf", &report_bytes(20_000, b"otto")),
        "R",
    )
    .await;
    release(&c).await;
    // Otto (doc2) asks; the patient gives him the code; the approval is in the ledger.
    let g = c.doc2.c.grant_request(out.report_id).await.unwrap();
    let code = six_digits(&c.ts.last_mail(&c.pat.email));
    c.doc2
        .c
        .otp_verify(g.request_id.unwrap(), &code)
        .await
        .unwrap();
    // The author's client has seen Otto's key before (and records it).
    let l = c.doc.ledger().await.unwrap();
    let before = check_grant_for_wrap(&c.doc.c, &l, g.id).await.unwrap();
    let otto_fp = before.reader_fingerprint.clone();
    assert_eq!(otto_fp.len(), 24, "seal::fingerprint: five groups of four");

    let otto_row =
        sqlx::query("SELECT x25519_pub, ed25519_pub, key_index FROM users WHERE id = $1")
            .bind(c.doc2.id.to_string())
            .fetch_one(c.ts.handle.db())
            .await
            .unwrap();
    let (ox, oe, oi): (Vec<u8>, Vec<u8>, i64) = (
        otto_row.get("x25519_pub"),
        otto_row.get("ed25519_pub"),
        otto_row.get("key_index"),
    );

    // The attack, on a stopped server.
    c.ts.stop().await;
    let pool = c.ts.offline_db().await;
    let forged = forge_key_entry(&pool, c.doc2.id).await;
    pool.close().await;
    c.ts.start_again().await;
    reconnect(&mut c);

    // The honest server refuses to sign over the forged entry: not ready, alarm naming it.
    let alarm = c.ts.handle.ledger_alarm().expect("alarm raised at start");
    assert!(
        alarm.contains(&format!(
            "ledger entry {forged} has no valid append authenticator"
        )),
        "{alarm}"
    );
    let (status, body) = ready(&c).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&format!("ledger entry {forged}")), "{body}");
    let e = c.doc.ledger().await.map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("the ledger signer refuses"), "{e}");
    assert_eq!(e.code(), Some("unavailable"));

    // A server that signs anything (test-only hook): the clients still refuse.
    c.ts.handle.sign_anything_for_tests();
    let l = c.doc.ledger().await.unwrap();
    assert!(l.head().tree_size > forged);
    let e = check_grant_for_wrap(&c.doc.c, &l, g.id)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyChanged(_)), "{e}");
    assert!(
        e.to_string().contains("more than one key for James Wilson"),
        "{e}"
    );
    // Even when the server hides the first key entry, the author's known keys refuse.
    let otto_first = otto_first_entry(&c).await;
    sqlx::query("UPDATE ledger_entries SET kind = 99 WHERE idx = $1")
        .bind(otto_first)
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let e = check_grant_for_wrap(&c.doc.c, &l, g.id)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyChanged(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("not the one this client verified before") && text.contains(&otto_fp),
        "{text}"
    );
    println!("author's client: {text}");
    sqlx::query("UPDATE ledger_entries SET kind = 1 WHERE idx = $1")
        .bind(otto_first)
        .execute(c.ts.handle.db())
        .await
        .unwrap();

    // Otto's own client refuses at login: his password unseals the keys of his first entry,
    // not the ones the server now names.
    let mut otto = c.ts.client();
    let e = otto
        .login("wilson@clinic.test", PASSWORD)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Impersonation { entry } if entry == forged),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{IMPERSONATION} {forged}): someone may be impersonating you — tell your clinic's administrator"
        )
    );
    println!("Otto's client: {e}");
    // The terminal client's login says the same (shown in red on the login screen).
    let settings = clinvault::tui::state::ReportSettings {
        state_dir: c.doc2.state.path().to_path_buf(),
        ..Default::default()
    };
    let action = clinvault::tui::tasks::perform(clinvault::tui::action::Effect::Login {
        client: c.ts.client(),
        email: "wilson@clinic.test".into(),
        password: zeroize::Zeroizing::new(PASSWORD.to_string()),
        settings,
    })
    .await;
    match action {
        Some(clinvault::tui::action::Action::LoggedIn(Err(m))) => {
            assert!(m.starts_with(IMPERSONATION), "{m}")
        }
        _ => panic!("the TUI login must fail with the impersonation message"),
    }
    // With his row left alone, the login opens, and the monitor sees the second entry.
    sqlx::query("UPDATE users SET x25519_pub = $1, ed25519_pub = $2, key_index = $3 WHERE id = $4")
        .bind(ox)
        .bind(oe)
        .bind(oi)
        .bind(c.doc2.id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let me = otto.login("wilson@clinic.test", PASSWORD).await.unwrap();
    let e = monitor_self(&otto, c.doc2.state.path(), None, 3600, &me)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Impersonation { entry } if entry == forged),
        "{e}"
    );
    // The author's own login is clean.
    let mut author = c.ts.client();
    let me = author.login("house@clinic.test", PASSWORD).await.unwrap();
    monitor_self(&author, c.doc.state.path(), None, 3600, &me)
        .await
        .unwrap();

    // The audit reports the second key entry and the missing authenticator.
    let la = c.auditor.ledger().await.unwrap();
    let s = audit(&c.auditor.c, &la, false).await.unwrap();
    assert!(
        s.findings.contains(&Finding::SecondKey {
            user: c.doc2.id.to_string(),
            first: otto_first as u64,
            again: forged,
        }),
        "{:?}",
        s.findings
    );
    assert!(
        s.findings
            .contains(&Finding::Unauthenticated { index: forged }),
        "{:?}",
        s.findings
    );
    for f in &s.findings {
        println!("audit: PROBLEM  {f}");
    }
}
both_backends!(key_substitution_is_refused, key_substitution);

async fn otto_first_entry(c: &Clinic) -> i64 {
    let rows = sqlx::query("SELECT idx, entry FROM ledger_entries WHERE kind = 1 ORDER BY idx")
        .fetch_all(c.ts.handle.db())
        .await
        .unwrap();
    for r in rows {
        let bytes: Vec<u8> = r.get("entry");
        if let Ok(Entry::UserRegistered { user_id, .. }) = Entry::from_bytes(&bytes)
            && user_id == *c.doc2.id.as_bytes()
        {
            return r.get("idx");
        }
    }
    panic!("no key entry for Otto");
}

/// Deletes ledger rows from index `k` on: entries, subjects, nodes, heads.
async fn truncate(pool: &sqlx::AnyPool, k: i64) {
    for q in [
        "DELETE FROM ledger_entries WHERE idx >= $1",
        "DELETE FROM ledger_subjects WHERE idx >= $1",
        "DELETE FROM ledger_heads WHERE tree_size > $1",
    ] {
        sqlx::query(q).bind(k).execute(pool).await.unwrap();
    }
    let nodes = sqlx::query("SELECT level, idx FROM ledger_nodes")
        .fetch_all(pool)
        .await
        .unwrap();
    for n in nodes {
        let (level, idx): (i64, i64) = (n.get("level"), n.get("idx"));
        if (idx + 1) << level > k {
            sqlx::query("DELETE FROM ledger_nodes WHERE level = $1 AND idx = $2")
                .bind(level)
                .bind(idx)
                .execute(pool)
                .await
                .unwrap();
        }
    }
    sqlx::query("UPDATE ledger_state SET size = $1 WHERE id = 1")
        .bind(k)
        .execute(pool)
        .await
        .unwrap();
}

async fn truncation(db: Db) {
    let mut c = clinic_with(db, |_| {}).await;
    let signed = c.pat.ledger().await.unwrap().head().tree_size;
    c.ts.stop().await;
    let pool = c.ts.offline_db().await;
    truncate(&pool, signed as i64 - 2).await;
    pool.close().await;
    c.ts.start_again().await;
    reconnect(&mut c);
    let alarm = c.ts.handle.ledger_alarm().expect("alarm");
    assert!(
        alarm.contains(&format!(
            "ledger rollback: the database holds {} entries, but this deployment already signed a head over {signed} entries",
            signed - 2
        )),
        "{alarm}"
    );
    let (status, body) = ready(&c).await;
    assert_eq!(status, 503);
    assert!(body.contains("ledger rollback"), "{body}");
    // Growing it back past the old size is a fork, refused as well.
    for i in 0..3 {
        c.ts.patient(&format!("regrow{i}@clinic.test"), "Re Grow")
            .await;
    }
    let e = c.pat.ledger().await.map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("ledger fork"), "{e}");
    let alarm = c.ts.handle.ledger_alarm().expect("alarm");
    assert!(
        alarm.contains(&format!("head over {signed} entries")),
        "{alarm}"
    );
    println!("alarm: {alarm}");
}
both_backends!(truncation_is_refused, truncation);

/// The whole SQLite database replaced by an older copy of itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn older_copy_of_the_database_is_refused() {
    let mut c = clinic_with(Db::Sqlite, |_| {}).await;
    let data = c.ts.config.server.data.clone();
    let files = ["meta.db", "meta.db-wal", "meta.db-shm"];
    c.ts.stop().await;
    let old = tempfile::tempdir().unwrap();
    for f in files {
        if data.join(f).exists() {
            std::fs::copy(data.join(f), old.path().join(f)).unwrap();
        }
    }
    c.ts.start_again().await;
    reconnect(&mut c);
    assert!(c.ts.handle.ledger_alarm().is_none());
    c.ts.patient("later@clinic.test", "Lena Later").await;
    let signed = c.pat.ledger().await.unwrap().head().tree_size;
    c.ts.stop().await;
    for f in files {
        let _ = std::fs::remove_file(data.join(f));
        if old.path().join(f).exists() {
            std::fs::copy(old.path().join(f), data.join(f)).unwrap();
        }
    }
    c.ts.start_again().await;
    reconnect(&mut c);
    let alarm = c.ts.handle.ledger_alarm().expect("alarm");
    assert!(alarm.contains("ledger rollback"), "{alarm}");
    assert!(
        alarm.contains(&format!("head over {signed} entries")),
        "{alarm}"
    );
    let (status, _) = ready(&c).await;
    assert_eq!(status, 503);
    let e = c.pat.ledger().await.map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("ledger rollback"), "{e}");

    // Without the memory file too: the buckets' copy of the memory still refuses.
    c.ts.stop().await;
    let memory = clinvault::server::ledger_signer::memory_path(&c.ts.config.server.secrets_path());
    std::fs::remove_file(&memory).unwrap();
    c.ts.start_again().await;
    let alarm =
        c.ts.handle
            .ledger_alarm()
            .expect("alarm from the buckets' memory");
    assert!(
        alarm.contains(&format!("head over {signed} entries")),
        "{alarm}"
    );
}

/// A head dated before one the client saw earlier for the same tree is refused (issue 17
/// point 6); the saved head stays the newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn older_head_of_the_same_size_is_refused() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let l = c.auditor.ledger().await.unwrap();
    // The client's saved head, replaced by the same tree signed a minute later (the test holds
    // the secrets file; a server serving an older head after a newer one looks like this).
    let secrets = clinvault::server::secrets::ServerSecrets::load_or_create(
        &c.ts.config.server.secrets_path(),
    )
    .unwrap();
    let later = clinvault::ledger::SignedHead::sign(
        l.head().tree_size,
        l.head().root,
        l.head().time_ms + 60_000,
        &ed25519_dalek::SigningKey::from_bytes(secrets.ledger_seed()),
    );
    let dir = c.auditor.state.path().join("ledger");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    saved["signed_head"] = hex::encode(later.to_bytes()).into();
    std::fs::write(&file, serde_json::to_vec(&saved).unwrap()).unwrap();
    let e = c
        .auditor
        .ledger()
        .await
        .err()
        .expect("an older head is refused");
    assert!(
        e.to_string().contains("heads must move forward in time"),
        "{e}"
    );
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(kept["signed_head"], saved["signed_head"]);
}

/// An honest deployment: every entry is authenticated, the audit is clean, ready says ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_ledger_is_clean() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let (status, body) = ready(&c).await;
    assert_eq!(status, 200, "{body}");
    let la = c.auditor.ledger().await.unwrap();
    let s = audit(&c.auditor.c, &la, false).await.unwrap();
    assert!(s.clean(), "{:?}", s.findings);
    let l = c.doc.ledger().await.unwrap();
    let k = l.user_keys(c.doc2.id, Some(Role::Doctor)).await.unwrap();
    assert_eq!(k.key_entries.len(), 1);
}

/// Forgets the signer's memory: the file and the buckets' objects (a deployment from before
/// issue 11 has neither).
fn forget_memory(ts: &common::TestServer) {
    let memory = clinvault::server::ledger_signer::memory_path(&ts.config.server.secrets_path());
    let _ = std::fs::remove_file(memory);
    for b in ["a", "b"] {
        let _ =
            std::fs::remove_dir_all(ts.config.server.data.join("buckets").join(b).join("ledger"));
    }
}

/// An upgraded deployment: entries without authenticators that a signed head covers are
/// adopted at start; one that no signed head covers is refused.
async fn upgrade(db: Db) {
    let mut c = clinic_with(db, |_| {}).await;
    let signed = c.pat.ledger().await.unwrap().head().tree_size;
    c.ts.stop().await;
    let pool = c.ts.offline_db().await;
    sqlx::query("UPDATE ledger_entries SET auth = NULL")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    forget_memory(&c.ts);
    c.ts.start_again().await;
    reconnect(&mut c);
    assert!(
        c.ts.handle.ledger_alarm().is_none(),
        "{:?}",
        c.ts.handle.ledger_alarm()
    );
    let missing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE auth IS NULL")
        .fetch_one(c.ts.handle.db())
        .await
        .unwrap();
    assert_eq!(
        missing, 0,
        "every entry under the signed head of {signed} was adopted"
    );
    assert_eq!(ready(&c).await.0, 200);

    // An entry no signed head covers, without an authenticator: refused, not adopted.
    let size = c.pat.ledger().await.unwrap().head().tree_size;
    c.ts.stop().await;
    let pool = c.ts.offline_db().await;
    let forged = forge_key_entry(&pool, c.pat2.id).await;
    assert_eq!(forged, size);
    sqlx::query("UPDATE ledger_entries SET auth = NULL WHERE idx = $1")
        .bind(forged as i64)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    forget_memory(&c.ts);
    c.ts.start_again().await;
    let alarm = c.ts.handle.ledger_alarm().expect("alarm");
    assert!(
        alarm.contains(&format!(
            "ledger entry {forged} has no valid append authenticator"
        )),
        "{alarm}"
    );
}
both_backends!(upgrade_adopts_only_signed_entries, upgrade);
