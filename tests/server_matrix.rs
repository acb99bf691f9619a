//! Route × role × owner matrix, generated from the server's own policy table (the table the
//! router is built from): a route without a sample here fails the test.

mod common;

use std::collections::HashMap;

use chrono::{Duration, Utc};
use clinvault::api::{Availability, BookRequest, Role, WeeklyBlock};
use clinvault::client::ApiClient;
use clinvault::client::ledger::Ledger;
use clinvault::client::reports::{UploadOptions, upload};
use clinvault::server::policy::{Policy, table};
use common::{Db, TestServer, http, start_server};
use serde_json::{Value, json};
use uuid::Uuid;

struct World {
    ts: TestServer,
    tokens: HashMap<Role, String>,
    doctor: Uuid,
    other_doctor_token: String,
    other_patient_token: String,
    booking: Uuid,
    victim: Uuid,
    free_start: String,
    report: Uuid,
    chunk: String,
    grant: Uuid,
    release_request: Uuid,
    /// Issue 16: doc2's break-glass request on p1 (doc2 is on the emergency team).
    emergency: Uuid,
    _state: tempfile::TempDir,
}

fn token(c: &ApiClient) -> String {
    c.token().unwrap().to_string()
}

fn week() -> Availability {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    Availability {
        weekly: days
            .iter()
            .map(|d| WeeklyBlock {
                weekday: d.to_string(),
                start: "08:00".into(),
                end: "18:00".into(),
                slot_minutes: 30,
            })
            .collect(),
        days_off: vec![],
    }
}

