//! Reports end to end over loopback (issue 4): upload, release by mailed code, download,
//! grants, revocation, the access trail, and a byte search of everything the server wrote.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clinvault::client::reports::{TransferOptions, check_grant_for_wrap, confirm_wrap, download};
use common::clinic::{clinic_with, report_bytes, upload_file, write_file};
use common::{Db, PASSWORD, six_digits};
use uuid::Uuid;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// A six-digit code as text, not inside a longer run of hex digits (ids, timestamps).
fn contains_code(hay: &[u8], code: &str) -> bool {
    let n = code.as_bytes();
    memchr::memmem::find_iter(hay, n).any(|i| {
        (i == 0 || !hay[i - 1].is_ascii_hexdigit())
            && hay.get(i + n.len()).is_none_or(|b| !b.is_ascii_hexdigit())
    })
}

/// Every server log line of this test binary goes to one file, searched by each journey.
fn server_log() -> &'static Path {
    static LOG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = LOG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let file = std::fs::File::create(&path).unwrap();
        tracing_subscriber::fmt()
            // The server's own lines; sqlx's debug lines time queries to the microsecond (six-digit runs).
            .with_env_filter("debug,sqlx=warn,hyper=warn,reqwest=warn,h2=warn")
            .with_ansi(false)
            // Microsecond timestamps are six-digit runs that could match a code by chance.
            .without_time()
            .with_writer(std::sync::Mutex::new(file))
            .init();
        (dir, path)
    });
    path
}

