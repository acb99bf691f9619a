//! Accounts and sessions against a real server over loopback HTTP (issue 3).

mod common;

use std::time::Duration;

use clinvault::api::{LoginRequest, PreloginRequest, codes};
use clinvault::client::{ApiClient, ClientError};
use clinvault::seal::KdfParams;
use common::{Db, PASSWORD, TEST_KDF, http, start_server, start_with};
use serde_json::{Value, json};

fn code_of(e: &ClientError) -> &str {
    e.code().unwrap_or("<no server code>")
}

async fn health_and_headers(db: Db) {
    let ts = start_server(db).await;
    let r = http()
        .get(format!("{}/v1/health", ts.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.get("server").is_none(), "no server banner");
    let r = http()
        .get(format!("{}/v1/ready", ts.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Unknown route and wrong method: JSON errors too.
    let r = http()
        .get(format!("{}/v1/nope", ts.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], codes::NOT_FOUND);
    let r = http()
        .delete(format!("{}/v1/health", ts.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], codes::METHOD_NOT_ALLOWED);
    ts.handle.shutdown().await.unwrap();
}
both_backends!(health_and_security_headers, health_and_headers);

async fn enrollment(db: Db) {
    let ts = start_server(db).await;
    let code = ts.handle.admin_enrollment_code.clone().unwrap();
    let file = ts.dir.path().join("admin-enrollment.txt");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&file).unwrap().contains(&code));
    let secrets = ts.dir.path().join("secrets.toml");
    assert_eq!(
        std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let c = ts.client();
    let e = c
        .register_admin("AAAAA-BBBBB-CCCCC-DDDDD", "a@clinic.test", "Ann", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::CODE_INVALID);
    c.register_admin(&code, "a@clinic.test", "Ann Admin", PASSWORD)
        .await
        .unwrap();
    assert!(!file.exists(), "the code file goes once used");
    let e = c
        .register_admin(&code, "b@clinic.test", "Bob Admin", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::CODE_USED, "{e}");
    // Lower-case and without dashes the code is the same code (and still used).
    let e = c
        .register_admin(
            &code.replace('-', "").to_lowercase(),
            "b@clinic.test",
            "Bob Admin",
            PASSWORD,
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::CODE_USED);
    ts.handle.shutdown().await.unwrap();
}
both_backends!(admin_enrollment_code_is_single_use, enrollment);

async fn invites(db: Db) {
    let ts = start_server(db).await;
    let admin = ts.admin().await;
    let (doc, _) = ts
        .staff(
            &admin,
            clinvault::api::Role::Doctor,
            "Dora@Clinic.test",
            "Dora Doctor",
            "Cardiology",
        )
        .await;
    let me = doc.me().await.unwrap();
    assert_eq!(me.email, "dora@clinic.test", "emails are case-folded");
    assert_eq!(me.role, clinvault::api::Role::Doctor);
    // The invite code cannot be used twice.
    let code = common::invite_code(&ts.last_mail("dora@clinic.test"));
    let e = ts
        .client()
        .register_invite(&code, PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::CODE_USED);
    // Login with any capitalisation.
    let mut c = ts.client();
    c.login("DORA@clinic.TEST", PASSWORD).await.unwrap();
    ts.handle.shutdown().await.unwrap();
}
both_backends!(invite_codes_register_staff_once, invites);

async fn wrong_password(db: Db) {
    let ts = start_server(db).await;
    let _admin = ts.admin().await;
    let mut c = ts.client();
    let e = c
        .login("admin@clinic.test", "a different long passphrase here")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::INVALID_CREDENTIALS);
    match e {
        ClientError::Server { status, .. } => assert_eq!(status, 401),
        other => panic!("{other}"),
    }
    ts.handle.shutdown().await.unwrap();
}
both_backends!(wrong_password_is_invalid_credentials, wrong_password);

async fn no_enumeration(db: Db) {
    let ts = start_server(db).await;
    let _admin = ts.admin().await;
    let c = ts.client();
    let known = c.prelogin("admin@clinic.test").await.unwrap();
    let unknown = c.prelogin("nobody@clinic.test").await.unwrap();
    let unknown2 = c.prelogin("NOBODY@clinic.test").await.unwrap();
    assert_eq!(known.salt.len(), unknown.salt.len());
    assert_eq!(known.kdf, unknown.kdf);
    assert_eq!(unknown.salt, unknown2.salt, "a decoy salt is stable");
    assert_ne!(known.salt, unknown.salt);
    // Same raw shape: the same keys in the same order.
    let raw = |email: &str| {
        let url = format!("{}/v1/auth/prelogin", ts.url);
        let email = email.to_string();
        async move {
            let r = http()
                .post(url)
                .json(&PreloginRequest { email })
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (s1, b1) = raw("admin@clinic.test").await;
    let (s2, b2) = raw("nobody@clinic.test").await;
    assert_eq!(s1, s2);
    assert_eq!(b1.len(), b2.len(), "{b1} vs {b2}");
    // Login: an unknown address and a wrong key answer identically.
    let login = |email: &str| {
        let url = format!("{}/v1/auth/login", ts.url);
        let email = email.to_string();
        async move {
            let t = std::time::Instant::now();
            let r = http()
                .post(url)
                .json(&LoginRequest {
                    email,
                    auth_key: vec![7u8; 32].into(),
                })
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap(), t.elapsed())
        }
    };
    let (s1, b1, _) = login("admin@clinic.test").await;
    let (s2, b2, _) = login("nobody@clinic.test").await;
    assert_eq!(s1, 401);
    assert_eq!((s1, &b1), (s2, &b2));
    // Registration of a taken address answers like a new one; the owner gets a warning mail.
    let taken = c.verify_email("admin@clinic.test").await.unwrap();
    let fresh = c.verify_email("newbie@clinic.test").await.unwrap();
    assert_eq!(taken.kdf, fresh.kdf);
    let mail = ts.last_mail("admin@clinic.test");
    assert!(mail.contains("already has one"), "{mail}");
    assert!(
        ts.last_mail("newbie@clinic.test")
            .contains("registration code")
    );
    // A guessed code for the taken address fails like a wrong code would.
    let e = c
        .register_patient(&taken, "123456", "admin@clinic.test", "Eve", "", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::CODE_INVALID);
    ts.handle.shutdown().await.unwrap();
}
both_backends!(prelogin_login_and_register_do_not_enumerate, no_enumeration);

async fn patient_code(db: Db) {
    let ts = start_server(db).await;
    let c = ts.client();
    let v = c.verify_email("pat@clinic.test").await.unwrap();
    let code = common::six_digits(&ts.last_mail("pat@clinic.test"));
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let e = c
        .register_patient(&v, wrong, "pat@clinic.test", "Pat Patient", "", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::CODE_INVALID);
    assert!(e.to_string().contains("4 tries left"), "{e}");
    c.register_patient(&v, &code, "pat@clinic.test", "Pat Patient", "", PASSWORD)
        .await
        .unwrap();
    let e = c
        .register_patient(&v, &code, "pat@clinic.test", "Pat Patient", "", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::CODE_USED);
    // The client checks the password rules before anything is sent.
    let v2 = c.verify_email("weak@clinic.test").await.unwrap();
    let e = c
        .register_patient(
            &v2,
            "000000",
            "weak@clinic.test",
            "Wes",
            "",
            "password1234567",
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Password(_)), "{e}");
    let e = c
        .register_patient(&v2, "000000", "weak@clinic.test", "Wes", "", "short")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Password(_)), "{e}");
    ts.handle.shutdown().await.unwrap();
}
both_backends!(patient_registration_needs_the_mailed_code, patient_code);