async fn world(db: Db) -> World {
    let ts = start_server(db).await;
    let admin = ts.admin().await;
    let (doc, doctor) = ts
        .staff(
            &admin,
            Role::Doctor,
            "doc@clinic.test",
            "Dana Doc",
            "Cardiology",
        )
        .await;
    let (doc2, _) = ts
        .staff(
            &admin,
            Role::Doctor,
            "doc2@clinic.test",
            "Dirk Doc",
            "Dermatology",
        )
        .await;
    let (rec, _) = ts
        .staff(&admin, Role::Reception, "rec@clinic.test", "Rita Desk", "")
        .await;
    let (aud, _) = ts
        .staff(&admin, Role::Auditor, "aud@clinic.test", "Audrey Audit", "")
        .await;
    // Issue 16: a write-only upload station.
    let (station, _) = ts
        .staff(&admin, Role::Station, "lab1@clinic.test", "Lab-1", "")
        .await;
    let (p1, _) = ts.patient("p1@clinic.test", "Paula One").await;
    let (p2, _) = ts.patient("p2@clinic.test", "Peter Two").await;
    let (_, victim) = ts.patient("victim@clinic.test", "Vic Tim").await;
    doc.set_availability(doctor, &week()).await.unwrap();
    let tomorrow = (Utc::now() + Duration::days(1)).date_naive();
    let slots = p1
        .slots(doctor, Some(tomorrow), Some(tomorrow))
        .await
        .unwrap();
    let b = p1
        .book(&BookRequest {
            doctor_id: doctor,
            start: slots.slots[0].start,
            patient_id: None,
        })
        .await
        .unwrap();
    // A report by `doc` for p1 (after a completed visit), and a grant asked by doc2.
    common::backdate_booking(ts.handle.db(), b.id).await;
    rec.booking_action(b.id, "check-in").await.unwrap();
    doc.booking_action(b.id, "complete").await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut author = ts.client();
    let me = author
        .login("doc@clinic.test", common::PASSWORD)
        .await
        .unwrap();
    // Issue 16: doc2 on the emergency team before the upload, so its key is escrowed for them.
    let doc2_id = doc2.me().await.unwrap().id;
    admin.emergency_team_change(doc2_id, true).await.unwrap();
    let ledger = Ledger::sync(&author, state.path(), None, 3600)
        .await
        .unwrap();
    let file = state.path().join("report.txt");
    std::fs::write(&file, b"matrix test report").unwrap();
    let up = upload(
        &author,
        &me,
        &ledger,
        b.patient_id,
        &file,
        &UploadOptions {
            state_dir: state.path(),
            chunk_size: 4096,
            transfers: 1,
            title: "Matrix".into(),
            note: String::new(),
            cancel: None,
            progress: None,
        },
    )
    .await
    .unwrap();
    let chunk = author.report(up.report_id).await.unwrap().chunk_ids[0].clone();
    let emergency = doc2
        .emergency_open(b.patient_id, "matrix: unconscious in the ER")
        .await
        .unwrap()
        .id;
    // Its hour over (moved in the database), so doc2 is again an "other doctor" of the report.
    sqlx::query("UPDATE emergency_requests SET until_at = 1, release_at = 0 WHERE id = $1")
        .bind(emergency.to_string())
        .execute(ts.handle.db())
        .await
        .unwrap();
    doc2.set_availability(doc2_id, &week()).await.unwrap();
    let s2 = p1
        .slots(doc2_id, Some(tomorrow), Some(tomorrow))
        .await
        .unwrap();
    p1.book(&BookRequest {
        doctor_id: doc2_id,
        start: s2.slots[5].start,
        patient_id: None,
    })
    .await
    .unwrap();
    // A grant needs a released report; the release code must stay pending for the matrix, so
    // the release is set by hand around the request.
    let set_released = |v: Option<i64>| {
        sqlx::query("UPDATE reports SET released_at = $1 WHERE id = $2")
            .bind(v)
            .bind(up.report_id.to_string())
            .execute(ts.handle.db())
    };
    set_released(Some(1)).await.unwrap();
    let grant = doc2.grant_request(up.report_id).await.unwrap().id;
    set_released(None).await.unwrap();
    let mut tokens = HashMap::new();
    tokens.insert(Role::Admin, token(&admin));
    tokens.insert(Role::Doctor, token(&doc));
    tokens.insert(Role::Reception, token(&rec));
    tokens.insert(Role::Auditor, token(&aud));
    tokens.insert(Role::Patient, token(&p1));
    tokens.insert(Role::Station, token(&station));
    World {
        ts,
        tokens,
        doctor,
        other_doctor_token: token(&doc2),
        other_patient_token: token(&p2),
        booking: b.id,
        victim,
        free_start: slots.slots[3].start.to_rfc3339(),
        report: up.report_id,
        chunk,
        grant,
        release_request: up.commit.release_request_id.unwrap(),
        emergency,
        _state: state,
    }
}

