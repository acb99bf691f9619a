//! What outside testing found (issue 12): each point's failure reproduced, on SQLite and
//! (ignored unless asked for) PostgreSQL.

mod common;

use clinvault::client::reports::approve_and_wrap;
use common::Db;
use common::clinic::{clinic_with, release, report_bytes, upload_file, write_file};

/// Point 1: A grant request on a report still awaiting release is refused; a failed approve-and-wrap
/// records no consent.
async fn approve_is_all_or_nothing(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"grant")),
        "F",
    )
    .await;
    let e = c.doc2.c.grant_request(out.report_id).await.unwrap_err();
    assert_eq!(e.code(), Some("not_released"), "{e}");

    release(&c).await;
    let g = c.doc2.c.grant_request(out.report_id).await.unwrap();
    // The patient's copy cannot be read just now (un-released behind their back): the
    // approval must not be recorded either.
    sqlx::query("UPDATE reports SET released_at = NULL WHERE id = $1")
        .bind(out.report_id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let mut l = c.pat.ledger().await.unwrap();
    approve_and_wrap(&c.pat.c, &c.pat.me, &mut l, g.id)
        .await
        .unwrap_err();
    let now = c.pat.c.grants().await.unwrap();
    let now = now.iter().find(|x| x.id == g.id).unwrap();
    assert_eq!(now.status, "requested", "a failed approve left {now:?}");

    sqlx::query("UPDATE reports SET released_at = created_at WHERE id = $1")
        .bind(out.report_id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let done = approve_and_wrap(&c.pat.c, &c.pat.me, &mut l, g.id)
        .await
        .unwrap();
    assert_eq!(done.status, "wrapped");
    let l2 = c.doc2.ledger().await.unwrap();
    clinvault::client::reports::verify(&c.doc2.c, &c.doc2.me, &l2, out.report_id, 2)
        .await
        .unwrap();
}
both_backends!(approve_all_or_nothing, approve_is_all_or_nothing);

/// Point 2: Another account's code request and another author's report id answer like ids that do
/// not exist.
async fn no_existence_leaks(db: Db) {
    let c = clinic_with(db, |cfg| cfg.server.otp_per_minute = 100).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"leak")),
        "F",
    )
    .await;
    let req = out.commit.release_request_id.unwrap();
    let theirs = c.pat2.c.otp_verify(req, "123456").await.unwrap_err();
    let unknown = c
        .pat2
        .c
        .otp_verify(uuid::Uuid::new_v4(), "123456")
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), unknown.code());
    assert_eq!(theirs.to_string(), unknown.to_string());

    // doc2 has no completed visit: the same refusal for a taken id and a free one.
    let open = |id| clinvault::api::OpenReportRequest {
        report_id: id,
        patient_id: c.pat.id,
        chunk_size: 4096,
        plaintext_len: 10,
    };
    let taken = c
        .doc2
        .c
        .open_report(&open(out.report_id))
        .await
        .unwrap_err();
    let free = c
        .doc2
        .c
        .open_report(&open(uuid::Uuid::new_v4()))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), free.code(), "{taken} / {free}");
    // With a completed visit: the taken id answers like a report one cannot see.
    sqlx::query("UPDATE bookings SET status = 'completed' WHERE doctor_id = $1")
        .bind(c.doc2.id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let taken = c
        .doc2
        .c
        .open_report(&open(out.report_id))
        .await
        .unwrap_err();
    let hidden = c.doc2.c.report(out.report_id).await.unwrap_err();
    assert_eq!(taken.code(), Some("not_found"), "{taken}");
    assert_eq!(taken.to_string(), hidden.to_string());
}
both_backends!(existence_leaks, no_existence_leaks);

/// Point 5: Resends tried by someone who may not resend do not use up the request's limit.
async fn resend_limit_after_permission(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"resend")),
        "F",
    )
    .await;
    let req = out.commit.release_request_id.unwrap();
    for _ in 0..5 {
        let e = c.pat2.c.otp_resend(req).await.unwrap_err();
        assert_eq!(e.code(), Some("not_found"), "{e}");
    }
    c.rec
        .c
        .otp_resend(req)
        .await
        .expect("reception still resends");
}
both_backends!(resend_limit, resend_limit_after_permission);