async fn sessions(db: Db) {
    let ts = start_with(db, |c| c.server.session_idle_secs = 2).await;
    let admin = ts.admin().await;
    admin.me().await.unwrap();
    // Logout revokes.
    admin.logout().await.unwrap();
    let e = admin.me().await.unwrap_err();
    assert_eq!(code_of(&e), codes::SESSION_REVOKED);
    // Idle expiry.
    let c = ts.login("admin@clinic.test").await;
    c.me().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let e = c.me().await.unwrap_err();
    assert_eq!(code_of(&e), codes::SESSION_EXPIRED);
    // No token, a made-up token.
    let anon = ts.client();
    assert_eq!(
        code_of(&anon.me().await.unwrap_err()),
        codes::UNAUTHENTICATED
    );
    let fake = ts.client().with_token("not-a-real-token");
    assert_eq!(
        code_of(&fake.me().await.unwrap_err()),
        codes::UNAUTHENTICATED
    );
    ts.handle.shutdown().await.unwrap();
}
both_backends!(revoked_and_expired_sessions, sessions);

async fn absolute_expiry(db: Db) {
    let ts = start_with(db, |c| c.server.session_absolute_secs = 3).await;
    let admin = ts.admin().await;
    let logged_in = std::time::Instant::now();
    // Kept busy, so never idle; it still ends at the absolute limit.
    for _ in 0..2 {
        admin.me().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(3600).saturating_sub(logged_in.elapsed())).await;
    assert_eq!(
        code_of(&admin.me().await.unwrap_err()),
        codes::SESSION_EXPIRED
    );
    ts.handle.shutdown().await.unwrap();
}
both_backends!(sessions_end_at_the_absolute_limit, absolute_expiry);

