//! Issue #6: several `clinvault serve` processes over one PostgreSQL and three S3 buckets (one
//! moto process each, `replicas = 2`), driven by clients in this process that retry on another
//! server when one fails. One cluster, five phases, each asserting behaviour:
//! (a) load, (b) kill -9 of servers, (c) a bucket stopped then lost, (d) a database restart,
//! (e) concurrent ledger appends through two processes.
//!
//! Everything listens on 127.0.0.1. Under `CI=true` the phases are shorter; the assertions are
//! the same. No assertion depends on timing.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use clinvault::api::{Availability, BookRequest, InviteRequest, Role};
use clinvault::client::audit::{AuditSummary, audit};
use clinvault::client::ledger::Ledger;
use clinvault::client::reports::{TransferOptions, UploadOptions, download, upload};
use clinvault::client::{ApiClient, ClientError, LoggedIn};
use common::clinic::every_day;
use common::{PASSWORD, TEST_KDF, invite_code, six_digits};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_clinvault");

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_http(url: &str, what: &str) {
    let c = {
        clinvault::install_tls_provider();
        reqwest::Client::new()
    };
    for _ in 0..300 {
        if let Ok(r) = c.get(url).timeout(Duration::from_secs(2)).send().await
            && r.status().as_u16() < 500
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never answered at {url}");
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Runs a PostgreSQL command as `postgres` when we are root (it refuses to run as root).
fn pg_cmd(bin: &str, args: &[&str]) -> Command {
    let pgbin = std::env::var("CLINVAULT_PGBIN").unwrap_or("/usr/lib/postgresql/15/bin".into());
    let exe = format!("{pgbin}/{bin}");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &exe]).args(args);
        c
    } else {
        let mut c = Command::new(exe);
        c.args(args);
        c
    }
}

/// Our own PostgreSQL, so that restarting it disturbs nobody else's tests.
struct Pg {
    dir: PathBuf,
    port: u16,
}

impl Pg {
    fn start(root: &Path) -> Pg {
        let dir = root.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres", dir.to_str().unwrap()])
            .status();
        let data = dir.join("data");
        let ok = pg_cmd(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        )
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
        assert!(ok, "initdb");
        let pg = Pg {
            dir,
            port: free_port(),
        };
        pg.ctl("start");
        pg
    }

    fn ctl(&self, what: &str) {
        let data = self.dir.join("data");
        let log = self.dir.join("pg.log");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut args = vec!["-D", data.to_str().unwrap(), "-w", "-m", "fast"];
        if what != "stop" {
            args.extend(["-l", log.to_str().unwrap(), "-o", &opts]);
        }
        args.push(what);
        let ok = pg_cmd("pg_ctl", &args)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "pg_ctl {what}");
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = pg_cmd(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

struct Moto {
    child: Child,
    port: u16,
    bucket: String,
}

impl Moto {
    async fn start(bucket: &str, port: u16, log: &Path) -> Moto {
        let exe = std::env::var("CLINVAULT_MOTO_SERVER")
            .unwrap_or("/opt/clinvault-ci-venv/bin/moto_server".into());
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("moto_server (set CLINVAULT_MOTO_SERVER)");
        // Owned before anything can panic, so that it is stopped whatever happens.
        let m = Moto {
            child,
            port,
            bucket: bucket.into(),
        };
        let url = format!("http://127.0.0.1:{port}");
        wait_http(&url, "moto").await;
        // moto takes an unsigned bucket creation.
        let r = {
            clinvault::install_tls_provider();
            reqwest::Client::new()
        }
        .put(format!("{url}/{bucket}"))
        .send()
        .await
        .unwrap();
        assert!(r.status().is_success(), "create bucket {bucket}: {r:?}");
        m
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Server {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Server {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["--config", self.config.to_str().unwrap(), "serve"])
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_http(&format!("{}/v1/health", self.url()), "clinvault serve").await;
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "-9");
            let _ = c.wait();
        }
    }
}

/// Fields drop in order: servers, then buckets, then the database, then the folder.
struct Cluster {
    servers: Vec<tokio::sync::Mutex<Server>>,
    motos: Vec<tokio::sync::Mutex<Moto>>,
    pg: Pg,
    db_url: String,
    urls: Vec<String>,
    next: AtomicUsize,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn server_toml(c: &Cluster, i: usize, port: u16) -> String {
    let mut t = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata = \"{data}\"\ndatabase_url = \"{db}\"\n\
         secrets_file = \"{secrets}\"\ntimezone = \"Europe/Berlin\"\n\
         auth_per_address_per_minute = 1000000\ndemo = true\nreplicas = 2\nrelease_otp = false\n\
         bucket_timeout_secs = 3\nmax_db_connections = 12\nlog_json = true\n\
         max_future_bookings_per_patient = 1000000\n\
         [server.kdf]\nm_kib = {m}\nt = {tt}\np = {p}\n",
        data = c.dir.path().join(format!("s{i}")).display(),
        db = c.db_url,
        secrets = c.dir.path().join("secrets.toml").display(),
        m = TEST_KDF.m_kib,
        tt = TEST_KDF.t,
        p = TEST_KDF.p,
    );
    for m in &c.motos {
        let m = m.try_lock().unwrap();
        t.push_str(&format!(
            "[[server.buckets]]\nkind = \"s3\"\nname = \"{b}\"\nbucket = \"{b}\"\n\
             endpoint = \"http://127.0.0.1:{p}\"\naccess_key_id = \"test\"\n\
             secret_access_key = \"test\"\nallow_http = true\n",
            b = m.bucket,
            p = m.port
        ));
    }
    t
}

impl Cluster {
    async fn start(n_servers: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pg = Pg::start(dir.path());
        let mut conn = PgConnection::connect(&pg.url("postgres")).await.unwrap();
        sqlx::raw_sql("CREATE DATABASE clinvault")
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        let db_url = pg.url("clinvault");
        let mut motos = Vec::new();
        for b in ["bkt0", "bkt1", "bkt2"] {
            let log = dir.path().join(format!("moto-{b}.log"));
            motos.push(tokio::sync::Mutex::new(
                Moto::start(b, free_port(), &log).await,
            ));
        }
        let mut c = Cluster {
            dir,
            pg,
            db_url,
            motos,
            servers: Vec::new(),
            urls: Vec::new(),
            next: AtomicUsize::new(0),
        };
        for i in 0..n_servers {
            let port = free_port();
            let config = c.dir.path().join(format!("s{i}.toml"));
            std::fs::write(&config, server_toml(&c, i, port)).unwrap();
            // One at a time: the first makes the shared secrets file.
            let mut s = Server {
                child: None,
                port,
                config,
                log: c.dir.path().join(format!("s{i}.log")),
            };
            s.spawn().await;
            c.urls.push(s.url());
            c.servers.push(tokio::sync::Mutex::new(s));
        }
        c
    }

