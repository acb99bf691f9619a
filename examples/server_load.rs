//! Load figures for issue 3: free-slot queries and bookings per second with p50/p99 latency, at
//! 1 and 64 concurrent clients, on SQLite and (with CLINVAULT_LOAD_DATABASE_URL pointing at an
//! empty database) PostgreSQL, against an in-process server over loopback HTTP; plus the
//! end-to-end login time with the shipped Argon2id parameters.
//!
//! `cargo run --example server_load -- [SECONDS_PER_RUN]` (a benchmark, not a test).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};
use clinvault::api::{Availability, BookRequest, InviteRequest, Role, WeeklyBlock};
use clinvault::client::ApiClient;
use clinvault::config::Config;
use clinvault::seal::KdfParams;

const PASSWORD: &str = "amber trellis quietly folds marmalade";
const CHEAP: KdfParams = KdfParams {
    m_kib: 256,
    t: 1,
    p: 1,
};

fn config(dir: &std::path::Path, db: Option<&str>, kdf: KdfParams) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.data = dir.to_path_buf();
    c.server.kdf = kdf;
    c.server.auth_per_address_per_minute = 1_000_000;
    c.server.demo = true;
    c.client.kdf_floor = CHEAP;
    if let Some(url) = db {
        c.server.database_url = url.to_string();
    }
    c
}

