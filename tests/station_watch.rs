//! Issue 16 part 2: `clinvault watch` as a station, the real binary against a real server.
//! Killed with SIGKILL in the middle of a file, restarted, it leaves exactly one committed
//! report and the file in `done/`; the same file dropped again is not uploaded twice.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clinvault::api::Role;
use clinvault::client::reports::{TransferOptions, download};
use common::clinic::{clinic_with, report_bytes};
use common::{Db, PASSWORD};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_clinvault");

fn config(dir: &Path, url: &str) -> std::path::PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[client]\nserver = \"{url}\"\nstate_dir = \"{}\"\nchunk_size = 16384\ntransfers = 1\n\n\
             [client.kdf_floor]\nm_kib = 256\nt = 1\np = 1\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    cfg
}

fn command(cfg: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("CLINVAULT_LOG")
        .env("CLINVAULT_PASSWORD", PASSWORD)
        .stdin(Stdio::null());
    cmd
}

async fn run(cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = command(cfg, args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Station reports by status: (open, committed).
async fn station_reports(db: &sqlx::AnyPool, station: Uuid) -> (i64, i64) {
    let count = |status: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM reports WHERE author_id = $1 AND status = $2",
        )
        .bind(station.to_string())
        .bind(status)
        .fetch_one(db)
    };
    (
        count("open").await.unwrap(),
        count("committed").await.unwrap(),
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Drops `data` into `inbox` as `name` the way a scanner should: written under a `.part`
/// name, then renamed in.
fn drop_file(inbox: &Path, name: &str, data: &[u8]) {
    let part = inbox.join(format!("{name}.part"));
    std::fs::write(&part, data).unwrap();
    std::fs::rename(&part, inbox.join(name)).unwrap();
}

fn kill(child: &mut Child) {
    // std's kill is SIGKILL: no destructor, no flush, no cleanup runs in the watcher.
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn watch_survives_kill(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let admin = c.ts.login("admin@clinic.test").await;
    let (_, station_id) =
        c.ts.staff(&admin, Role::Station, "lab1@clinic.test", "Lab-1", "")
            .await;
    // The doctor orders on the command line; the order is ledger entry kind 13.
    let ddir = tempfile::tempdir().unwrap();
    let dcfg = config(ddir.path(), &c.ts.url);
    let (rc, out, err) = run(&dcfg, &["login", "--email", "house@clinic.test"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = run(
        &dcfg,
        &[
            "order",
            "create",
            "pat@clinic.test",
            "--station",
            "Lab-1",
            "--days",
            "1",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("station Lab-1 may upload for Patricia Patient until"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &c.ts.url);
    let (rc, out, err) = run(&cfg, &["login", "--email", "lab1@clinic.test"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = run(&cfg, &["order", "list"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("<pat@clinic.test>") && out.contains("1 order"),
        "{out}"
    );
    // A doctor's order for a patient without a booking is refused, and says why.
    let (rc, _, err) = run(
        &dcfg,
        &["order", "create", "pat2@clinic.test", "--station", "Lab-1"],
    )
    .await;
    assert_ne!(rc, 0);
    assert!(err.contains("no patient pat2@clinic.test"), "{err}");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let regex = "^([^_]+)_";
    let watch = |once: bool| {
        let mut args = vec![
            "watch",
            inbox.to_str().unwrap(),
            "--patient-from-filename",
            regex,
            "--interval-ms",
            "100",
        ];
        if once {
            args.push("--once");
        }
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };

    // 12 MiB in 16 KiB chunks, one at a time: long enough to be killed in the middle.
    let data = report_bytes(12 * 1024 * 1024 + 5, b"WATCHED-SCAN");
    let name = "pat@clinic.test_ecg.bin";
    let log = std::fs::File::create(dir.path().join("first.log")).unwrap();
    let args = watch(false);
    let mut child = command(&cfg, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // A file still being written (.part) is never taken.
    std::fs::write(inbox.join("pat@clinic.test_half.bin.part"), b"half").unwrap();
    drop_file(&inbox, name, &data);
    let db_pool = c.ts.handle.db();
    let started = Instant::now();
    loop {
        let sent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM report_chunks rc JOIN reports r ON r.id = rc.report_id \
             WHERE r.author_id = $1 AND r.status = 'open'",
        )
        .bind(station_id.to_string())
        .fetch_one(db_pool)
        .await
        .unwrap();
        if sent >= 40 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the watcher sent nothing: {}",
            std::fs::read_to_string(dir.path().join("first.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    kill(&mut child);
    let log1 = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert_eq!(
        station_reports(db_pool, station_id).await,
        (1, 0),
        "killed mid-file: one open report, none committed\n{log1}"
    );
    assert!(inbox.join(name).exists(), "the file stays until committed");

    // Restarted: the same report resumes and commits, the file moves to done/.
    let (rc, out, err) = run(
        &cfg,
        &watch(true).iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    // Resumed, not restarted: what the killed run sent is not sent again.
    let resumed = out
        .split("sent, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(resumed >= 40, "{out}");
    eprintln!("restart: {}", out.trim());
    assert_eq!(station_reports(db_pool, station_id).await, (0, 1), "{out}");
    assert_eq!(names(&inbox.join("done")), vec![name.to_string()]);
    assert!(names(&inbox.join("failed")).is_empty());
    assert_eq!(
        names(&inbox),
        vec!["pat@clinic.test_half.bin.part".to_string()],
        "only the partial file is left"
    );
    // No resume state (and so no sealed report key) is left with the station.
    let states: Vec<_> = std::fs::read_dir(dir.path().join("state").join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".state"))
        .collect();
    assert!(states.is_empty(), "{states:?}");

    // The same file dropped again (a scanner re-sending it) is recognised, not re-uploaded;
    // a file for a patient without an order fails with its reason.
    drop_file(&inbox, name, &data);
    drop_file(&inbox, "nobody@clinic.test_x.bin", b"orphan");
    drop_file(&inbox, "no-separator.bin", b"unnamed");
    let (rc, out, err) = run(
        &cfg,
        &watch(true).iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("(already uploaded)"), "{out}");
    assert_eq!(station_reports(db_pool, station_id).await, (0, 1), "{out}");
    assert_eq!(names(&inbox.join("done")).len(), 2);
    let failed = names(&inbox.join("failed"));
    assert_eq!(failed.len(), 4, "{failed:?}");
    let reason =
        std::fs::read_to_string(inbox.join("failed").join("nobody@clinic.test_x.bin.reason"))
            .unwrap();
    assert!(reason.contains("no open order"), "{reason}");
    let reason =
        std::fs::read_to_string(inbox.join("failed").join("no-separator.bin.reason")).unwrap();
    assert!(reason.contains("does not match"), "{reason}");

    // What was committed is the file, byte for byte, for the doctor.
    let id: String = sqlx::query_scalar("SELECT id FROM reports WHERE author_id = $1")
        .bind(station_id.to_string())
        .fetch_one(db_pool)
        .await
        .unwrap();
    let l = c.doc.ledger().await.unwrap();
    let got = dir.path().join("got.bin");
    let v = download(
        &c.doc.c,
        &c.doc.me,
        &l,
        Uuid::parse_str(&id).unwrap(),
        &got,
        &TransferOptions::new(4),
    )
    .await
    .unwrap();
    assert!(std::fs::read(&got).unwrap() == data, "the same bytes");
    assert_eq!(
        v.origin.unwrap().to_string(),
        "submitted by station Lab-1 for Dr Greg House"
    );
    // The CLI says so too, to the doctor.
    let (rc, out, err) = run(&dcfg, &["verify", &id]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("submitted by station Lab-1 for Dr Greg House"),
        "{out}"
    );
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(
    watch_survives_kill_9_without_loss_or_duplicates,
    watch_survives_kill
);