/// A concrete request for each route in the table; `None` = this test does not know the route.
fn sample(w: &World, method: &str, path: &str, n: usize) -> Option<(String, Option<Value>)> {
    let d = w.doctor;
    let b = w.booking;
    let r = w.report;
    let g = w.grant;
    let s = match (method, path) {
        ("GET", "/v1/health") => ("/v1/health".into(), None),
        ("GET", "/v1/ready") => ("/v1/ready".into(), None),
        ("GET", "/v1/metrics") => ("/v1/metrics".into(), None),
        ("POST", "/v1/auth/prelogin") => (path.into(), Some(json!({"email": "x@clinic.test"}))),
        ("POST", "/v1/auth/verify-email") => (
            path.into(),
            Some(json!({"email": format!("m{n}@clinic.test")})),
        ),
        ("POST", "/v1/auth/invite-info") => (
            path.into(),
            Some(json!({"code": "AAAAA-BBBBB-CCCCC-DDDDD"})),
        ),
        ("POST", "/v1/auth/register") => (path.into(), Some(register_body())),
        ("POST", "/v1/auth/login") => (
            path.into(),
            Some(json!({"email": "x@clinic.test", "auth_key": "00".repeat(32)})),
        ),
        ("POST", "/v1/auth/logout") => (path.into(), Some(json!({}))),
        ("GET", "/v1/auth/me") => (path.into(), None),
        ("GET", "/v1/auth/keys") => (path.into(), None),
        ("POST", "/v1/auth/rekey" | "/v1/auth/password") => (
            path.into(),
            Some(json!({
                "old_auth_key": "00".repeat(32),
                "salt": "00".repeat(16),
                "kdf": {"m_kib": 1, "t": 1, "p": 1},
                "auth_key": "00".repeat(32),
                "bundle": "00",
            })),
        ),
        ("POST", "/v1/auth/recovery-kit") => (
            path.into(),
            Some(json!({
                "auth_key": "00".repeat(32),
                "recovery_auth": "00".repeat(32),
                "recovery_bundle": "00",
            })),
        ),
        ("POST", "/v1/auth/recover/open") => (
            path.into(),
            Some(json!({"email": "x@clinic.test", "recovery_auth": "00".repeat(32)})),
        ),
        ("POST", "/v1/auth/recover/reset") => (
            path.into(),
            Some(json!({
                "email": "x@clinic.test",
                "recovery_auth": "00".repeat(32),
                "salt": "00".repeat(16),
                "kdf": common::TEST_KDF,
                "auth_key": "00".repeat(32),
                "bundle": "00",
            })),
        ),
        ("POST", "/v1/admin/invites") => (
            path.into(),
            Some(
                json!({"role": "reception", "email": format!("inv{n}@clinic.test"), "name": "New Hire"}),
            ),
        ),
        ("GET", "/v1/admin/users") => (path.into(), None),
        ("POST", "/v1/admin/users/{id}/deactivate") => (
            format!("/v1/admin/users/{}/deactivate", w.victim),
            Some(json!({})),
        ),
        ("POST", "/v1/admin/users/{id}/reactivate") => (
            format!("/v1/admin/users/{}/reactivate", w.victim),
            Some(json!({})),
        ),
        ("GET", "/v1/doctors") => ("/v1/doctors?q=dan&specialty=card".into(), None),
        ("GET", "/v1/doctors/{id}") => (format!("/v1/doctors/{d}"), None),
        ("GET", "/v1/doctors/{id}/slots") => (format!("/v1/doctors/{d}/slots"), None),
        ("GET", "/v1/doctors/{id}/availability") => (format!("/v1/doctors/{d}/availability"), None),
        ("PUT", "/v1/doctors/{id}/availability") => (
            format!("/v1/doctors/{d}/availability"),
            Some(serde_json::to_value(week()).unwrap()),
        ),
        ("GET", "/v1/patients") => ("/v1/patients?q=paula".into(), None),
        ("GET", "/v1/bookings") => (path.into(), None),
        ("POST", "/v1/bookings") => (
            path.into(),
            Some(json!({"doctor_id": d, "start": w.free_start})),
        ),
        ("GET", "/v1/bookings/{id}") => (format!("/v1/bookings/{b}"), None),
        ("POST", "/v1/bookings/{id}/cancel") => {
            (format!("/v1/bookings/{b}/cancel"), Some(json!({})))
        }
        ("POST", "/v1/bookings/{id}/check-in") => {
            (format!("/v1/bookings/{b}/check-in"), Some(json!({})))
        }
        ("POST", "/v1/bookings/{id}/complete") => {
            (format!("/v1/bookings/{b}/complete"), Some(json!({})))
        }
        ("POST", "/v1/bookings/{id}/no-show") => {
            (format!("/v1/bookings/{b}/no-show"), Some(json!({})))
        }
        ("POST", "/v1/reports") => (
            path.into(),
            Some(
                json!({"report_id": Uuid::new_v4(), "patient_id": w.victim, "chunk_size": 4096, "plaintext_len": 10}),
            ),
        ),
        ("PUT", "/v1/reports/{id}/chunks/{chunk}") => (
            format!("/v1/reports/{r}/chunks/{}", "00".repeat(32)),
            Some(json!({})),
        ),
        ("GET", "/v1/reports/{id}/chunks/{chunk}") => (format!("/v1/reports/{r}/chunks/0"), None),
        ("POST", "/v1/reports/{id}/missing") => (
            format!("/v1/reports/{r}/missing"),
            Some(json!({"chunk_ids": [w.chunk]})),
        ),
        ("POST", "/v1/reports/{id}/commit") => (
            format!("/v1/reports/{r}/commit"),
            Some(
                json!({"manifest": "", "signature": "", "meta": "", "chunk_ids": [], "wrapped_keys": []}),
            ),
        ),
        ("GET", "/v1/reports") => (path.into(), None),
        ("GET", "/v1/reports/{id}") => (format!("/v1/reports/{r}"), None),
        ("GET", "/v1/reports/{id}/key") => (format!("/v1/reports/{r}/key"), None),
        ("GET", "/v1/chunks/{sha256}") => (format!("/v1/chunks/{}", w.chunk), None),
        ("POST", "/v1/otp/verify") => (
            path.into(),
            Some(json!({"request_id": Uuid::new_v4(), "code": "123456"})),
        ),
        ("GET", "/v1/otp") => (path.into(), None),
        ("POST", "/v1/otp/{id}/resend") => (
            format!("/v1/otp/{}/resend", w.release_request),
            Some(json!({})),
        ),
        ("GET", "/v1/grants") => (path.into(), None),
        ("POST", "/v1/grants") => (path.into(), Some(json!({"report_id": r}))),
        ("POST", "/v1/grants/{id}/approve") => (
            format!("/v1/grants/{g}/approve"),
            Some(json!({"signature": "00".repeat(64)})),
        ),
        ("POST", "/v1/grants/{id}/wrap") => (
            format!("/v1/grants/{g}/wrap"),
            Some(json!({"wrapped": "00".repeat(80)})),
        ),
        ("POST", "/v1/grants/{id}/revoke") => (format!("/v1/grants/{g}/revoke"), Some(json!({}))),
        ("GET", "/v1/ledger/head") => (path.into(), None),
        ("GET", "/v1/ledger/consistency") => ("/v1/ledger/consistency?from=1&to=2".into(), None),
        ("GET", "/v1/ledger/inclusion") => ("/v1/ledger/inclusion?index=0&size=1".into(), None),
        ("GET", "/v1/ledger/entries") => (path.into(), None),
        ("GET", "/v1/ledger/frontier") => ("/v1/ledger/frontier?size=1".into(), None),
        ("GET", "/v1/users/{id}/keys") => (format!("/v1/users/{d}/keys"), None),
        ("GET", "/v1/audit/reports") => (path.into(), None),
        ("POST", "/v1/audit/repair") => (path.into(), Some(json!({"chunk_id": w.chunk}))),
        // Issue 16: station orders.
        ("POST", "/v1/orders") => (
            path.into(),
            Some(json!({"station": "Lab-1", "patient_id": w.victim})),
        ),
        ("GET", "/v1/orders") => (path.into(), None),
        ("GET", "/v1/reports/{id}/order") => (format!("/v1/reports/{r}/order"), None),
        // Issue 16: break-glass.
        ("GET", "/v1/emergency/team") => (path.into(), None),
        ("POST", "/v1/emergency/team") => (
            path.into(),
            Some(json!({"user_id": d, "add": n.is_multiple_of(2)})),
        ),
        ("POST", "/v1/emergency/escrow/{id}") => (
            format!("/v1/emergency/escrow/{r}"),
            Some(json!({"wraps": []})),
        ),
        ("POST", "/v1/emergency") => (
            path.into(),
            Some(json!({"patient_id": w.victim, "reason": "matrix: a reason"})),
        ),
        ("GET", "/v1/emergency") => (path.into(), None),
        ("GET", "/v1/emergency/{id}/keys") => (format!("/v1/emergency/{}/keys", w.emergency), None),
        ("POST", "/v1/emergency/{id}/veto") => (
            format!("/v1/emergency/{}/veto", w.emergency),
            Some(json!({})),
        ),
        _ => return None,
    };
    Some(s)
}