/// Point 3: After a KDF upgrade an unknown address answers with parameters drawn like real ones,
/// and an account moves to the current parameters at its next login.
async fn kdf_upgrade_no_enumeration(db: Db) {
    let ts = common::start_server(db).await;
    let _admin = ts.admin().await;
    ts.patient("olga@clinic.test", "Olga Weber").await;
    let common::TestServer {
        handle,
        dir,
        mut config,
        ..
    } = ts;
    handle.shutdown().await.unwrap();
    let new = clinvault::seal::KdfParams {
        m_kib: 512,
        t: 1,
        p: 1,
    };
    config.server.kdf = new;
    let handle = clinvault::server::start(config.clone()).await.unwrap();
    let ts = common::TestServer {
        url: handle.url(),
        handle,
        dir,
        config,
    };
    let c = ts.client();
    let unknown = c.prelogin("nobody@clinic.test").await.unwrap();
    assert_eq!(
        unknown.kdf,
        common::TEST_KDF,
        "every account still has the old parameters; an unknown one must look the same"
    );
    assert_eq!(
        c.prelogin("olga@clinic.test").await.unwrap().kdf,
        common::TEST_KDF
    );
    // The next login re-keys; the password still works, under the new parameters.
    let mut c2 = ts.client();
    let me = c2
        .login("olga@clinic.test", common::PASSWORD)
        .await
        .unwrap();
    assert_eq!(me.login.kdf_upgrade, None, "re-keyed at login");
    assert_eq!(c.prelogin("olga@clinic.test").await.unwrap().kdf, new);
    let mut c3 = ts.client();
    let again = c3
        .login("olga@clinic.test", common::PASSWORD)
        .await
        .unwrap();
    assert_eq!(again.login.kdf_upgrade, None);
    assert_eq!(again.secrets.public(), me.secrets.public());
    let unlocked = c3.unlock_session(common::PASSWORD).await.unwrap();
    assert_eq!(unlocked.secrets.public(), me.secrets.public());
}
both_backends!(kdf_upgrade, kdf_upgrade_no_enumeration);

/// Point 4: Reception sees that a report exists, its author and date: no size, chunks or status.
async fn reception_sees_existence_only(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"recep")),
        "F",
    )
    .await;
    let tok = c.rec.c.token().unwrap().to_string();
    let v: serde_json::Value = common::http()
        .get(format!("{}/v1/reports?patient={}", c.ts.url, c.pat.id))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = &v["reports"][0];
    assert_eq!(r["author_name"], "Greg House", "{v}");
    assert!(r.get("created_at").is_some());
    for hidden in ["plaintext_len", "n_chunks", "status"] {
        assert!(r.get(hidden).is_none(), "reception sees {hidden}: {v}");
    }
    // The doctor still sees them.
    let d = c.doc.c.reports(None).await.unwrap().reports;
    assert_eq!(d[0].plaintext_len, 10_000);
    assert_eq!(d[0].status, "awaiting_release");
}
both_backends!(reception_list, reception_sees_existence_only);

// ---------------------------------------------------------------- the binary

const BIN: &str = env!("CARGO_BIN_EXE_clinvault");

/// A CLI user: a config file and state folder of their own, pointed at the test server.
struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(url: &str) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "[client]\nserver = \"{url}\"\nstate_dir = \"{}\"\n\n[client.kdf_floor]\nm_kib = 256\nt = 1\np = 1\n",
                dir.path().join("state").display()
            ),
        )
        .unwrap();
        Cli { dir }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .env("CLINVAULT_PASSWORD", common::PASSWORD)
            .env_remove("CLINVAULT_LOG")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs to the end off the async runtime's threads: (exit code, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = self.command(args);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn login(&self, email: &str) {
        let (code, out, err) = self.run(&["login", "--email", email]).await;
        assert_eq!(code, 0, "login {email}: {out} {err}");
    }
}

