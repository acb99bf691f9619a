//! Issue 15: password change and reactivation, against a real server on SQLite and PostgreSQL.

mod common;

use clinvault::api::{Role, codes};
use clinvault::client::ClientError;
use clinvault::client::ledger::Ledger;
use clinvault::ledger::{AccountState, Entry};
use clinvault::seal::BUNDLE_LEN;
use common::{Db, PASSWORD, TEST_KDF, http, start_server};
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
    ts.handle.shutdown().await.unwrap();
}
both_backends!(reactivation_keeps_keys_and_is_in_the_ledger, reactivation);