/// Routes whose `{id}` object belongs to someone: a non-owner of an allowed role gets the same
/// 404 as for an id that does not exist. Every other `{id}` route must be listed as shared.
const OWNER_SCOPED: &[(&str, &str, &str)] = &[
    ("GET", "/v1/bookings/{id}", "other_patient"),
    ("GET", "/v1/bookings/{id}", "other_doctor"),
    ("POST", "/v1/bookings/{id}/cancel", "other_patient"),
    ("POST", "/v1/bookings/{id}/complete", "other_doctor"),
    ("POST", "/v1/bookings/{id}/no-show", "other_doctor"),
    ("GET", "/v1/doctors/{id}/availability", "other_doctor"),
    ("PUT", "/v1/doctors/{id}/availability", "other_doctor"),
    ("GET", "/v1/reports/{id}", "other_patient"),
    ("GET", "/v1/reports/{id}", "other_doctor"),
    ("GET", "/v1/reports/{id}/key", "other_patient"),
    ("GET", "/v1/reports/{id}/key", "other_doctor"),
    ("PUT", "/v1/reports/{id}/chunks/{chunk}", "other_doctor"),
    ("GET", "/v1/reports/{id}/chunks/{chunk}", "other_patient"),
    ("GET", "/v1/reports/{id}/chunks/{chunk}", "other_doctor"),
    ("POST", "/v1/reports/{id}/missing", "other_doctor"),
    ("POST", "/v1/reports/{id}/commit", "other_doctor"),
    ("GET", "/v1/chunks/{sha256}", "other_patient"),
    ("GET", "/v1/chunks/{sha256}", "other_doctor"),
    ("POST", "/v1/otp/{id}/resend", "other_patient"),
    ("POST", "/v1/grants/{id}/approve", "other_patient"),
    ("POST", "/v1/grants/{id}/wrap", "other_doctor"),
    ("POST", "/v1/grants/{id}/revoke", "other_patient"),
    ("GET", "/v1/reports/{id}/order", "other_patient"),
    ("GET", "/v1/reports/{id}/order", "other_doctor"),
    // Issue 16: the escrow is the author's; a request is its reader's and its patient's.
    ("POST", "/v1/emergency/escrow/{id}", "other_doctor"),
    ("GET", "/v1/emergency/{id}/keys", "doctor"),
    ("POST", "/v1/emergency/{id}/veto", "other_patient"),
];
/// `{id}` routes whose object every allowed role may see (the directory; admin on any user;
/// reception on any booking).
const SHARED_OBJECTS: &[(&str, &str)] = &[
    ("POST", "/v1/bookings/{id}/check-in"),
    ("GET", "/v1/doctors/{id}"),
    ("GET", "/v1/doctors/{id}/slots"),
    ("POST", "/v1/admin/users/{id}/deactivate"),
    ("POST", "/v1/admin/users/{id}/reactivate"),
    ("GET", "/v1/users/{id}/keys"),
];