/// A committed report with any metadata (what a modified client could send): returns its id.
async fn raw_report(c: &common::clinic::Clinic, meta: clinvault::seal::ReportMeta) -> uuid::Uuid {
    use clinvault::api::{CommitRequest, WrappedKeyIn};
    use clinvault::seal::{Dek, Manifest, ReportKeys, seal_meta, wrap_dek};
    let report_id = uuid::Uuid::new_v4();
    let data = report_bytes(20_000, b"raw");
    let dek = Dek::generate().unwrap();
    let (sum, ids) = common::clinic::send_sealed_chunks(c, report_id, &dek, &data).await;
    let keys = ReportKeys::derive(&dek, report_id.as_bytes());
    let meta = seal_meta(&keys, report_id.as_bytes(), &meta).unwrap();
    let manifest = Manifest {
        report_id: *report_id.as_bytes(),
        patient_id: *c.pat.id.as_bytes(),
        author_id: *c.doc.id.as_bytes(),
        created_at_ms: chrono::Utc::now().timestamp_millis(),
        plaintext_len: sum.plaintext_len,
        chunk_size: sum.chunk_size,
        n_chunks: sum.n_chunks,
        head: sum.head,
        meta_hash: clinvault::seal::meta_hash(&meta),
        key_commit: sum.key_commit,
    };
    let wrap = |who: &common::clinic::User| WrappedKeyIn {
        reader_id: who.id,
        wrapped: wrap_dek(
            &dek,
            report_id.as_bytes(),
            who.id.as_bytes(),
            &who.me.secrets.public().x25519,
        )
        .unwrap()
        .to_vec(),
    };
    c.doc
        .c
        .commit_report(
            report_id,
            &CommitRequest {
                manifest: manifest.to_bytes().to_vec(),
                signature: manifest.sign(c.doc.me.secrets.signing_key()).to_vec(),
                meta,
                chunk_ids: ids.iter().map(hex::encode).collect(),
                wrapped_keys: vec![wrap(&c.pat), wrap(&c.doc)],
            },
        )
        .await
        .unwrap();
    report_id
}

fn no_raw_controls(s: &str) {
    assert!(
        !s.chars()
            .any(|c| !matches!(c, '\n' | '\r') && clinvault::text::needs_escape(c)),
        "raw control or deceptive characters reached the terminal: {s:?}"
    );
}

/// Point 6: Escape sequences in another user's title are shown escaped by `download` and `verify`;
/// the server refuses deceptive characters in names, the client in titles.
async fn escapes_shown_escaped(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let evil = "Scan\u{1b}]0;pwned\u{7}\u{1b}[2J \u{202e}fdp.exe\u{200b}";
    let id = raw_report(
        &c,
        clinvault::seal::ReportMeta {
            title: evil.into(),
            note: "line\u{1b}[31m".into(),
            file_name: "../../.bashrc".into(),
            media_type: String::new(),
        },
    )
    .await;
    release(&c).await;
    let cli = Cli::new(&c.ts.url);
    cli.login(&c.pat.email).await;
    let (code, out, err) = cli.run(&["verify", &id.to_string()]).await;
    assert_eq!(code, 0, "{out} {err}");
    no_raw_controls(&out);
    no_raw_controls(&err);
    assert!(out.contains("\\u{1b}"), "{out}");
    let (code, out, err) = cli
        .run(&["download", &id.to_string(), "-o", "copy.bin"])
        .await;
    assert_eq!(code, 0, "{out} {err}");
    no_raw_controls(&out);
    no_raw_controls(&err);
    assert!(out.contains("\\u{202e}"), "{out}");

    // The uploading client refuses such a title.
    let work = tempfile::tempdir().unwrap();
    let l = c.doc.ledger().await.unwrap();
    let e = clinvault::client::reports::upload(
        &c.doc.c,
        &c.doc.me,
        &l,
        c.pat.id,
        &write_file(work.path(), "f", b"data"),
        &common::clinic::upload_options(&c.doc, 1, "a\u{202e}b"),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("title"), "{e}");
    // The server refuses deceptive characters in names it stores.
    let e = c
        .admin
        .c
        .invite(&clinvault::api::InviteRequest {
            role: clinvault::api::Role::Doctor,
            email: "evil@clinic.test".into(),
            name: "Dr \u{202e}evil".into(),
            specialty: "Cardiology".into(),
            bio: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("bad_request"), "{e}");
}
both_backends!(escape_codes, escapes_shown_escaped);

/// Starts `download` of `id` into `out/big.bin`, waits until some plaintext was written, then
/// sends `signal`; returns how the process ended.
async fn interrupted_download(cli: &Cli, id: uuid::Uuid, signal: i32) -> std::process::ExitStatus {
    let mut cmd = cli.command(&["download", &id.to_string(), "-o", "out/big.bin"]);
    cmd.stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut child = cmd.spawn().unwrap();
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            let n = err.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "download ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            // Two chunks of plaintext written (1 MiB chunks).
            if text.contains("download 2.0/") || text.contains("download 3.0/") {
                break;
            }
        }
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        child.wait().unwrap()
    })
    .await
    .unwrap()
}