/// Rate-limit windows are fixed (60 s per address, `account_backoff_secs` per account): start
/// the test well inside both, so it never straddles a boundary.
async fn away_from_window_edges(windows: &[u64]) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let near = windows.iter().any(|w| (now % *w as f64) > *w as f64 - 5.0);
        if !near {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn rate_limits(db: Db) {
    away_from_window_edges(&[60, 900]).await;
    let ts = start_with(db, |c| {
        c.server.auth_per_address_per_minute = 4;
        c.server.account_failures = 3;
    })
    .await;
    let body = json!({ "email": "x@clinic.test", "auth_key": "00".repeat(32) });
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http()
            .post(format!("{}/v1/auth/login", ts.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let retry = r.headers().get("retry-after").cloned();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        statuses.push((status, v["error"]["code"].as_str().unwrap().to_string()));
        if status == 429 {
            let secs: u64 = retry.unwrap().to_str().unwrap().parse().unwrap();
            assert!((1..=3600).contains(&secs));
        }
    }
    // Three failures, then the account backs off (429) ...
    assert_eq!(statuses[0], (401, codes::INVALID_CREDENTIALS.into()));
    assert_eq!(statuses[2], (401, codes::INVALID_CREDENTIALS.into()));
    assert_eq!(statuses[3], (429, codes::RATE_LIMITED.into()));
    // ... and past four a minute the address is limited whatever the account.
    let r = http()
        .post(format!("{}/v1/auth/login", ts.url))
        .json(&json!({ "email": "other@clinic.test", "auth_key": "00".repeat(32) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    ts.handle.shutdown().await.unwrap();
}
both_backends!(login_is_rate_limited_per_account_and_address, rate_limits);

async fn bad_bodies(db: Db) {
    let ts = start_server(db).await;
    let url = format!("{}/v1/auth/prelogin", ts.url);
    let send = |body: Vec<u8>, ct: &'static str| {
        let url = url.clone();
        async move {
            let r = http()
                .post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (
                status,
                v["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    assert_eq!(
        send(b"{\"email\": ".to_vec(), "application/json").await,
        (400, codes::MALFORMED_JSON.into())
    );
    assert_eq!(
        send(b"{\"mail\": 3}".to_vec(), "application/json").await,
        (400, codes::MALFORMED_JSON.into())
    );
    assert_eq!(
        send(b"email=x".to_vec(), "text/plain").await,
        (415, codes::UNSUPPORTED_MEDIA_TYPE.into())
    );
    let mut big = b"{\"email\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 200 * 1024));
    big.extend(b"@x.org\"}");
    assert_eq!(
        send(big, "application/json").await,
        (413, codes::BODY_TOO_LARGE.into())
    );
    assert_eq!(
        send(
            b"{\"email\": \"not an address\"}".to_vec(),
            "application/json"
        )
        .await,
        (400, codes::BAD_REQUEST.into())
    );
    ts.handle.shutdown().await.unwrap();
}
both_backends!(malformed_and_oversize_bodies_get_their_errors, bad_bodies);

async fn deactivation(db: Db) {
    let ts = start_server(db).await;
    let admin = ts.admin().await;
    let (p, pid) = ts.patient("pia@clinic.test", "Pia Patient").await;
    p.me().await.unwrap();
    admin.deactivate(pid).await.unwrap();
    assert_eq!(code_of(&p.me().await.unwrap_err()), codes::SESSION_REVOKED);
    let mut again = ts.client();
    let e = again.login("pia@clinic.test", PASSWORD).await.unwrap_err();
    assert_eq!(code_of(&e), codes::ACCOUNT_DEACTIVATED);
    let e = admin.deactivate(uuid::Uuid::new_v4()).await.unwrap_err();
    assert_eq!(code_of(&e), codes::NOT_FOUND);
    ts.handle.shutdown().await.unwrap();
}
both_backends!(deactivated_accounts_lose_their_sessions, deactivation);

#[tokio::test]
async fn client_refuses_weak_kdf_and_plain_http() {
    // A server configured below the client's floor cannot talk it into a weak KDF.
    let ts = start_with(Db::Sqlite, |c| {
        c.server.kdf = KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        }
    })
    .await;
    let strict = ApiClient::new(&ts.url, false, TEST_KDF).unwrap();
    let code = ts.handle.admin_enrollment_code.clone().unwrap();
    let e = strict
        .register_admin(&code, "a@clinic.test", "Ann Admin", PASSWORD)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Seal(clinvault::seal::SealError::KdfParams(_))
        ),
        "{e}"
    );
    let mut strict = strict;
    let e = strict.login("a@clinic.test", PASSWORD).await.unwrap_err();
    assert!(matches!(e, ClientError::Seal(_)), "{e}");
    // http:// only to loopback, unless allowed.
    assert!(matches!(
        ApiClient::new("http://clinic.example:8440", false, TEST_KDF),
        Err(ClientError::InsecureUrl(_))
    ));
    assert!(ApiClient::new("http://clinic.example:8440", true, TEST_KDF).is_ok());
    assert!(ApiClient::new("https://clinic.example:8440", false, TEST_KDF).is_ok());
    assert!(ApiClient::new("http://[::1]:8440", false, TEST_KDF).is_ok());
    ts.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn registration_refuses_other_kdf_params_and_bad_keys() {
    let ts = start_server(Db::Sqlite).await;
    let c = ts.client();
    let code = ts.handle.admin_enrollment_code.clone().unwrap();
    let mut keys = c
        .make_keys(
            clinvault::api::Enrollment::Admin {
                code,
                email: "a@clinic.test".into(),
                name: "Ann Admin".into(),
            },
            "a@clinic.test",
            PASSWORD,
            &["a@clinic.test", "Ann Admin"],
            KdfParams {
                m_kib: 512,
                t: 1,
                p: 1,
            },
        )
        .unwrap();
    let e = c.register_raw(&keys.request).await.unwrap_err();
    assert_eq!(code_of(&e), codes::KDF_PARAMS);
    keys.request.kdf = TEST_KDF;
    keys.request.bundle.truncate(10);
    let e = c.register_raw(&keys.request).await.unwrap_err();
    assert_eq!(code_of(&e), codes::BAD_REQUEST);
    ts.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn restart_keeps_accounts_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::test_config(dir.path());
    let h = clinvault::server::start(cfg.clone()).await.unwrap();
    let code = h.admin_enrollment_code.clone().unwrap();
    let c = ApiClient::new(&h.url(), false, TEST_KDF).unwrap();
    c.register_admin(&code, "a@clinic.test", "Ann Admin", PASSWORD)
        .await
        .unwrap();
    h.shutdown().await.unwrap();
    let h = clinvault::server::start(cfg).await.unwrap();
    assert!(h.admin_enrollment_code.is_none(), "an admin exists now");
    let mut c = ApiClient::new(&h.url(), false, TEST_KDF).unwrap();
    c.login("a@clinic.test", PASSWORD).await.unwrap();
    h.shutdown().await.unwrap();
}