fn files_under(dir: &Path, skip: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == skip) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn journey(db: Db, s3: bool) {
    let log_path = server_log().to_path_buf();
    let c = clinic_with(db, |cfg| {
        if s3 {
            cfg.server.buckets = common::s3_buckets();
        }
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let marker: [u8; 24] = clinvault::seal::random_array().unwrap();
    let data = report_bytes(20 * 1024 * 1024, &marker);
    let file = write_file(work.path(), "echo.pdf", &data);
    let out = upload_file(&c, &file, "Echocardiogram, March").await;
    assert_eq!(out.chunks_total, 20);
    assert_eq!(out.chunks_sent, 20);
    let release_request = out
        .commit
        .release_request_id
        .expect("a release code was mailed");

    // Before the code, the report is listed but not the patient's to open.
    let listed = c.pat.c.reports(None).await.unwrap().reports;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, "awaiting_release");
    assert!(!listed[0].readable);
    let l = c.pat.ledger().await.unwrap();
    let target = work.path().join("mine.pdf");
    let e = download(
        &c.pat.c,
        &c.pat.me,
        &l,
        out.report_id,
        &target,
        &TransferOptions::new(4),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some("not_released"), "{e}");
    assert!(!target.exists());

    // The code is bound to its request: the right code for another request id is refused.
    let code = six_digits(&c.ts.last_mail(&c.pat.email));
    let e = c.pat.c.otp_verify(Uuid::new_v4(), &code).await.unwrap_err();
    assert_eq!(e.code(), Some("code_invalid"));
    // Another account cannot use it.
    let e = c
        .pat2
        .c
        .otp_verify(release_request, &code)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("code_invalid"), "{e}");
    c.pat.c.otp_verify(release_request, &code).await.unwrap();
    let e = c
        .pat
        .c
        .otp_verify(release_request, &code)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("code_used"));

    // The patient downloads it byte for byte.
    let l = c.pat.ledger().await.unwrap();
    let r = download(
        &c.pat.c,
        &c.pat.me,
        &l,
        out.report_id,
        &target,
        &TransferOptions::new(4),
    )
    .await
    .expect("patient downloads");
    assert_eq!(r.meta.title, "Echocardiogram, March");
    assert!(std::fs::read(&target).unwrap() == data, "byte-identical");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Nobody else gets a key, the report or a chunk.
    let detail = c.doc.c.report(out.report_id).await.unwrap();
    let chunk0 = detail.chunk_ids[0].clone();
    for (who, u) in [
        ("another patient", &c.pat2),
        ("another doctor", &c.doc2),
        ("reception", &c.rec),
        ("admin", &c.admin),
        ("auditor", &c.auditor),
    ] {
        let e = u.c.report_key(out.report_id).await.unwrap_err();
        assert!(
            matches!(e.code(), Some("not_found" | "forbidden")),
            "{who}: {e}"
        );
        let e = u.c.report(out.report_id).await.unwrap_err();
        assert!(
            matches!(e.code(), Some("not_found" | "forbidden")),
            "{who}: {e}"
        );
        if who != "auditor" {
            let e = u.c.chunk(&chunk0, None).await.unwrap_err();
            assert!(
                matches!(e.code(), Some("not_found" | "forbidden")),
                "{who}: {e}"
            );
        }
    }
    // Reception sees that it exists, and no more.
    let seen = c.rec.c.reports(Some(c.pat.id)).await.unwrap().reports;
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].readable);

    // Another doctor asks; the patient tells them the mailed code; the author confirms.
    let g = c.doc2.c.grant_request(out.report_id).await.unwrap();
    let mail = c.ts.last_mail(&c.pat.email);
    assert!(
        mail.contains("James Wilson") && mail.contains("Greg House"),
        "{mail}"
    );
    let code = six_digits(&mail);
    c.doc2
        .c
        .otp_verify(g.request_id.expect("code request"), &code)
        .await
        .unwrap();
    // Approved, but no key yet: nothing is wrapped on the server's word.
    let e = c.doc2.c.report_key(out.report_id).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"));
    let l = c.doc.ledger().await.unwrap();
    let check = check_grant_for_wrap(&c.doc.c, &l, g.id).await.unwrap();
    assert_eq!(check.reader_name, "James Wilson");
    confirm_wrap(&c.doc.c, &c.doc.me, &l, &check).await.unwrap();
    let l2 = c.doc2.ledger().await.unwrap();
    let t2 = work.path().join("wilson.pdf");
    download(
        &c.doc2.c,
        &c.doc2.me,
        &l2,
        out.report_id,
        &t2,
        &TransferOptions::new(4),
    )
    .await
    .expect("granted doctor downloads");
    assert!(std::fs::read(&t2).unwrap() == data);

    // The patient revokes: the server stops serving the key and the chunks to that doctor.
    c.pat.c.grant_revoke(g.id).await.unwrap();
    let e = c.doc2.c.report_key(out.report_id).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"));
    let e = c.doc2.c.chunk(&chunk0, None).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"));

    // The patient's trail: release, approval, wrap, revocation, and every key served.
    let l = c.pat.ledger().await.unwrap();
    let trail = l.entries(0, l.head().tree_size).await.unwrap();
    let kinds: Vec<u8> = trail.iter().map(|(_, e)| e.kind()).collect();
    // Approvals record their expiry since issue 17: kind 8, the successor of kind 3.
    for k in [1, 2, 8, 4, 5, 6, 7u8] {
        assert!(
            kinds.contains(&k),
            "entry kind {k} in the patient's trail: {kinds:?}"
        );
    }
    let served = trail
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                clinvault::ledger::Entry::ReportAccess {
                    what: clinvault::ledger::AccessWhat::KeyServed,
                    ..
                }
            )
        })
        .count();
    assert!(
        served >= 3,
        "patient, author (wrap) and granted doctor fetched keys: {served}"
    );

    // The audit is clean.
    let la = c.auditor.ledger().await.unwrap();
    let summary = clinvault::client::audit::audit(&c.auditor.c, &la, false)
        .await
        .unwrap();
    assert!(summary.clean(), "{:?}", summary.findings);
    assert_eq!(
        (summary.reports, summary.chunks, summary.replicas_checked),
        (1, 20, 40)
    );

    // Nothing the server wrote holds a marker, a code or the password.
    let mut codes: Vec<String> = Vec::new();
    for f in files_under(&c.ts.dir.path().join("outbox"), "-") {
        let text = std::fs::read_to_string(&f).unwrap();
        if let Some(code) = text
            .lines()
            .map(str::trim)
            .find(|l| l.len() == 6 && l.chars().all(|ch| ch.is_ascii_digit()))
        {
            codes.push(code.to_string());
        }
    }
    assert!(
        codes.len() >= 3,
        "release, email and grant codes were mailed: {codes:?}"
    );
    let mut searched = 0;
    let mut files = files_under(c.ts.dir.path(), "outbox");
    files.push(log_path.clone());
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        searched += bytes.len();
        assert!(
            !contains(&bytes, &marker),
            "marker bytes in {}",
            f.display()
        );
        assert!(
            !contains(&bytes, PASSWORD.as_bytes()),
            "password in {}",
            f.display()
        );
        for code in &codes {
            assert!(
                !contains_code(&bytes, code),
                "code {code} in {}",
                f.display()
            );
        }
    }
    // What lives outside the data folder: the S3 objects and the PostgreSQL rows.
    let mut elsewhere: Vec<(String, Vec<u8>)> = Vec::new();
    if s3 {
        for id in &detail.chunk_ids {
            for bucket in ["cv-a", "cv-b"] {
                let bytes = c.auditor.c.chunk(id, Some(bucket)).await.unwrap();
                elsewhere.push((format!("s3 {bucket}/{id}"), bytes.to_vec()));
            }
        }
    }
    if db == Db::Postgres {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
                .fetch_all(c.ts.handle.db())
                .await
                .unwrap();
        for t in tables {
            // Table names come from the catalogue, not from input.
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text FROM {t} t"
            )))
            .fetch_all(c.ts.handle.db())
            .await
            .unwrap();
            elsewhere.push((format!("table {t}"), rows.join("\n").into_bytes()));
        }
    }
    for (what, bytes) in &elsewhere {
        searched += bytes.len();
        assert!(!contains(bytes, &marker), "marker bytes in {what}");
        assert!(!contains(bytes, PASSWORD.as_bytes()), "password in {what}");
        for code in &codes {
            assert!(!contains_code(bytes, code), "code {code} in {what}");
        }
    }
    assert!(
        searched > 40 * 1024 * 1024,
        "both replicas were searched: {searched} bytes"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("report committed"),
        "the server's log was searched"
    );
}

both_backends!(journey_20mib, journey_local);

async fn journey_local(db: Db) {
    journey(db, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and S3: CLINVAULT_TEST_DATABASE_URL, CLINVAULT_TEST_S3_ENDPOINT"]
async fn journey_20mib_postgres_s3() {
    journey(Db::Postgres, true).await;
}