    fn next_url(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.urls[i % self.urls.len()].clone()
    }

    /// The newest mail to `to` in any server's outbox.
    fn last_mail(&self, to: &str) -> String {
        let mut best: Option<(std::time::SystemTime, String)> = None;
        for i in 0..self.urls.len() {
            let dir = self.dir.path().join(format!("s{i}")).join("outbox");
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.filter_map(|e| e.ok()) {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                if text.lines().any(|l| l == format!("To: {to}")) {
                    let t = e.metadata().unwrap().modified().unwrap();
                    if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                        best = Some((t, text));
                    }
                }
            }
        }
        best.unwrap_or_else(|| panic!("no mail to {to}")).1
    }

    async fn pg(&self) -> PgConnection {
        PgConnection::connect(&self.db_url).await.unwrap()
    }

    /// A counter summed over the servers' metrics (every label set of it).
    async fn metric_sum(&self, name: &str) -> u64 {
        let mut total = 0;
        for u in &self.urls {
            let text = reqwest::get(format!("{u}/v1/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            total += text
                .lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(['{', ' ']))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        total
    }

    /// Requests answered so far.
    async fn requests_served(&self) -> u64 {
        self.metric_sum("clinvault_http_requests_total").await
    }
}

/// A signed-in user: one session, usable through every server (one client per server, so
/// connections are reused).
struct User {
    clients: Vec<(String, ApiClient)>,
    me: Arc<LoggedIn>,
    id: Uuid,
}

impl User {
    fn at(&self, url: &str) -> ApiClient {
        self.clients
            .iter()
            .find(|(u, _)| u == url)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| panic!("no client for {url}"))
    }
}

async fn login(urls: &[String], email: &str) -> User {
    let mut c = ApiClient::new(&urls[0], false, TEST_KDF).unwrap();
    let me = c.login(email, PASSWORD).await.expect("login");
    let token = c.token().unwrap().to_string();
    User {
        clients: urls
            .iter()
            .map(|u| {
                let c = ApiClient::new(u, false, TEST_KDF)
                    .unwrap()
                    .with_token(token.clone());
                (u.clone(), c)
            })
            .collect(),
        id: me.login.user.id,
        me: Arc::new(me),
    }
}

/// What the clients saw.
#[derive(Default)]
struct Stats {
    latencies_ms: Mutex<Vec<f64>>,
    ops: AtomicU64,
    retries: AtomicU64,
    slot_taken: AtomicU64,
    unavailable_503: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// Acknowledged uploads.
    uploads: Mutex<Vec<Uploaded>>,
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Network(_) => true,
        ClientError::Server { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

/// Runs `f` against the servers in turn until it succeeds, retrying what a client may retry
/// (no answer, 502–504) on the next server, for up to two minutes.
async fn retry<T, F, Fut>(cl: &Cluster, st: &Stats, f: F) -> Result<T, ClientError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let url = cl.next_url();
        match f(url).await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && Instant::now() < give_up => {
                st.retries.fetch_add(1, Ordering::Relaxed);
                let mut wait = Duration::from_millis(100);
                if let ClientError::Server {
                    status: 503,
                    retry_after,
                    ..
                } = &e
                {
                    st.unavailable_503.fetch_add(1, Ordering::Relaxed);
                    assert!(retry_after.is_some(), "a 503 without Retry-After: {e}");
                    wait = Duration::from_millis(300);
                }
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Like [`retry`], but always on the same process (a check that must talk to that one).
async fn retry_at<T, F, Fut>(st: &Stats, f: F) -> Result<T, ClientError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && Instant::now() < give_up => {
                st.retries.fetch_add(1, Ordering::Relaxed);
                if let ClientError::Server { status: 503, .. } = &e {
                    st.unavailable_503.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn day(n: i64) -> NaiveDate {
    (Utc::now().with_timezone(&chrono_tz::Europe::Berlin) + chrono::Duration::days(n)).date_naive()
}

struct Clinic {
    admin: User,
    auditor: User,
    doctors: Vec<User>,
    patients: Vec<User>,
}

async fn clinic(cl: &Cluster, n_doctors: usize, n_patients: usize) -> Clinic {
    let u0 = cl.urls[cl.urls.len() - 1].clone();
    // Each process that starts while no admin exists replaces the code: the last one holds.
    let last = cl.urls.len() - 1;
    let code_file = cl
        .dir
        .path()
        .join(format!("s{last}"))
        .join("admin-enrollment.txt");
    let code = std::fs::read_to_string(code_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
    ApiClient::new(&u0, false, TEST_KDF)
        .unwrap()
        .register_admin(&code, "admin@clinic.test", "Ada Admin", PASSWORD)
        .await
        .unwrap();
    let admin = login(&cl.urls, "admin@clinic.test").await;
    let staff = |role: Role, email: String, name: String| {
        let admin = admin.at(&cl.next_url());
        let url = cl.next_url();
        async move {
            admin
                .invite(&InviteRequest {
                    role,
                    email: email.clone(),
                    name,
                    specialty: "Cardiology".into(),
                    bio: "Practised for years.".into(),
                })
                .await
                .unwrap();
            let code = invite_code(&cl.last_mail(&email));
            ApiClient::new(&url, false, TEST_KDF)
                .unwrap()
                .register_invite(&code, PASSWORD)
                .await
                .unwrap();
            login(&cl.urls, &email).await
        }
    };
    let auditor = staff(
        Role::Auditor,
        "audit@clinic.test".into(),
        "Otto Audit".into(),
    )
    .await;
    let reception = staff(
        Role::Reception,
        "desk@clinic.test".into(),
        "Rita Desk".into(),
    )
    .await;
    let mut doctors = Vec::new();
    for i in 0..n_doctors {
        let d = staff(
            Role::Doctor,
            format!("doc{i}@clinic.test"),
            format!("Doctor Number{i}"),
        )
        .await;
        d.at(&cl.next_url())
            .set_availability(
                d.id,
                &Availability {
                    weekly: every_day("08:00", "18:00", 10),
                    days_off: vec![],
                },
            )
            .await
            .unwrap();
        doctors.push(d);
    }
    let mut patients = Vec::new();
    for i in 0..n_patients {
        let email = format!("pat{i}@clinic.test");
        let c = ApiClient::new(&cl.next_url(), false, TEST_KDF).unwrap();
        let v = c.verify_email(&email).await.unwrap();
        let code = six_digits(&cl.last_mail(&email));
        c.register_patient(
            &v,
            &code,
            &email,
            &format!("Patient Number{i}"),
            "+49 30 1234567",
            PASSWORD,
        )
        .await
        .unwrap();
        patients.push(login(&cl.urls, &email).await);
    }
    // Every patient has a completed visit with every doctor (reports need one).
    for (di, d) in doctors.iter().enumerate() {
        let slots = patients[0]
            .at(&cl.next_url())
            .slots(d.id, Some(day(1)), Some(day(1)))
            .await
            .unwrap()
            .slots;
        for (pi, p) in patients.iter().enumerate() {
            let b = p
                .at(&cl.next_url())
                .book(&BookRequest {
                    doctor_id: d.id,
                    // A different time for every visit: a patient holds one booking at a time.
                    start: slots[di * n_patients + pi].start,
                    patient_id: None,
                })
                .await
                .unwrap_or_else(|e| panic!("visit booking d{di} p{pi}: {e}"));
            // Checked in on its day, completed once begun: moved to a second ago.
            sqlx::query(common::BACKDATE_BOOKING)
                .bind(chrono::Utc::now().timestamp_millis() - 1000)
                .bind(b.id.to_string())
                .execute(&mut cl.pg().await)
                .await
                .unwrap();
            reception
                .at(&cl.next_url())
                .booking_action(b.id, "check-in")
                .await
                .unwrap();
            d.at(&cl.next_url())
                .booking_action(b.id, "complete")
                .await
                .unwrap();
        }
    }
    Clinic {
        admin,
        auditor,
        doctors,
        patients,
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    getrandom::fill(&mut v).unwrap();
    v
}

fn rand_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % n.max(1)
}

/// An acknowledged upload: the report and the hash of what was sent.
#[derive(Clone)]
struct Uploaded {
    report: Uuid,
    patient: usize,
    sha: [u8; 32],
    len: usize,
}

/// Seals and uploads `len` random bytes for a patient, retrying on another server (a retry
/// after a lost answer may leave the earlier attempt's report open: that is allowed).
async fn upload_one(
    cl: &Cluster,
    st: &Stats,
    doc: &User,
    patient: (usize, Uuid),
    len: usize,
    work: &Path,
) -> Uploaded {
    let data = random_bytes(len);
    let file = work.join(format!("{}.bin", Uuid::new_v4()));
    std::fs::write(&file, &data).unwrap();
    let state = work.join(format!("state-{}", Uuid::new_v4()));
    let started = Instant::now();
    let out = retry(cl, st, |url| {
        let c = doc.at(&url);
        let file = file.clone();
        let state = state.clone();
        async move {
            let l = Ledger::sync(&c, &state, None, 3600).await?;
            upload(
                &c,
                &doc.me,
                &l,
                patient.1,
                &file,
                &UploadOptions {
                    state_dir: &state,
                    chunk_size: 1024 * 1024,
                    transfers: 4,
                    title: "Scan".into(),
                    note: String::new(),
                    cancel: None,
                    progress: None,
                },
            )
            .await
        }
    })
    .await
    .unwrap_or_else(|e| panic!("upload of {len} bytes failed: {e}"));
    let _ = std::fs::remove_file(&file);
    st.ops.fetch_add(1, Ordering::Relaxed);
    let _ = started;
    Uploaded {
        report: out.report_id,
        patient: patient.0,
        sha: Sha256::digest(&data).into(),
        len,
    }
}

/// The patient downloads the report (every check of the client runs) and it must be the
/// bytes that were sent.
async fn download_check(cl: &Cluster, st: &Stats, pat: &User, u: &Uploaded, work: &Path) {
    let out = work.join(format!("dl-{}", Uuid::new_v4()));
    let state = work.join(format!("dlstate-{}", Uuid::new_v4()));
    retry(cl, st, |url| {
        let c = pat.at(&url);
        let out = out.clone();
        let state = state.clone();
        async move {
            let l = Ledger::sync(&c, &state, None, 3600).await?;
            let _ = std::fs::remove_file(&out);
            download(&c, &pat.me, &l, u.report, &out, &TransferOptions::new(4)).await
        }
    })
    .await
    .unwrap_or_else(|e| panic!("download of {} failed: {e}", u.report));
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), u.len, "report {} length", u.report);
    assert_eq!(
        <[u8; 32]>::from(Sha256::digest(&got)),
        u.sha,
        "report {} downloads byte-identical",
        u.report
    );
    let _ = std::fs::remove_file(&out);
}

/// The auditor's audit from an empty state folder: the ledger replayed from entry 0 against
/// the head, every replica of every chunk checked.
async fn fresh_audit(cl: &Cluster, st: &Stats, auditor: &User, repair: bool) -> AuditSummary {
    let state = tempfile::tempdir().unwrap();
    retry(cl, st, |url| {
        let c = auditor.at(&url);
        let state = state.path().to_path_buf();
        async move {
            let l = Ledger::sync(&c, &state, None, 3600).await?;
            audit(&c, &l, repair).await
        }
    })
    .await
    .expect("audit runs")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn timed<T>(st: &Stats, fut: impl Future<Output = T>) -> T {
    let t = Instant::now();
    let v = fut.await;
    st.latencies_ms
        .lock()
        .unwrap()
        .push(t.elapsed().as_secs_f64() * 1000.0);
    st.ops.fetch_add(1, Ordering::Relaxed);
    v
}

/// One client of the load run: searches and bookings (every 8th client uploads 1–8 MiB
/// instead, then reads a report back).
async fn load_client(
    cl: Arc<Cluster>,
    k: Arc<Clinic>,
    st: Arc<Stats>,
    n: usize,
    stop: Arc<AtomicBool>,
    work: PathBuf,
    no_uploads: bool,
) {
    let uploads = &st.uploads;
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let pi = (n + round as usize) % k.patients.len();
        let pat = &k.patients[pi];
        let doc = &k.doctors[n % k.doctors.len()];
        if n.is_multiple_of(8) && !no_uploads {
            let len = (1 + rand_below(8) as usize) * 1024 * 1024 - rand_below(4096) as usize;
            let u = upload_one(&cl, &st, doc, (pi, pat.id), len, &work).await;
            // Read back a report at random: the doctor's own or one uploaded by another.
            let other = {
                let ups = uploads.lock().unwrap();
                ups.get(rand_below(ups.len() as u64 + 1) as usize).cloned()
            };
            uploads.lock().unwrap().push(u.clone());
            let check = other.unwrap_or(u);
            download_check(&cl, &st, &k.patients[check.patient], &check, &work).await;
            continue;
        }
        let r = match round % 4 {
            0 => {
                let q = ["doc", "Number", "Card", "x"][n % 4];
                timed(
                    &st,
                    retry(&cl, &st, |url| async move {
                        pat.at(&url).doctors(q, "", 1).await.map(|_| ())
                    }),
                )
                .await
            }
            1 | 2 => {
                let d = &k.doctors[rand_below(k.doctors.len() as u64) as usize];
                let when = day(2 + rand_below(20) as i64);
                let slots = timed(
                    &st,
                    retry(&cl, &st, |url| async move {
                        pat.at(&url).slots(d.id, Some(when), Some(when)).await
                    }),
                )
                .await;
                match slots {
                    Ok(s) if !s.slots.is_empty() => {
                        let start = s.slots[rand_below(s.slots.len() as u64) as usize].start;
                        timed(
                            &st,
                            retry(&cl, &st, |url| async move {
                                pat.at(&url)
                                    .book(&BookRequest {
                                        doctor_id: d.id,
                                        start,
                                        patient_id: None,
                                    })
                                    .await
                            }),
                        )
                        .await
                        .map(|_| ())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            _ => {
                timed(
                    &st,
                    retry(&cl, &st, |url| async move {
                        pat.at(&url).reports(None).await.map(|_| ())
                    }),
                )
                .await
            }
        };
        match r {
            Ok(()) => {}
            Err(ClientError::Server { code, .. }) if code == "slot_taken" => {
                st.slot_taken.fetch_add(1, Ordering::Relaxed);
            }
            // A patient may not hold two bookings at once time: also an expected refusal.
            Err(ClientError::Server { code, .. }) if code == "overlapping_booking" => {
                st.slot_taken.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => st.errors.lock().unwrap().push(e.to_string()),
        }
    }
}

async fn no_double_bookings(cl: &Cluster) {
    let mut db = cl.pg().await;
    let doubles: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT doctor_id, starts_at FROM bookings \
         WHERE status <> 'cancelled' GROUP BY doctor_id, starts_at HAVING count(*) > 1) d",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(doubles, 0, "double bookings");
    let (n, max, size): (i64, Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ledger_entries), (SELECT max(idx) FROM ledger_entries), \
         (SELECT size FROM ledger_state WHERE id = 1)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((n, max.unwrap_or(-1) + 1), (size, size), "ledger rows");
}

/// Every committed report verifies and matches what was acknowledged; returns how many were
/// checked and how many reports are still open.
async fn committed_reports_verify(
    cl: &Cluster,
    st: &Stats,
    k: &Clinic,
    acked: &[Uploaded],
    work: &Path,
) -> (usize, i64) {
    let mut db = cl.pg().await;
    let committed: Vec<(String, String)> =
        sqlx::query_as("SELECT id, patient_id FROM reports WHERE status = 'committed'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM reports WHERE status = 'open'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let ids: HashMap<Uuid, Uuid> = committed
        .iter()
        .map(|(r, p)| (r.parse().unwrap(), p.parse().unwrap()))
        .collect();
    for a in acked {
        assert!(
            ids.contains_key(&a.report),
            "acknowledged report {} is committed",
            a.report
        );
        download_check(cl, st, &k.patients[a.patient], a, work).await;
    }
    // Committed but not acknowledged (the answer was lost to a kill): it must still verify.
    for (r, p) in &ids {
        if acked.iter().any(|a| a.report == *r) {
            continue;
        }
        let pat = k.patients.iter().find(|u| u.id == *p).unwrap();
        let out = work.join(format!("extra-{r}"));
        let state = work.join(format!("extra-state-{r}"));
        retry(cl, st, |url| {
            let c = pat.at(&url);
            let out = out.clone();
            let state = state.clone();
            async move {
                let l = Ledger::sync(&c, &state, None, 3600).await?;
                let _ = std::fs::remove_file(&out);
                download(&c, &pat.me, &l, *r, &out, &TransferOptions::new(4)).await
            }
        })
        .await
        .unwrap_or_else(|e| panic!("committed report {r} does not verify: {e}"));
        let _ = std::fs::remove_file(&out);
    }
    (ids.len(), open)
}

fn assert_clean(s: &AuditSummary, what: &str) {
    assert!(
        s.clean(),
        "{what}: audit findings: {:?}",
        s.findings.iter().map(|f| f.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(s.entries, s.tree_size, "{what}: every entry replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts PostgreSQL, three moto servers and three clinvault processes; .ci/run runs it"]
async fn cluster_survives_load_crashes_outages_and_restarts() {
    let t0 = Instant::now();
    let (clients, load_secs, crash_rounds, outage_secs) = if ci() {
        (64, 12, 3, 6)
    } else {
        (64, 60, 6, 15)
    };
    let cl = Arc::new(Cluster::start(3).await);
    let k = Arc::new(clinic(&cl, 4, 8).await);
    let work = cl.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    eprintln!(
        "cluster and clinic ready in {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    // Logs carry the request id, as JSON.
    let r = {
        clinvault::install_tls_provider();
        reqwest::Client::new()
    }
    .get(format!("{}/v1/health", cl.urls[0]))
    .header("x-request-id", "harness-probe-42")
    .send()
    .await
    .unwrap();
    assert_eq!(r.headers()["x-request-id"], "harness-probe-42");

    // (a) Load.
    let st = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let served_before = cl.requests_served().await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            tokio::spawn(load_client(
                cl.clone(),
                k.clone(),
                st.clone(),
                n,
                stop.clone(),
                work.clone(),
                false,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(load_secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let served = cl.requests_served().await - served_before;
    let errors = st.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "load errors: {errors:?}");
    let mut lat = st.latencies_ms.lock().unwrap().clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let acked: Vec<Uploaded> = st.uploads.lock().unwrap().clone();
    assert!(!acked.is_empty(), "the load run uploaded reports");
    let up_bytes: usize = acked.iter().map(|u| u.len).sum();
    eprintln!(
        "LOAD: {clients} clients, {secs:.1}s: {served} requests served = {:.0} req/s; \
         searches+bookings p50 {:.1} ms p99 {:.1} ms over {} calls; {} slot_taken; \
         {} uploads ({:.1} MiB) each read back; {} retries",
        served as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len(),
        st.slot_taken.load(Ordering::Relaxed),
        acked.len(),
        up_bytes as f64 / 1048576.0,
        st.retries.load(Ordering::Relaxed),
    );
    no_double_bookings(&cl).await;
    // The metrics saw the traffic: every patient's code mail, the sealed bytes in (at least
    // the plaintext sent) and out (at least what was read back).
    assert!(cl.metric_sum("clinvault_otp_sent_total").await >= k.patients.len() as u64);
    assert!(cl.metric_sum("clinvault_chunk_bytes_in_total").await >= up_bytes as u64);
    assert!(cl.metric_sum("clinvault_chunk_bytes_out_total").await >= acked[0].len as u64);
    let log0 = std::fs::read_to_string(cl.dir.path().join("s0.log")).unwrap();
    assert!(
        log0.lines()
            .any(|l| l.starts_with('{') && l.contains("\"request_id\":\"harness-probe-42\"")),
        "a JSON log line carries the request id"
    );
    let a = fresh_audit(&cl, &st, &k.auditor, false).await;
    assert_clean(&a, "after load");
    eprintln!("LOAD phase done at {:.1}s", t0.elapsed().as_secs_f64());

    // (b) kill -9 of servers during uploads and commits, repeated.
    let crash_st = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let crash_ups = Arc::new(Mutex::new(Vec::new()));
    let uploaders: Vec<_> = (0..6)
        .map(|n| {
            let (cl, k, st, stop, ups, work) = (
                cl.clone(),
                k.clone(),
                crash_st.clone(),
                stop.clone(),
                crash_ups.clone(),
                work.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let pi = rand_below(k.patients.len() as u64) as usize;
                    let len = (1 + rand_below(3) as usize) * 1024 * 1024 + 17;
                    let u = upload_one(
                        &cl,
                        &st,
                        &k.doctors[n % k.doctors.len()],
                        (pi, k.patients[pi].id),
                        len,
                        &work,
                    )
                    .await;
                    ups.lock().unwrap().push(u);
                }
            })
        })
        .collect();
    let mut kills = 0;
    for round in 0..crash_rounds {
        tokio::time::sleep(Duration::from_millis(1500 + rand_below(1500))).await;
        let mut s = cl.servers[round % cl.servers.len()].lock().await;
        s.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.spawn().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for u in uploaders {
        u.await.unwrap();
    }
    let crash_acked = crash_ups.lock().unwrap().clone();
    assert!(!crash_acked.is_empty(), "uploads went on through the kills");
    let mut all_acked = acked.clone();
    all_acked.extend(crash_acked.iter().cloned());
    let (checked, open) = committed_reports_verify(&cl, &crash_st, &k, &all_acked, &work).await;
    let a = fresh_audit(&cl, &crash_st, &k.auditor, false).await;
    assert_clean(&a, "after kills");
    eprintln!(
        "CRASH: {kills} kill -9 survived; {} uploads acknowledged during them; {checked} committed \
         reports verified ({} acknowledged, byte-identical); {open} left open; {} retries",
        crash_acked.len(),
        all_acked.len(),
        crash_st.retries.load(Ordering::Relaxed)
    );

    // (c) One bucket stopped: writes and reads go on with the other two.
    let out_st = Stats::default();
    signal(cl.motos[1].lock().await.child.id(), "-STOP");
    let r = reqwest::get(format!("{}/v1/ready", cl.urls[0]))
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "ready reports the stopped bucket");
    assert!(r.text().await.unwrap().contains("bucket bkt1"));
    let until = Instant::now() + Duration::from_secs(outage_secs);
    let mut during = Vec::new();
    while Instant::now() < until {
        let pi = rand_below(k.patients.len() as u64) as usize;
        let u = upload_one(
            &cl,
            &out_st,
            &k.doctors[0],
            (pi, k.patients[pi].id),
            2 * 1024 * 1024 + 5,
            &work,
        )
        .await;
        download_check(&cl, &out_st, &k.patients[pi], &u, &work).await;
        // An older report, whose replicas may be in the stopped bucket.
        let old = &all_acked[rand_below(all_acked.len() as u64) as usize];
        download_check(&cl, &out_st, &k.patients[old.patient], old, &work).await;
        during.push(u);
    }
    signal(cl.motos[1].lock().await.child.id(), "-CONT");
    eprintln!(
        "OUTAGE: bucket bkt1 stopped {outage_secs}s: {} uploads and {} downloads went on \
         ({} retried calls)",
        during.len(),
        during.len() * 2,
        out_st.retries.load(Ordering::Relaxed)
    );
    // Then the bucket loses everything (moto keeps nothing across a restart): the repair
    // must bring every chunk back to two replicas.
    {
        let mut m = cl.motos[1].lock().await;
        let _ = m.child.kill();
        let _ = m.child.wait();
        let (bucket, port) = (m.bucket.clone(), m.port);
        *m = Moto::start(&bucket, port, &cl.dir.path().join("moto-bkt1-again.log")).await;
    }
    // An emptied bucket lost its identity marker: no server writes to it or calls itself
    // ready until the operator adopts it.
    let lost_seen = {
        let mut seen = false;
        for _ in 0..100 {
            let r = reqwest::get(format!("{}/v1/ready", cl.urls[0])).await;
            if let Ok(r) = r
                && r.status() == 503
                && r.text()
                    .await
                    .unwrap_or_default()
                    .contains("identity marker missing")
            {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    };
    assert!(lost_seen, "the emptied bucket makes the servers not ready");
    let adopt = std::process::Command::new(BIN)
        .args(["--config"])
        .arg(cl.dir.path().join("s0.toml"))
        .args(["admin", "adopt-bucket", "bkt1"])
        .output()
        .unwrap();
    assert!(
        adopt.status.success(),
        "adopt-bucket: {}",
        String::from_utf8_lossy(&adopt.stderr)
    );
    for u in &cl.urls {
        wait_ready(u).await;
    }
    let before = fresh_audit(&cl, &out_st, &k.auditor, false).await;
    assert!(
        before.missing > 0,
        "the emptied bucket shows as missing replicas"
    );
    let repaired = fresh_audit(&cl, &out_st, &k.auditor, true).await;
    assert!(!repaired.repaired.is_empty(), "the repair copied replicas");
    let after = fresh_audit(&cl, &out_st, &k.auditor, false).await;
    assert_clean(&after, "after repair");
    assert_eq!(after.missing, 0);
    let mut db = cl.pg().await;
    let under: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chunks c WHERE (SELECT count(*) FROM chunk_replicas r \
         WHERE r.chunk_id = c.id) < 2",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(under, 0, "every chunk is recorded in two buckets");
    eprintln!(
        "REPAIR: bkt1 emptied: {} replicas missing, {} chunks repaired, second audit clean \
         ({} replicas checked)",
        before.missing,
        repaired.repaired.len(),
        after.replicas_checked
    );

    // (d) The database restarts under load: 503 + Retry-After in the gap, then recovery.
    let db_st = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (1..=16)
        .map(|n| {
            tokio::spawn(load_client(
                cl.clone(),
                k.clone(),
                db_st.clone(),
                n,
                stop.clone(),
                work.clone(),
                true,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cl.pg.ctl("stop");
    // In the gap: a clear retryable answer, not a 500.
    let r = reqwest::get(format!("{}/v1/ready", cl.urls[1]))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    cl.pg.ctl("start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let errors = db_st.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "errors across the database restart: {errors:?}"
    );
    assert!(
        db_st.unavailable_503.load(Ordering::Relaxed) > 0,
        "the gap was seen as 503 unavailable"
    );
    for u in &cl.urls {
        wait_ready(u).await;
    }
    eprintln!(
        "DB RESTART: {} calls, {} answered 503 + Retry-After in the gap and were retried, 0 errors",
        db_st.ops.load(Ordering::Relaxed),
        db_st.unavailable_503.load(Ordering::Relaxed)
    );

    // (e) Appends through two processes at once never fork the ledger.
    let app_st = Arc::new(Stats::default());
    let done = Arc::new(AtomicBool::new(false));
    let appenders: Vec<_> = (0..16)
        .map(|n| {
            let (cl, k, st, work) = (cl.clone(), k.clone(), app_st.clone(), work.clone());
            tokio::spawn(async move {
                let url = cl.urls[n % 2].clone();
                let doc = &k.doctors[n % k.doctors.len()];
                let state = work.join(format!("append-{n}"));
                let mut ids = Vec::new();
                for i in 0..5 {
                    let pi = (n + i) % k.patients.len();
                    let file = work.join(format!("append-{n}-{i}.bin"));
                    std::fs::write(&file, random_bytes(8 * 1024 + i)).unwrap();
                    let c = doc.at(&url);
                    let o = retry_at(&st, || async {
                        let l = Ledger::sync(&c, &state, None, 3600).await?;
                        upload(
                            &c,
                            &doc.me,
                            &l,
                            k.patients[pi].id,
                            &file,
                            &UploadOptions {
                                state_dir: &state,
                                chunk_size: 4096,
                                transfers: 2,
                                title: String::new(),
                                note: String::new(),
                                cancel: None,
                                progress: None,
                            },
                        )
                        .await
                    })
                    .await
                    .unwrap_or_else(|e| panic!("append via {url}: {e}"));
                    st.ops.fetch_add(1, Ordering::Relaxed);
                    ids.push(o.commit);
                }
                ids
            })
        })
        .collect();
    // Meanwhile one client carries its verified head from one process to the other: each
    // sync checks a consistency proof from the other process's head to this one's.
    let checker = {
        let (cl, k, done, work, st) = (
            cl.clone(),
            k.clone(),
            done.clone(),
            work.clone(),
            app_st.clone(),
        );
        tokio::spawn(async move {
            let aud = &k.auditor;
            let dirs = [work.join("cross-a"), work.join("cross-b")];
            let mut files = Vec::new();
            for (i, d) in dirs.iter().enumerate() {
                Ledger::sync(&aud.at(&cl.urls[i]), d, None, 3600)
                    .await
                    .unwrap();
                let f = std::fs::read_dir(d.join("ledger"))
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "json"))
                    .unwrap();
                files.push(f);
            }
            let mut checks = 0u64;
            let mut sizes = Vec::new();
            while !done.load(Ordering::Relaxed) || checks < 4 {
                let from = (checks % 2) as usize;
                let to = 1 - from;
                std::fs::copy(&files[from], &files[to]).unwrap();
                let c = aud.at(&cl.urls[to]);
                let l = retry_at(&st, || Ledger::sync(&c, &dirs[to], None, 3600))
                    .await
                    .unwrap_or_else(|e| panic!("heads of the two processes disagree: {e}"));
                sizes.push(l.head().tree_size);
                checks += 1;
            }
            (checks, sizes)
        })
    };
    let mut commits = 0;
    for a in appenders {
        commits += a.await.unwrap().len();
    }
    done.store(true, Ordering::Relaxed);
    let (checks, sizes) = checker.await.unwrap();
    assert!(
        sizes.windows(2).all(|w| w[0] <= w[1]),
        "heads only grow: {sizes:?}"
    );
    no_double_bookings(&cl).await;
    let fin = fresh_audit(&cl, &app_st, &k.auditor, false).await;
    assert_clean(&fin, "after concurrent appends");
    let mut db = cl.pg().await;
    let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_state WHERE id = 1")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(
        fin.tree_size as i64, size,
        "the replay covers the whole ledger"
    );
    eprintln!(
        "APPENDS: {commits} commits through two processes at once, {checks} cross-process \
         consistency checks, audit replay of {} entries matches root {}",
        fin.tree_size, fin.root_hex
    );
    eprintln!(
        "FIGURES: bytes lost 0; faults: {kills} kill -9, 1 bucket stopped and emptied, 1 database \
         restart; total {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    let _ = &k.admin;
}

async fn wait_ready(url: &str) {
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(format!("{url}/v1/ready")).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready again by itself");
}