/// Every file under `dir`, and whether any holds `marker`.
fn plaintext_left(dir: &std::path::Path, marker: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap_or_default();
        hits.push(format!(
            "{} ({} bytes{})",
            e.file_name().to_string_lossy(),
            bytes.len(),
            if bytes.windows(marker.len()).any(|w| w == marker) {
                ", with plaintext"
            } else {
                ""
            }
        ));
    }
    hits
}

/// Point 7: SIGKILL or SIGTERM during a download leaves no plaintext byte on disk.
async fn interrupted_download_leaves_nothing(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let marker = b"PLAINTEXT-MARKER-7";
    let out = upload_file(
        &c,
        &write_file(work.path(), "big", &report_bytes(40 * 1024 * 1024, marker)),
        "Big",
    )
    .await;
    release(&c).await;
    let cli = Cli::new(&c.ts.url);
    cli.login(&c.pat.email).await;
    let folder = cli.dir.path().join("out");
    std::fs::create_dir(&folder).unwrap();
    for sig in [libc::SIGKILL, libc::SIGTERM, libc::SIGINT] {
        let status = interrupted_download(&cli, out.report_id, sig).await;
        assert!(
            !status.success(),
            "signal {sig}: the download finished first"
        );
        let left = plaintext_left(&folder, marker);
        assert!(left.is_empty(), "after signal {sig}: {left:?}");
    }
    // A stale `.part` of a dead process (an older run on a filesystem without O_TMPFILE) is
    // swept by the next download into that folder.
    let stale = folder.join(format!(
        ".big.bin.clinvault-999999999-{}.part",
        "c".repeat(32)
    ));
    std::fs::write(&stale, marker).unwrap();
    let (code, o, e) = cli
        .run(&["download", &out.report_id.to_string(), "-o", "out/big.bin"])
        .await;
    assert_eq!(code, 0, "{o} {e}");
    assert!(!stale.exists());
    // Never over an existing file.
    let (code, _, e) = cli
        .run(&["download", &out.report_id.to_string(), "-o", "out/big.bin"])
        .await;
    assert_ne!(code, 0);
    assert!(e.contains("exists"), "{e}");
}
both_backends!(download_interrupted, interrupted_download_leaves_nothing);

/// Point 8: Key-needing commands reuse the session: eleven `verify`s in a minute are fine with
/// the default login limit of 10 per address.
async fn commands_reuse_the_session(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"verify")),
        "F",
    )
    .await;
    release(&c).await;
    let email = c.pat.email.clone();
    // The same clinic again, now with the shipped limit of 10 logins per address and minute,
    // and none counted yet.
    let common::TestServer {
        handle,
        dir: _dir,
        mut config,
        ..
    } = c.ts;
    handle.shutdown().await.unwrap();
    config.server.auth_per_address_per_minute = 10;
    let handle = clinvault::server::start(config).await.unwrap();
    sqlx::query("DELETE FROM rate_limits")
        .execute(handle.db())
        .await
        .unwrap();
    let cli = Cli::new(&handle.url());
    cli.login(&email).await;
    for i in 0..11 {
        let (code, o, e) = cli.run(&["verify", &out.report_id.to_string()]).await;
        assert_eq!(code, 0, "verify #{}: {o} {e}", i + 1);
    }
}
both_backends!(session_reuse, commands_reuse_the_session);

/// Point 8: `X-Forwarded-For` is believed only from `[server] trusted_proxies`.
#[test]
fn forwarded_for_only_from_trusted_proxies() {
    use clinvault::server::extract::{client_address, parse_cidr};
    let mut h = axum::http::HeaderMap::new();
    h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.7".parse().unwrap());
    let peer: std::net::IpAddr = "10.0.0.5".parse().unwrap();
    assert_eq!(client_address(peer, &h, &[]), peer, "no trusted proxies");
    let proxies = [parse_cidr("10.0.0.0/24").unwrap()];
    assert_eq!(
        client_address(peer, &h, &proxies),
        "203.0.113.9".parse::<std::net::IpAddr>().unwrap()
    );
    let stranger: std::net::IpAddr = "198.51.100.1".parse().unwrap();
    assert_eq!(client_address(stranger, &h, &proxies), stranger);
    assert!(parse_cidr("10.0.0.0/33").is_none());
    assert!(parse_cidr("not an ip").is_none());
}

