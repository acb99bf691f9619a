//! Issue 17 point 9: the Argon2id salt is bound to the account's address, so a server handing
//! every account the same salt gains nothing, and a server claiming "old scheme" is refused
//! unless the user opts in (then the keys move to the new scheme at once). Real server on
//! SQLite and PostgreSQL; the hostile server is a small HTTP double.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use clinvault::client::ClientError;
use clinvault::client::account::kdf_salt;
use clinvault::client::recovery::RecoveryCode;
use clinvault::seal::derive_master_key;
use common::{Db, PASSWORD, TEST_KDF, cli, http, start_server};
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "seven lanterns drift over the harbour";

/// A server that gives every address the same salt and keeps the auth keys it is sent.
async fn same_salt_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/v1/auth/prelogin",
            post(|| async { Json(json!({ "salt": "00".repeat(16), "kdf": TEST_KDF })) }),
        )
        .route(
            "/v1/auth/login",
            post(
                |State(seen): State<Arc<Mutex<Vec<String>>>>, Json(v): Json<Value>| async move {
                    let key = v["auth_key"].as_str().unwrap_or_default().to_string();
                    seen.lock().unwrap().push(key);
                    (
                        axum::http::StatusCode::UNAUTHORIZED,
                        Json(
                            json!({ "error": { "code": "invalid_credentials", "message": "no" } }),
                        ),
                    )
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// Same salt, same password, two addresses: two different auth keys, neither the one the
/// server's salt as it is would give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_salt_for_everyone_still_gives_different_keys() {
    let (url, seen) = same_salt_server().await;
    for email in ["ana@clinic.test", "bea@clinic.test", " ANA@Clinic.test"] {
        let mut c = clinvault::client::ApiClient::new(&url, false, TEST_KDF).unwrap();
        let e = c.login(email, PASSWORD).await.unwrap_err();
        assert_eq!(e.code(), Some("invalid_credentials"), "{e}");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_ne!(seen[0], seen[1], "two accounts, one salt: keys must differ");
    assert_eq!(seen[0], seen[2], "the address is folded as the server does");
    let raw = derive_master_key(PASSWORD, &[0u8; 16], &TEST_KDF).unwrap();
    assert_ne!(seen[0], hex::encode(raw.auth_key().0), "never the raw salt");
    let bound = derive_master_key(
        PASSWORD,
        &kdf_salt("ana@clinic.test", &[0u8; 16]).unwrap(),
        &TEST_KDF,
    )
    .unwrap();
    assert_eq!(seen[0], hex::encode(bound.auth_key().0));
}

async fn scheme(ts: &common::TestServer, email: &str) -> (i64, Vec<u8>) {
    let r: (i64, Vec<u8>) =
        sqlx::query_as("SELECT kdf_salt_scheme, salt FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(ts.handle.db())
            .await
            .unwrap();
    r
}

/// Turns `email`'s account into one made before issue 17.9: keys under the server's salt as
/// it is (sent through the ordinary re-key route), and the row marked scheme 1 as migration
/// 0007 marks old rows.
async fn make_legacy(ts: &common::TestServer, c: &clinvault::client::ApiClient, email: &str) {
    let logged = c.unlock_session(PASSWORD).await.unwrap();
    let pre = c.prelogin(email).await.unwrap();
    let old = derive_master_key(
        PASSWORD,
        &kdf_salt(email, &pre.salt.clone().try_into().unwrap()).unwrap(),
        &TEST_KDF,
    )
    .unwrap();
    let raw_salt = [0x5au8; 16];
    let raw = derive_master_key(PASSWORD, &raw_salt, &TEST_KDF).unwrap();
    let bundle = logged
        .secrets
        .seal_bundle(&raw.wrap_key(), logged.login.user.id.as_bytes())
        .unwrap();
    let r = http()
        .post(format!("{}/v1/auth/rekey", ts.url))
        .bearer_auth(c.token().unwrap())
        .json(&json!({
            "old_auth_key": hex::encode(old.auth_key().0),
            "salt": hex::encode(raw_salt),
            "kdf": TEST_KDF,
            "auth_key": hex::encode(raw.auth_key().0),
            "bundle": hex::encode(&bundle),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    sqlx::query("UPDATE users SET kdf_salt_scheme = 1 WHERE email = $1")
        .bind(email)
        .execute(ts.handle.db())
        .await
        .unwrap();
}

fn is_legacy_refusal(e: &ClientError) -> bool {
    matches!(e, ClientError::LegacySalt(_)) && e.to_string().contains("--legacy-salt")
}

/// A server (here: its database edited) flipping a new account to the old scheme gets a
/// refusal, not the raw-salt auth key; the opt-in does not help it either (the keys are not
/// under the raw salt, so the login fails and nothing changes).
async fn flipped_to_legacy(db: Db) {
    let ts = start_server(db).await;
    let (c, _) = ts.patient("pia@clinic.test", "Pia Patient").await;
    assert_eq!(scheme(&ts, "pia@clinic.test").await.0, 2, "new accounts: 2");
    sqlx::query("UPDATE users SET kdf_salt_scheme = 1 WHERE email = 'pia@clinic.test'")
        .execute(ts.handle.db())
        .await
        .unwrap();
    let e = ts
        .client()
        .login("pia@clinic.test", PASSWORD)
        .await
        .unwrap_err();
    assert!(is_legacy_refusal(&e), "{e}");
    let e = c.unlock_session(PASSWORD).await.unwrap_err();
    assert!(is_legacy_refusal(&e), "session unlock: {e}");
    let e = c.change_password(PASSWORD, NEW_PASSWORD).await.unwrap_err();
    assert!(is_legacy_refusal(&e), "password change: {e}");
    let e = c.make_recovery_kit(PASSWORD).await.unwrap_err();
    assert!(is_legacy_refusal(&e), "recovery kit: {e}");
    // Opting in sends the raw-salt key, which this account's keys are not under.
    let e = ts
        .client()
        .login_legacy_salt("pia@clinic.test", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_credentials"), "{e}");
    ts.handle.shutdown().await.unwrap();
}
both_backends!(a_flip_to_the_old_salt_is_refused, flipped_to_legacy);

/// A real old account: refused without the opt-in; with it, logs in once and is on scheme 2
/// with a fresh salt at once, same keys; then an ordinary login works.
async fn legacy_opt_in(db: Db) {
    let ts = start_server(db).await;
    let (c, _) = ts.patient("pia@clinic.test", "Pia Patient").await;
    let keys = c.unlock_session(PASSWORD).await.unwrap().secrets.public();
    make_legacy(&ts, &c, "pia@clinic.test").await;
    let (s, legacy_salt) = scheme(&ts, "pia@clinic.test").await;
    assert_eq!(s, 1);
    let e = ts
        .client()
        .login("pia@clinic.test", PASSWORD)
        .await
        .unwrap_err();
    assert!(is_legacy_refusal(&e), "{e}");
    let mut opt = ts.client();
    let logged = opt
        .login_legacy_salt("Pia@Clinic.test", PASSWORD)
        .await
        .unwrap();
    assert_eq!(logged.secrets.public(), keys, "same keys");
    let (s, salt) = scheme(&ts, "pia@clinic.test").await;
    assert_eq!(s, 2, "moved to the bound salt at once");
    assert_ne!(salt, legacy_salt, "under a fresh salt");
    // The opted-in session's bundle is the new one.
    assert_eq!(
        opt.unlock_session(PASSWORD).await.unwrap().secrets.public(),
        keys
    );
    let mut plain = ts.client();
    let again = plain.login("pia@clinic.test", PASSWORD).await.unwrap();
    assert_eq!(again.secrets.public(), keys);
    // And a password change stays on scheme 2.
    plain.change_password(PASSWORD, NEW_PASSWORD).await.unwrap();
    assert_eq!(scheme(&ts, "pia@clinic.test").await.0, 2);
    ts.client()
        .login("pia@clinic.test", NEW_PASSWORD)
        .await
        .unwrap();
    ts.handle.shutdown().await.unwrap();
}
both_backends!(the_opt_in_moves_an_old_account, legacy_opt_in);

/// The other way out of the old scheme: the recovery kit sets a password under the new one.
async fn legacy_recovery(db: Db) {
    let ts = start_server(db).await;
    let (c, _) = ts.patient("pia@clinic.test", "Pia Patient").await;
    let keys = c.unlock_session(PASSWORD).await.unwrap().secrets.public();
    let code = c.make_recovery_kit(PASSWORD).await.unwrap();
    let shown = code.display();
    make_legacy(&ts, &c, "pia@clinic.test").await;
    let mut r = ts.client();
    let logged = r
        .recover(
            "pia@clinic.test",
            &RecoveryCode::parse(&shown).unwrap(),
            NEW_PASSWORD,
        )
        .await
        .unwrap();
    assert_eq!(logged.secrets.public(), keys);
    assert_eq!(scheme(&ts, "pia@clinic.test").await.0, 2);
    let again = ts
        .client()
        .login("pia@clinic.test", NEW_PASSWORD)
        .await
        .unwrap();
    assert_eq!(again.secrets.public(), keys);
    ts.handle.shutdown().await.unwrap();
}
both_backends!(the_recovery_kit_moves_an_old_account, legacy_recovery);

/// The terminal app: an old account's login is refused with an offer, sends nothing until the
/// user types the password again and confirms with Ctrl+G, then is moved to scheme 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_terminal_app_asks_before_the_old_salt() {
    use clinvault::tui::action::{Action, Effect};
    use clinvault::tui::state::{App, Clock, ReportSettings, Screen, ServerInfo};
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    async fn drive(app: &mut App, action: Action) {
        let mut queue = vec![action];
        while let Some(a) = queue.pop() {
            for e in clinvault::tui::update::update(app, a) {
                match e {
                    Effect::Later { action, .. } => queue.push(*action),
                    other => {
                        if let Some(next) = clinvault::tui::tasks::perform(other).await {
                            queue.push(next);
                        }
                    }
                }
            }
        }
    }
    async fn key(app: &mut App, code: KeyCode, m: KeyModifiers) {
        drive(app, Action::Key(KeyEvent::new(code, m))).await;
    }
    async fn typ(app: &mut App, text: &str) {
        for c in text.chars() {
            key(app, KeyCode::Char(c), KeyModifiers::NONE).await;
        }
    }

    let ts = start_server(Db::Sqlite).await;
    let (c, _) = ts.patient("pia@clinic.test", "Pia Patient").await;
    make_legacy(&ts, &c, "pia@clinic.test").await;
    let tz = chrono_tz::Europe::Berlin;
    let mut app = App::new(
        Clock::system(tz),
        clinvault::tui::theme::Theme::mono(),
        clinvault::tui::keymap::KeyMap::default(),
        ServerInfo {
            url: ts.url.clone(),
            demo: false,
            data_dir: None,
        },
    );
    app.tz = tz;
    app.client_template = Some(ts.client());
    let state = ts.dir.path().join("tui-client");
    app.report_settings = ReportSettings {
        state_dir: state.clone(),
        download_dir: state,
        ..ReportSettings::default()
    };
    typ(&mut app, "pia@clinic.test").await;
    key(&mut app, KeyCode::Tab, KeyModifiers::NONE).await;
    typ(&mut app, PASSWORD).await;
    key(&mut app, KeyCode::Enter, KeyModifiers::NONE).await;
    assert_eq!(app.screen, Screen::Login);
    let msg = app.login.message.clone().unwrap_or_default();
    assert!(msg.contains("Ctrl+G"), "{msg}");
    assert!(app.login.password.is_empty(), "the password is wiped");
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
    t.draw(|f| clinvault::tui::view::render(&app, f)).unwrap();
    let shown: String = t
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(shown.contains("Ctrl+G moves it"), "fits 80×24: {shown}");
    assert_eq!(scheme(&ts, "pia@clinic.test").await.0, 1, "nothing changed");
    // Enter again without Ctrl+G is the same refusal, not an opt-in.
    typ(&mut app, PASSWORD).await;
    key(&mut app, KeyCode::Enter, KeyModifiers::NONE).await;
    assert_eq!(app.screen, Screen::Login);
    assert_eq!(scheme(&ts, "pia@clinic.test").await.0, 1);
    typ(&mut app, PASSWORD).await;
    key(&mut app, KeyCode::Char('g'), KeyModifiers::CONTROL).await;
    assert_eq!(app.screen, Screen::Main, "{:?}", app.login.message);
    assert_eq!(scheme(&ts, "pia@clinic.test").await.0, 2, "moved at once");
    ts.handle.shutdown().await.unwrap();
}

/// `clinvault login` refuses an old-scheme account and names the way out; `--legacy-salt`
/// logs in and moves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_legacy_salt_opt_in() {
    let ts = start_server(Db::Sqlite).await;
    let (c, _) = ts.patient("pia@clinic.test", "Pia Patient").await;
    make_legacy(&ts, &c, "pia@clinic.test").await;
    let dir = tempfile::tempdir().unwrap();
    let pw = [("CLINVAULT_PASSWORD", PASSWORD)];
    let login = ["login", "--email", "pia@clinic.test"];
    let (rc, out, err) = cli(dir.path(), &ts.url, &login, &pw).await;
    assert_ne!(rc, 0, "{out}");
    assert!(err.contains("clinvault login --legacy-salt"), "{err}");
    assert_eq!(scheme(&ts, "pia@clinic.test").await.0, 1);
    let (rc, out, err) = cli(
        dir.path(),
        &ts.url,
        &[&login[..], &["--legacy-salt"]].concat(),
        &pw,
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(scheme(&ts, "pia@clinic.test").await.0, 2);
    let (rc, out, err) = cli(dir.path(), &ts.url, &login, &pw).await;
    assert_eq!(rc, 0, "{out}{err}");
    ts.handle.shutdown().await.unwrap();
}
