//! SQL-injection payloads in every string field of every route: never a 500, the database
//! unchanged (all SQL is parameterized), and stored text comes back byte for byte.

mod common;

use clinvault::api::Role;
use common::{Db, TestServer, http, start_server};
use serde_json::{Value, json};
use sqlx::Row;

const PAYLOADS: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    "\"; DELETE FROM bookings; --",
    "x' UNION SELECT auth_mac, salt FROM users --",
    "1; UPDATE users SET role = 'admin'",
    "%' OR 1=1 --",
    "\\'; SELECT pg_sleep(5); --",
    "admin@clinic.test' --",
    "') OR ('a'='a",
    "名前'; --",
];

/// Everything the routes could change, as text.
async fn snapshot(ts: &TestServer) -> String {
    let mut out = String::new();
    for (table, sql) in [
        (
            "users",
            "SELECT id, email, name, role, active FROM users ORDER BY id",
        ),
        (
            "bookings",
            "SELECT id, status, patient_id, doctor_id FROM bookings ORDER BY id",
        ),
        (
            "doctors",
            "SELECT user_id, specialty, bio FROM doctors ORDER BY user_id",
        ),
        (
            "sessions",
            "SELECT user_id, revoked_at FROM sessions ORDER BY user_id, created_at",
        ),
    ] {
        let rows = sqlx::query(sql).fetch_all(ts.handle.db()).await.unwrap();
        out.push_str(table);
        for r in rows {
            out.push('|');
            for i in 0..r.len() {
                let v: String = r
                    .try_get::<String, _>(i)
                    .or_else(|_| r.try_get::<i64, _>(i).map(|n| n.to_string()))
                    .unwrap_or_else(|_| "NULL".into());
                out.push_str(&v);
                out.push(',');
            }
        }
        out.push('\n');
    }
    out
}

async fn call(
    ts: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> u16 {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = http().request(m, format!("{}{}", ts.url, path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(status < 500, "{method} {path} -> {status} {text}");
    serde_json::from_str::<Value>(&text).expect("JSON answer");
    status
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn injection(db: Db) {
    let ts = start_server(db).await;
    let admin = ts.admin().await;
    let (doc, doc_id) = ts
        .staff(
            &admin,
            Role::Doctor,
            "doc@clinic.test",
            "Dana Doc",
            "Cardiology",
        )
        .await;
    let (rec, _) = ts
        .staff(&admin, Role::Reception, "rec@clinic.test", "Rita Desk", "")
        .await;
    let (p, _) = ts.patient("p@clinic.test", "Pat Ient").await;
    let at = admin.token().unwrap().to_string();
    let dt = doc.token().unwrap().to_string();
    let rt = rec.token().unwrap().to_string();
    let pt = p.token().unwrap().to_string();
    let before = snapshot(&ts).await;
    for (i, x) in PAYLOADS.iter().enumerate() {
        let q = enc(x);
        call(
            &ts,
            "POST",
            "/v1/auth/prelogin",
            None,
            Some(json!({"email": x})),
        )
        .await;
        call(
            &ts,
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": x, "auth_key": "00".repeat(32)})),
        )
        .await;
        call(
            &ts,
            "POST",
            "/v1/auth/verify-email",
            None,
            Some(json!({"email": x})),
        )
        .await;
        call(
            &ts,
            "POST",
            "/v1/auth/invite-info",
            None,
            Some(json!({"code": x})),
        )
        .await;
        for enrollment in [
            json!({"kind": "patient", "verification_id": uuid::Uuid::new_v4(), "code": x, "email": x, "name": x, "phone": x}),
            json!({"kind": "invite", "code": x}),
            json!({"kind": "admin", "code": x, "email": "z@clinic.test", "name": x}),
        ] {
            call(
                &ts,
                "POST",
                "/v1/auth/register",
                None,
                Some(json!({
                    "enrollment": enrollment,
                    "user_id": uuid::Uuid::new_v4(),
                    "salt": "00".repeat(16),
                    "kdf": common::TEST_KDF,
                    "auth_key": "00".repeat(32),
                    "public_keys": {"x25519": "11".repeat(32), "ed25519": "58".to_string() + &"66".repeat(31)},
                    "bundle": "00".repeat(92),
                })),
            )
            .await;
        }
        // Invites with a payload as email fail validation; as name/specialty/bio they are text.
        call(
            &ts,
            "POST",
            "/v1/admin/invites",
            Some(&at),
            Some(json!({"role": "doctor", "email": x, "name": x, "specialty": x, "bio": x})),
        )
        .await;
        call(
            &ts,
            "POST",
            "/v1/admin/invites",
            Some(&at),
            Some(json!({"role": "doctor", "email": format!("inj{i}@clinic.test"), "name": x, "specialty": x, "bio": x})),
        )
        .await;
        call(
            &ts,
            "GET",
            &format!("/v1/admin/users?q={q}"),
            Some(&at),
            None,
        )
        .await;
        call(
            &ts,
            "GET",
            &format!("/v1/doctors?q={q}&specialty={q}&page=1"),
            Some(&pt),
            None,
        )
        .await;
        call(&ts, "GET", &format!("/v1/doctors/{q}"), Some(&pt), None).await;
        call(
            &ts,
            "GET",
            &format!("/v1/doctors/{doc_id}/slots?from={q}"),
            Some(&pt),
            None,
        )
        .await;
        call(
            &ts,
            "PUT",
            &format!("/v1/doctors/{doc_id}/availability"),
            Some(&dt),
            Some(json!({"weekly": [{"weekday": x, "start": x, "end": "12:00", "slot_minutes": 20}], "days_off": [x]})),
        )
        .await;
        call(&ts, "GET", &format!("/v1/patients?q={q}"), Some(&rt), None).await;
        call(
            &ts,
            "GET",
            &format!("/v1/bookings?status={q}&doctor_id={q}"),
            Some(&rt),
            None,
        )
        .await;
        call(
            &ts,
            "POST",
            "/v1/bookings",
            Some(&pt),
            Some(json!({"doctor_id": x, "start": x})),
        )
        .await;
        call(
            &ts,
            "POST",
            &format!("/v1/bookings/{q}/cancel"),
            Some(&pt),
            Some(json!({})),
        )
        .await;
        call(
            &ts,
            "POST",
            &format!("/v1/admin/users/{q}/deactivate"),
            Some(&at),
            Some(json!({})),
        )
        .await;
    }
    let after = snapshot(&ts).await;
    assert_eq!(before, after, "the payloads changed the database");
    // A payload stored as a name comes back exactly, and finds itself.
    let name = "Robert'); DROP TABLE users;--";
    let (_, _) = ts.patient("bobby@clinic.test", name).await;
    let found = rec.patients("drop table", 1).await.unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].name, name);
    ts.handle.shutdown().await.unwrap();
}
both_backends!(sql_injection_payloads_change_nothing, injection);