/// Point 9: `upload` checks the file before the password, the login or the ledger.
#[tokio::test]
async fn upload_checks_the_file_first() {
    let cli = Cli::new("http://127.0.0.1:9");
    let (code, _, e) = cli
        .run(&["upload", "no-such-file.pdf", "--patient", "p@clinic.test"])
        .await;
    assert_ne!(code, 0);
    assert!(
        e.contains("no-such-file.pdf") && e.contains("No such file"),
        "{e}"
    );
    std::fs::create_dir(cli.dir.path().join("folder")).unwrap();
    let (code, _, e) = cli
        .run(&["upload", "folder", "--patient", "p@clinic.test"])
        .await;
    assert_ne!(code, 0);
    assert!(e.contains("is a folder"), "{e}");
}

/// Point 10: Downloading one's own report before entering the code says to enter the code.
async fn own_unreleased_report_says_enter_the_code(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"unreleased")),
        "F",
    )
    .await;
    let cli = Cli::new(&c.ts.url);
    cli.login(&c.pat.email).await;
    let (code, _, e) = cli
        .run(&["download", &out.report_id.to_string(), "-o", "x.bin"])
        .await;
    assert_ne!(code, 0);
    assert!(e.contains("enter the code mailed to you first"), "{e}");
    // Someone else still learns nothing.
    let e = c.pat2.c.report(out.report_id).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"));
}
both_backends!(
    unreleased_download,
    own_unreleased_report_says_enter_the_code
);

fn berlin_day(n: i64) -> chrono::NaiveDate {
    (chrono::Utc::now().with_timezone(&chrono_tz::Europe::Berlin) + chrono::Duration::days(n))
        .date_naive()
}

/// Point 11: Bookings: a horizon, a cap on a patient's own future visits (reception may exceed),
/// check-in only on the day, completion only once begun.
async fn booking_limits(db: Db) {
    use clinvault::api::BookRequest;
    let c = clinic_with(db, |_| {}).await;
    let tomorrow = berlin_day(1);
    let slots = c
        .pat
        .c
        .slots(c.doc2.id, Some(tomorrow), Some(tomorrow))
        .await
        .unwrap()
        .slots;
    let book = |who: &clinvault::client::ApiClient, i: usize, patient| {
        let req = BookRequest {
            doctor_id: c.doc2.id,
            start: slots[i].start,
            patient_id: patient,
        };
        let who = who.clone();
        async move { who.book(&req).await }
    };
    // One future visit already (with doc2); three more reach the cap of 4.
    for i in [4, 5, 6] {
        book(&c.pat.c, i, None).await.unwrap();
    }
    let e = book(&c.pat.c, 7, None).await.unwrap_err();
    assert_eq!(e.code(), Some("too_many_bookings"), "{e}");
    let extra = book(&c.rec.c, 7, Some(c.pat.id)).await.unwrap();

    // Beyond the horizon.
    let far = berlin_day(200);
    let far_slots = c
        .pat2
        .c
        .slots(c.doc2.id, Some(far), Some(far))
        .await
        .unwrap()
        .slots;
    let e = c
        .pat2
        .c
        .book(&BookRequest {
            doctor_id: c.doc2.id,
            start: far_slots[0].start,
            patient_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("too_far_ahead"), "{e}");

    // Tomorrow's visit: no check-in today, and no completion before it begins.
    let e = c
        .rec
        .c
        .booking_action(extra.id, "check-in")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("not_yet"), "{e}");
    sqlx::query("UPDATE bookings SET status = 'checked_in' WHERE id = $1")
        .bind(extra.id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let e = c
        .doc2
        .c
        .booking_action(extra.id, "complete")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("not_yet"), "{e}");
}
both_backends!(bookings_limited, booking_limits);