fn last_line_matching(dir: &std::path::Path, to: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("outbox"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for f in files.iter().rev() {
        let t = std::fs::read_to_string(f).unwrap();
        if t.lines().any(|l| l == format!("To: {to}")) {
            return t
                .lines()
                .map(str::trim)
                .find(|l| pred(l))
                .unwrap()
                .to_string();
        }
    }
    panic!("no mail to {to}")
}

fn week(start: &str, end: &str, len: u32, days: &[&str]) -> Availability {
    Availability {
        weekly: days
            .iter()
            .map(|d| WeeklyBlock {
                weekday: d.to_string(),
                start: start.into(),
                end: end.into(),
                slot_minutes: len,
            })
            .collect(),
        days_off: vec![],
    }
}

struct Stats {
    ops: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

fn stats(mut lat: Vec<Duration>, secs: f64) -> Stats {
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Stats {
        ops: lat.len(),
        secs,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn row(backend: &str, what: &str, clients: usize, s: &Stats) {
    println!(
        "| {backend} | {what} | {clients} | {:.0} | {:.1} | {:.1} | {} |",
        s.ops as f64 / s.secs,
        s.p50.as_secs_f64() * 1000.0,
        s.p99.as_secs_f64() * 1000.0,
        s.ops
    );
}

async fn run_backend(name: &str, db: Option<&str>, secs: f64) {
    let dir = tempfile::tempdir().unwrap();
    let h = clinvault::server::start(config(dir.path(), db, CHEAP))
        .await
        .unwrap();
    let url = h.url();
    let client = || ApiClient::new(&url, false, CHEAP).unwrap();
    let code = h.admin_enrollment_code.clone().unwrap();
    client()
        .register_admin(&code, "admin@load.test", "Ada Admin", PASSWORD)
        .await
        .unwrap();
    let mut admin = client();
    admin.login("admin@load.test", PASSWORD).await.unwrap();
    let mut doctors = Vec::new();
    for (email, name, av) in [
        (
            "busy@load.test",
            "Bea Busy",
            week(
                "00:00",
                "24:00",
                5,
                &["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            ),
        ),
        (
            "usual@load.test",
            "Uli Usual",
            week("09:00", "17:00", 20, &["mon", "tue", "wed", "thu", "fri"]),
        ),
    ] {
        admin
            .invite(&InviteRequest {
                role: Role::Doctor,
                email: email.into(),
                name: name.into(),
                specialty: "General practice".into(),
                bio: String::new(),
            })
            .await
            .unwrap();
        let code = last_line_matching(dir.path(), email, |l| l.len() == 23 && l.contains('-'));
        let r = client().register_invite(&code, PASSWORD).await.unwrap();
        let mut d = client();
        d.login(email, PASSWORD).await.unwrap();
        d.set_availability(r.user_id, &av).await.unwrap();
        doctors.push(r.user_id);
    }
    let mut patients = Vec::new();
    for i in 0..64 {
        let email = format!("p{i}@load.test");
        let c = client();
        let v = c.verify_email(&email).await.unwrap();
        let code = last_line_matching(dir.path(), &email, |l| {
            l.len() == 6 && l.chars().all(|c| c.is_ascii_digit())
        });
        c.register_patient(&v, &code, &email, &format!("Patient {i}"), "", PASSWORD)
            .await
            .unwrap();
        let mut c = client();
        c.login(&email, PASSWORD).await.unwrap();
        patients.push(c);
    }
    let usual = doctors[1];
    let busy = doctors[0];
    let today = Utc::now().date_naive();
    let mut first_day = 1;
    for clients in [1usize, 64] {
        // Free slots of a usual week (~120 slots).
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for c in &patients[..clients] {
            let c = c.clone();
            let (from, to) = (today + Days::days(1), today + Days::days(7));
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    c.slots(usual, Some(from), Some(to)).await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let start = Instant::now();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        row(
            name,
            "free slots (1 week)",
            clients,
            &stats(lat, start.elapsed().as_secs_f64()),
        );

        // Bookings: every client a different patient, each booking a slot of its own.
        let mut slots = Vec::new();
        for chunk in 0..2 {
            let from = today + Days::days(first_day + chunk * 14);
            let r = patients[0]
                .slots(busy, Some(from), Some(from + Days::days(13)))
                .await
                .unwrap();
            slots.extend(r.slots.into_iter().map(|s| s.start));
        }
        first_day += 28;
        let slots = Arc::new(slots);
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for (i, c) in patients[..clients].iter().enumerate() {
            let c = c.clone();
            let slots = slots.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut j = i;
                while Instant::now() < deadline && j < slots.len() {
                    let t = Instant::now();
                    c.book(&BookRequest {
                        doctor_id: busy,
                        start: slots[j],
                        patient_id: None,
                    })
                    .await
                    .unwrap();
                    lat.push(t.elapsed());
                    j += clients;
                }
                lat
            }));
        }
        let start = Instant::now();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        row(
            name,
            "bookings",
            clients,
            &stats(lat, start.elapsed().as_secs_f64()),
        );
    }
    h.shutdown().await.unwrap();
}

async fn login_time() {
    let dir = tempfile::tempdir().unwrap();
    let h = clinvault::server::start(config(dir.path(), None, KdfParams::default()))
        .await
        .unwrap();
    let url = h.url();
    let code = h.admin_enrollment_code.clone().unwrap();
    let c = ApiClient::new(&url, false, KdfParams::default()).unwrap();
    c.register_admin(&code, "admin@load.test", "Ada Admin", PASSWORD)
        .await
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut c = ApiClient::new(&url, false, KdfParams::default()).unwrap();
        let t = Instant::now();
        c.login("admin@load.test", PASSWORD).await.unwrap();
        times.push(t.elapsed());
    }
    let s = stats(times, 1.0);
    println!(
        "\nlogin end to end (pre-login, Argon2id m=64 MiB t=3 p=1, login, bundle opened), 5 runs: \
         p50 {:.0} ms, max {:.0} ms",
        s.p50.as_secs_f64() * 1000.0,
        s.p99.as_secs_f64() * 1000.0
    );
    h.shutdown().await.unwrap();
}

#[tokio::main]
async fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    println!("| backend | operation | clients | ops/s | p50 ms | p99 ms | ops |");
    println!("|---|---|---|---|---|---|---|");
    run_backend("SQLite", None, secs).await;
    if let Ok(url) = std::env::var("CLINVAULT_LOAD_DATABASE_URL") {
        run_backend("PostgreSQL", Some(&url), secs).await;
    }
    login_time().await;
}