fn register_body() -> Value {
    json!({
        "enrollment": {"kind": "invite", "code": "AAAAA-BBBBB-CCCCC-DDDDD"},
        "user_id": Uuid::new_v4(),
        "salt": "00".repeat(16),
        "kdf": common::TEST_KDF,
        "auth_key": "00".repeat(32),
        "public_keys": {"x25519": "11".repeat(32), "ed25519": "58".to_string() + &"66".repeat(31)},
        "bundle": "00".repeat(92),
    })
}

async fn send(
    w: &World,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = http().request(m, format!("{}{}", w.ts.url, path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    // Chunks come back as raw bytes; every error is JSON.
    if status == 200 && path.contains("/chunks/") {
        return (status, Value::Null);
    }
    // Metrics are Prometheus text.
    if status == 200 && path == "/v1/metrics" {
        assert!(text.contains("clinvault_http_requests_total"), "{text}");
        return (status, Value::Null);
    }
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {text}"));
    (status, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn matrix(db: Db) {
    let w = world(db).await;
    let routes = table();
    assert!(routes.len() >= 20, "the table lists the routes");
    let mut n = 0;
    // Every route is known here and reaches its handler (not the 404 fallback).
    for r in &routes {
        let method = r.method.as_str();
        let (path, body) = sample(&w, method, r.path, n).unwrap_or_else(|| {
            panic!(
                "{method} {} has no sample in the matrix test: add one (and its owner rules)",
                r.path
            )
        });
        n += 1;
        let (status, v) = send(&w, method, &path, body.as_ref(), None).await;
        match r.policy {
            Policy::Public => {
                assert!(
                    !matches!(code(&v), "unauthenticated" | "forbidden"),
                    "{method} {path} is public but answered {status} {v}"
                );
                assert_ne!(status, 500, "{method} {path}: {v}");
            }
            Policy::Roles(_) => {
                assert_eq!(
                    (status, code(&v)),
                    (401, "unauthenticated"),
                    "{method} {path} without a session"
                );
            }
        }
        if r.path.contains("{id}") {
            let owned = OWNER_SCOPED
                .iter()
                .any(|(m, p, _)| *m == method && *p == r.path);
            let shared = SHARED_OBJECTS
                .iter()
                .any(|(m, p)| *m == method && *p == r.path);
            assert!(
                owned ^ shared,
                "{method} {}: classify its object as owner-scoped or shared in this test",
                r.path
            );
        }
    }
    // Owner dimension first, before the role sweep changes states.
    for (method, route, who) in OWNER_SCOPED {
        let t = match *who {
            "other_patient" => w.other_patient_token.clone(),
            "doctor" => w.tokens[&Role::Doctor].clone(),
            _ => w.other_doctor_token.clone(),
        };
        let (path, body) = sample(&w, method, route, 0).unwrap();
        let missing = path
            .replace(&w.booking.to_string(), &Uuid::new_v4().to_string())
            .replace(&w.doctor.to_string(), &Uuid::new_v4().to_string())
            .replace(&w.report.to_string(), &Uuid::new_v4().to_string())
            .replace(&w.grant.to_string(), &Uuid::new_v4().to_string())
            .replace(&w.release_request.to_string(), &Uuid::new_v4().to_string())
            .replace(&w.emergency.to_string(), &Uuid::new_v4().to_string())
            .replace(&w.chunk, &"ab".repeat(32));
        let real = send(&w, method, &path, body.as_ref(), Some(&t)).await;
        let fake = send(&w, method, &missing, body.as_ref(), Some(&t)).await;
        assert_eq!(real.0, 404, "{who} on {method} {route}: {:?}", real.1);
        assert_eq!(
            real, fake,
            "{who} on {method} {route}: differs from a missing id"
        );
    }
    // Every route × every role.
    let mut checked = 0;
    for r in &routes {
        let method = r.method.as_str();
        for role in Role::ALL {
            let (path, body) = sample(&w, method, r.path, n).unwrap();
            n += 1;
            // Logout ends the session it is sent with: use a throwaway one.
            let tok = if r.path == "/v1/auth/logout" {
                let email = match role {
                    Role::Admin => "admin@clinic.test",
                    Role::Doctor => "doc@clinic.test",
                    Role::Reception => "rec@clinic.test",
                    Role::Auditor => "aud@clinic.test",
                    Role::Patient => "p1@clinic.test",
                    Role::Station => "lab1@clinic.test",
                };
                w.ts.login(email).await.token().unwrap().to_string()
            } else {
                w.tokens[&role].clone()
            };
            let (status, v) = send(&w, method, &path, body.as_ref(), Some(&tok)).await;
            if r.policy.allows(role) {
                // Allowed: past the policy layer (a handler's own answer, even a 401 for a
                // wrong password at login, is fine; a session or role refusal is not).
                assert!(
                    !matches!(
                        code(&v),
                        "unauthenticated" | "session_expired" | "session_revoked" | "forbidden"
                    ) && status != 405
                        && status < 500,
                    "{role} may use {method} {path} but got {status} {v}"
                );
            } else {
                assert_eq!(
                    (status, code(&v)),
                    (403, "forbidden"),
                    "{role} may not use {method} {path}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes.len() * Role::ALL.len());
    w.ts.handle.shutdown().await.unwrap();
}
both_backends!(route_role_owner_matrix, matrix);

/// DESIGN.md §4 written out a second time, independently of the server's table: a policy that
/// drifts from it, or a route missing here, fails.
#[test]
fn policies_follow_design_section_4() {
    use Role::*;
    const ALL: &[Role] = &[Patient, Doctor, Reception, Admin, Auditor, Station];
    let expected: &[(&str, &str, Option<&[Role]>)] = &[
        ("GET", "/v1/health", None),
        ("GET", "/v1/ready", None),
        // Public, answered to loopback only (metrics_public opens it).
        ("GET", "/v1/metrics", None),
        ("POST", "/v1/auth/prelogin", None),
        ("POST", "/v1/auth/verify-email", None),
        ("POST", "/v1/auth/invite-info", None),
        ("POST", "/v1/auth/register", None),
        ("POST", "/v1/auth/login", None),
        ("POST", "/v1/auth/logout", Some(ALL)),
        ("GET", "/v1/auth/me", Some(ALL)),
        ("GET", "/v1/auth/keys", Some(ALL)),
        ("POST", "/v1/auth/rekey", Some(ALL)),
        ("POST", "/v1/auth/password", Some(ALL)),
        ("POST", "/v1/auth/recovery-kit", Some(ALL)),
        ("POST", "/v1/auth/recover/open", None),
        ("POST", "/v1/auth/recover/reset", None),
        ("POST", "/v1/admin/invites", Some(&[Admin])),
        ("GET", "/v1/admin/users", Some(&[Admin])),
        ("POST", "/v1/admin/users/{id}/deactivate", Some(&[Admin])),
        ("POST", "/v1/admin/users/{id}/reactivate", Some(&[Admin])),
        (
            "GET",
            "/v1/doctors",
            Some(&[Patient, Doctor, Reception, Admin]),
        ),
        (
            "GET",
            "/v1/doctors/{id}",
            Some(&[Patient, Doctor, Reception, Admin]),
        ),
        (
            "GET",
            "/v1/doctors/{id}/slots",
            Some(&[Patient, Doctor, Reception, Admin]),
        ),
        (
            "GET",
            "/v1/doctors/{id}/availability",
            Some(&[Doctor, Reception, Admin]),
        ),
        (
            "PUT",
            "/v1/doctors/{id}/availability",
            Some(&[Doctor, Admin]),
        ),
        ("GET", "/v1/patients", Some(&[Doctor, Reception])),
        ("GET", "/v1/bookings", Some(&[Patient, Doctor, Reception])),
        ("POST", "/v1/bookings", Some(&[Patient, Reception])),
        (
            "GET",
            "/v1/bookings/{id}",
            Some(&[Patient, Doctor, Reception]),
        ),
        (
            "POST",
            "/v1/bookings/{id}/cancel",
            Some(&[Patient, Reception]),
        ),
        ("POST", "/v1/bookings/{id}/check-in", Some(&[Reception])),
        ("POST", "/v1/bookings/{id}/complete", Some(&[Doctor])),
        (
            "POST",
            "/v1/bookings/{id}/no-show",
            Some(&[Doctor, Reception]),
        ),
        ("POST", "/v1/reports", Some(&[Doctor, Station])),
        (
            "PUT",
            "/v1/reports/{id}/chunks/{chunk}",
            Some(&[Doctor, Station]),
        ),
        (
            "GET",
            "/v1/reports/{id}/chunks/{chunk}",
            Some(&[Patient, Doctor]),
        ),
        ("POST", "/v1/reports/{id}/missing", Some(&[Doctor, Station])),
        ("POST", "/v1/reports/{id}/commit", Some(&[Doctor, Station])),
        ("GET", "/v1/reports", Some(&[Patient, Doctor, Reception])),
        ("GET", "/v1/reports/{id}", Some(&[Patient, Doctor])),
        ("GET", "/v1/reports/{id}/key", Some(&[Patient, Doctor])),
        (
            "GET",
            "/v1/chunks/{sha256}",
            Some(&[Patient, Doctor, Auditor]),
        ),
        ("POST", "/v1/otp/verify", Some(&[Patient, Doctor])),
        ("GET", "/v1/otp", Some(&[Patient, Doctor])),
        (
            "POST",
            "/v1/otp/{id}/resend",
            Some(&[Patient, Doctor, Reception]),
        ),
        ("GET", "/v1/grants", Some(&[Patient, Doctor])),
        ("POST", "/v1/grants", Some(&[Doctor])),
        ("POST", "/v1/grants/{id}/approve", Some(&[Patient])),
        ("POST", "/v1/grants/{id}/wrap", Some(&[Patient, Doctor])),
        ("POST", "/v1/grants/{id}/revoke", Some(&[Patient, Doctor])),
        ("GET", "/v1/ledger/head", Some(ALL)),
        ("GET", "/v1/ledger/consistency", Some(ALL)),
        ("GET", "/v1/ledger/inclusion", Some(ALL)),
        ("GET", "/v1/ledger/entries", Some(ALL)),
        ("GET", "/v1/ledger/frontier", Some(ALL)),
        ("GET", "/v1/users/{id}/keys", Some(ALL)),
        ("GET", "/v1/audit/reports", Some(&[Auditor])),
        ("POST", "/v1/audit/repair", Some(&[Auditor])),
        // Issue 16: doctors order, stations see their orders, readers see a report's order.
        ("POST", "/v1/orders", Some(&[Doctor])),
        ("GET", "/v1/orders", Some(&[Doctor, Station])),
        ("GET", "/v1/reports/{id}/order", Some(&[Patient, Doctor])),
        // Issue 16: break-glass.
        ("GET", "/v1/emergency/team", Some(&[Doctor, Admin])),
        ("POST", "/v1/emergency/team", Some(&[Admin])),
        ("POST", "/v1/emergency/escrow/{id}", Some(&[Doctor])),
        ("POST", "/v1/emergency", Some(&[Doctor])),
        ("GET", "/v1/emergency", Some(&[Patient, Doctor, Admin])),
        ("GET", "/v1/emergency/{id}/keys", Some(&[Doctor])),
        ("POST", "/v1/emergency/{id}/veto", Some(&[Patient])),
    ];
    let t = table();
    assert_eq!(
        t.len(),
        expected.len(),
        "routes and DESIGN.md §4 differ in number"
    );
    for r in &t {
        let (_, _, roles) = expected
            .iter()
            .find(|(m, p, _)| *m == r.method.as_str() && *p == r.path)
            .unwrap_or_else(|| {
                panic!(
                    "{} {} is not in DESIGN.md §4's table here",
                    r.method, r.path
                )
            });
        match roles {
            None => assert_eq!(r.policy, Policy::Public, "{} {}", r.method, r.path),
            Some(roles) => {
                assert!(
                    matches!(r.policy, Policy::Roles(_)),
                    "{} {}",
                    r.method,
                    r.path
                );
                for role in Role::ALL {
                    assert_eq!(
                        r.policy.allows(role),
                        roles.contains(&role),
                        "{role} on {} {}",
                        r.method,
                        r.path
                    );
                }
            }
        }
    }
}