/// Point 12: A bucket folder that vanished is not recreated: the server is not ready, writes avoid
/// it, and a restart does not make it again.
async fn vanished_bucket_not_recreated(db: Db) {
    let c = clinic_with(db, |cfg| cfg.server.replicas = 1).await;
    let work = tempfile::tempdir().unwrap();
    upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(8 << 20, b"bucket")),
        "F",
    )
    .await;
    let in_b: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunk_replicas WHERE bucket = 'b'")
        .fetch_one(c.ts.handle.db())
        .await
        .unwrap();
    assert!(in_b > 0, "eight chunks, one replica each: some in bucket b");
    let b = c.ts.dir.path().join("buckets").join("b");
    assert!(
        b.join("clinvault-bucket-id").exists(),
        "marked at first use"
    );
    let ready = |url: String| async move {
        common::http()
            .get(format!("{url}/v1/ready"))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(ready(c.ts.url.clone()).await.status(), 200);
    std::fs::remove_dir_all(&b).unwrap();
    let r = ready(c.ts.url.clone()).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("bucket b"));
    // Writes go to the other bucket; the folder is never made again.
    upload_file(
        &c,
        &write_file(work.path(), "g", &report_bytes(300_000, b"bucket2")),
        "G",
    )
    .await;
    assert!(!b.exists(), "a write recreated the vanished bucket");
    // Nor at the next start.
    let common::TestServer {
        handle,
        dir: _dir,
        config,
        ..
    } = c.ts;
    handle.shutdown().await.unwrap();
    let handle = clinvault::server::start(config).await.unwrap();
    assert!(!b.exists(), "a restart recreated the vanished bucket");
    assert_eq!(ready(handle.url()).await.status(), 503);
}
both_backends!(bucket_identity, vanished_bucket_not_recreated);

/// Point 13: Staging files that a killed chunk write leaves in a bucket are swept and counted by
/// the audit; a write still in flight (a young one) is left alone.
async fn staging_files_swept(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"staging")),
        "F",
    )
    .await;
    let chunk = c.doc.c.report(out.report_id).await.unwrap().chunk_ids[0].clone();
    let mut id = [0u8; 32];
    hex::decode_to_slice(&chunk, &mut id).unwrap();
    let key = clinvault::server::chunk_store::object_key(&id);
    let a = c.ts.dir.path().join("buckets").join("a");
    let old = a.join(format!("{key}#1"));
    let young = a.join(format!("{key}#2"));
    for p in [&old, &young] {
        std::fs::write(p, b"half a chunk").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    let la = c.auditor.ledger().await.unwrap();
    let s = clinvault::client::audit::audit(&c.auditor.c, &la, false)
        .await
        .unwrap();
    assert_eq!(s.staging_swept, 1, "{s:?}");
    assert!(!old.exists(), "the stale staging file is swept");
    assert!(young.exists(), "a write in flight is left alone");
}
both_backends!(staging_swept, staging_files_swept);

/// Point 14: An unknown bucket in `?replica=` is the caller's mistake: 400, not a storage fault.
async fn unknown_replica_is_400(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"replica")),
        "F",
    )
    .await;
    let chunk = c.doc.c.report(out.report_id).await.unwrap().chunk_ids[0].clone();
    for bad in ["../../x", "zz"] {
        let e = c.auditor.c.chunk(&chunk, Some(bad)).await.unwrap_err();
        assert_eq!(e.code(), Some("bad_request"), "{bad}: {e}");
    }
    c.auditor.c.chunk(&chunk, Some("a")).await.unwrap();
}
both_backends!(replica_name, unknown_replica_is_400);

/// Point 15: The audit checks what it can without keys (metadata, author, stored wrapped keys),
/// reports a malformed row against its report and goes on, and `audit --repair` that repaired
/// everything exits 0 after checking again.
async fn audit_keyless_checks(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        let out = upload_file(
            &c,
            &write_file(
                work.path(),
                &format!("f{i}"),
                &report_bytes(10_000, b"audit"),
            ),
            "F",
        )
        .await;
        ids.push(out.report_id);
    }
    // A corrupt replica, repaired: exit 0 after the re-check, in words with plurals right.
    let chunk = c.doc.c.report(ids[0]).await.unwrap().chunk_ids[0].clone();
    let mut cid = [0u8; 32];
    hex::decode_to_slice(&chunk, &mut cid).unwrap();
    let replica =
        c.ts.dir
            .path()
            .join("buckets/a")
            .join(clinvault::server::chunk_store::object_key(&cid));
    let mut b = std::fs::read(&replica).unwrap();
    b[10] ^= 1;
    std::fs::write(&replica, b).unwrap();
    let cli = Cli::new(&c.ts.url);
    cli.login(&c.auditor.email).await;
    let (code, out, err) = cli.run(&["audit", "--repair"]).await;
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("repaired 1 chunk; checking again"), "{out}");
    assert!(
        out.contains("4 reports, 4 chunks") && out.contains("0 problems"),
        "{out}"
    );

    // Keyless checks, one report each.
    let dbp = c.ts.handle.db();
    let exec = |sql: &'static str, id: uuid::Uuid| async move {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(dbp)
            .await
            .unwrap();
    };
    sqlx::query("UPDATE reports SET meta = $1 WHERE id = $2")
        .bind(vec![0u8; 40])
        .bind(ids[0].to_string())
        .execute(dbp)
        .await
        .unwrap();
    sqlx::query("UPDATE reports SET author_id = $1 WHERE id = $2")
        .bind(c.doc2.id.to_string())
        .bind(ids[1].to_string())
        .execute(dbp)
        .await
        .unwrap();
    sqlx::query("UPDATE wrapped_keys SET wrapped = $1 WHERE report_id = $2")
        .bind(vec![7u8; 80])
        .bind(ids[2].to_string())
        .execute(dbp)
        .await
        .unwrap();
    if db == Db::Sqlite {
        // A manifest stored as TEXT (SQLite keeps the value's own type).
        exec(
            "UPDATE reports SET manifest = 'not a manifest' WHERE id = $1",
            ids[3],
        )
        .await;
    } else {
        // BYTEA cannot hold text: a committed report without its ledger index instead.
        exec(
            "UPDATE reports SET ledger_index = NULL WHERE id = $1",
            ids[3],
        )
        .await;
    }
    let la = c.auditor.ledger().await.unwrap();
    let s = clinvault::client::audit::audit(&c.auditor.c, &la, false)
        .await
        .expect("one malformed row does not abort the audit");
    let about = |id: uuid::Uuid, what: &str| {
        s.findings.iter().any(|f| {
            matches!(f, clinvault::client::audit::Finding::Report { report, what: w }
                if *report == id.to_string() && w.contains(what))
        })
    };
    assert!(about(ids[0], "metadata"), "{:#?}", s.findings);
    assert!(about(ids[1], "author"), "{:#?}", s.findings);
    assert!(about(ids[2], "wrapped key"), "{:#?}", s.findings);
    assert!(about(ids[3], "could not read"), "{:#?}", s.findings);
    assert_eq!(s.reports, 4);
}
both_backends!(audit_keyless, audit_keyless_checks);

/// Point 16: Clear, single messages: a damaged record, a refused certificate, articles, plurals,
/// doubled causes, `admin backup`/`restore` with `--data` and a missing file in words.
async fn clear_messages(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"messages")),
        "F",
    )
    .await;
    release(&c).await;
    let cli = Cli::new(&c.ts.url);
    cli.login(&c.pat.email).await;
    let (code, o, e) = cli.run(&["verify", &out.report_id.to_string()]).await;
    assert_eq!(code, 0, "{o} {e}");
    assert!(
        o.contains("1 report verified") && o.contains("  1 chunk\n"),
        "{o}"
    );

    // An auditor on a patient's route: "an auditor".
    let e = c.auditor.c.otp_pending().await.unwrap_err();
    assert!(e.to_string().contains("an auditor account"), "{e}");

    // A ledger row gone: a plain message, the same for everyone.
    let idx: i64 = sqlx::query_scalar("SELECT ledger_index FROM reports WHERE id = $1")
        .bind(out.report_id.to_string())
        .fetch_one(c.ts.handle.db())
        .await
        .unwrap();
    sqlx::query("DELETE FROM ledger_entries WHERE idx = $1")
        .bind(idx)
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    for u in [&c.pat, &c.doc] {
        let e = u.c.report(out.report_id).await.unwrap_err();
        assert_eq!(e.code(), Some("damaged"), "{e}");
        assert!(
            e.to_string().contains("records of this report are damaged"),
            "{e}"
        );
    }
}
both_backends!(messages, clear_messages);

/// Point 16: The operator's commands: `--data`, a missing file in words, a cause said once, and a
/// port in use said once.
#[tokio::test]
async fn operator_messages() {
    let data = tempfile::tempdir().unwrap();
    let cli = Cli::new("http://127.0.0.1:9");
    // A server once, so that the folder has a database.
    {
        let mut cfg = common::test_config(data.path());
        cfg.server.listen = "127.0.0.1:0".into();
        let h = clinvault::server::start(cfg).await.unwrap();
        h.shutdown().await.unwrap();
    }
    let d = data.path().to_str().unwrap();
    let (code, o, e) = cli
        .run(&["admin", "backup", "--out", "b.db", "--data", d])
        .await;
    assert_eq!(code, 0, "{o} {e}");
    let (code, _, e) = cli
        .run(&["admin", "backup", "--out", "b.db", "--data", d])
        .await;
    assert_ne!(code, 0);
    assert!(
        e.contains("already exists") && !e.contains("already exists: already"),
        "{e}"
    );
    let (code, _, e) = cli
        .run(&[
            "admin",
            "restore",
            "--from",
            "missing.db",
            "--newest-head",
            &format!("1:{}", "00".repeat(32)),
            "--data",
            d,
        ])
        .await;
    assert_ne!(code, 0);
    assert!(
        e.contains("missing.db") && e.contains("no such backup file"),
        "{e}"
    );
    // A port in use: said once.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, _, e) = cli
        .run(&[
            "serve",
            "--data",
            d,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .await;
    assert_ne!(code, 0);
    assert_eq!(e.matches("Address already in use").count(), 1, "{e}");
}

/// Point 16: A self-signed CA:TRUE certificate as the server's own: the client says what is wrong
/// with the certificate, not only "error sending request".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_certificate_as_server_certificate_explained() {
    const CERT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/ca-as-server-cert.pem"
    );
    const KEY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/ca-as-server-key.pem"
    );
    let ts = common::start_with(Db::Sqlite, |c| {
        c.server.tls_cert = CERT.into();
        c.server.tls_key = KEY.into();
    })
    .await;
    let c = clinvault::client::ApiClient::new(&ts.url, false, common::TEST_KDF)
        .unwrap()
        .with_ca_pem(&std::fs::read(CERT).unwrap())
        .unwrap();
    let e = c.health().await.unwrap_err().to_string();
    assert!(e.contains("certificate") && e.contains("CA"), "{e}");
}

/// Point 17: `access` names the readers (beside their ids), and verifying again and again within a
/// short window adds one "key served" entry, not one per verify.
async fn access_names_and_fewer_key_lines(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"access")),
        "F",
    )
    .await;
    release(&c).await;
    let cli = Cli::new(&c.ts.url);
    cli.login(&c.pat.email).await;
    for _ in 0..3 {
        let (code, o, e) = cli.run(&["verify", &out.report_id.to_string()]).await;
        assert_eq!(code, 0, "{o} {e}");
    }
    let (code, o, e) = cli.run(&["access"]).await;
    assert_eq!(code, 0, "{o} {e}");
    assert!(
        o.contains(&format!("Patricia Patient ({})", c.pat.id)),
        "names beside ids: {o}"
    );
    assert_eq!(
        o.matches("key served to Patricia Patient").count(),
        1,
        "one key-served line for three verifies: {o}"
    );
}
both_backends!(access_trail, access_names_and_fewer_key_lines);

/// Point 18: `availability --day-off DATE` alone adds the day off to the current template.
async fn day_off_alone_is_applied(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let cli = Cli::new(&c.ts.url);
    cli.login(&c.doc.email).await;
    let day = berlin_day(20);
    let (code, o, e) = cli
        .run(&["availability", "--day-off", &day.to_string()])
        .await;
    assert_eq!(code, 0, "{o} {e}");
    let av = c.doc.c.availability(c.doc.id).await.unwrap().availability;
    assert_eq!(av.days_off, vec![day], "{o}");
    assert_eq!(av.weekly.len(), 7, "the weekly template stays");
    let slots = c
        .pat
        .c
        .slots(c.doc.id, Some(day), Some(day))
        .await
        .unwrap()
        .slots;
    assert!(slots.is_empty(), "no slots on a day off");
}
both_backends!(day_off, day_off_alone_is_applied);
