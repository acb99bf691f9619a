//! End-to-end transfer benchmark (issue 4): the `clinvault` binary uploads and downloads a file
//! to a server on loopback (two local buckets, two durable replicas), and in the same run
//! restic backs the same file up to a local repository and restores it. Also the client's peak
//! memory for a large upload, which must stay flat.
//!
//! `cargo bench --bench transfer` (CLINVAULT_BENCH_MIB, default 256; CLINVAULT_BENCH_BIG_MIB,
//! default 1024, 0 to skip the memory run).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)] // dead_code: allowed inside common itself
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::PASSWORD;
use common::clinic::clinic_with;

fn env_mib(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn random_file(path: &Path, mib: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        getrandom::fill(&mut buf).unwrap();
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
}

/// Runs the CLI under `/usr/bin/time`; returns (seconds, peak RSS in KiB).
fn cli(state: &Path, server: &str, args: &[&str]) -> (f64, u64) {
    let rss = state.join("rss.txt");
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss)
        .arg(env!("CARGO_BIN_EXE_clinvault"))
        .arg("--server")
        .arg(server)
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env("CLINVAULT_PASSWORD", PASSWORD)
        .env("CLINVAULT_CLIENT__KDF_FLOOR__M_KIB", "256")
        .env("CLINVAULT_CLIENT__KDF_FLOOR__T", "1")
        .env("CLINVAULT_CLIENT__TRANSFERS", "4")
        .output()
        .expect("run clinvault");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "clinvault {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let kib = std::fs::read_to_string(&rss)
        .unwrap_or_default()
        .trim()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (secs, kib)
}

fn restic(repo: &Path, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", "bench")
        .output()
        .expect("run restic");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64()
}

fn main() {
    let mib = env_mib("CLINVAULT_BENCH_MIB", 256);
    let big = env_mib("CLINVAULT_BENCH_BIG_MIB", 1024);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt.block_on(clinic_with(common::Db::Sqlite, |cfg| {
        cfg.server.auth_per_address_per_minute = 100_000;
        cfg.server.max_body_bytes = 1 << 20;
    }));
    let url = c.ts.url.clone();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("report.bin");
    random_file(&file, mib);
    let doc_state = tempfile::tempdir().unwrap();
    let pat_state = tempfile::tempdir().unwrap();
    cli(
        doc_state.path(),
        &url,
        &["login", "--email", "house@clinic.test"],
    );
    cli(
        pat_state.path(),
        &url,
        &["login", "--email", "pat@clinic.test"],
    );
    let bytes = (mib << 20) as f64;
    let mbs = |secs: f64| bytes / secs / 1e6;

    // Ours: upload, release, download (every check on).
    let file_s = file.to_str().unwrap();
    let (up, up_rss) = cli(
        doc_state.path(),
        &url,
        &[
            "upload",
            file_s,
            "--patient",
            "pat@clinic.test",
            "--title",
            "bench",
        ],
    );
    rt.block_on(common::clinic::release(&c));
    let list = rt.block_on(c.pat.c.reports(None)).unwrap();
    let id = list.reports[0].id.to_string();
    let target = work.path().join("back.bin");
    let (down, down_rss) = cli(
        pat_state.path(),
        &url,
        &["download", &id, "-o", target.to_str().unwrap()],
    );
    assert!(
        std::fs::read(&file).unwrap() == std::fs::read(&target).unwrap(),
        "round trip"
    );
    std::fs::remove_file(&target).unwrap();

    // restic, same file, same disk.
    let repo = work.path().join("restic-repo");
    restic(&repo, &["init"]);
    let backup = restic(&repo, &["backup", "--quiet", file_s]);
    let restore_dir = work.path().join("restored");
    let restore = restic(
        &repo,
        &[
            "restore",
            "latest",
            "--target",
            restore_dir.to_str().unwrap(),
        ],
    );

    println!("transfer benchmark: {mib} MiB, loopback, 2 local buckets, 2 durable replicas");
    println!(
        "  clinvault upload   {:7.1} MB/s  ({:.2} s, client peak RSS {} MiB)",
        mbs(up),
        up,
        up_rss / 1024
    );
    println!(
        "  clinvault download {:7.1} MB/s  ({:.2} s, client peak RSS {} MiB)",
        mbs(down),
        down,
        down_rss / 1024
    );
    println!(
        "  restic backup      {:7.1} MB/s  ({backup:.2} s)",
        mbs(backup)
    );
    println!(
        "  restic restore     {:7.1} MB/s  ({restore:.2} s)",
        mbs(restore)
    );
    println!(
        "  ratio: upload {:.2}x restic backup, download {:.2}x restic restore",
        backup / up,
        restore / down
    );

    if big > 0 {
        let big_file = work.path().join("big.bin");
        std::fs::remove_file(&file).unwrap();
        random_file(&big_file, big);
        let (t, rss) = cli(
            doc_state.path(),
            &url,
            &[
                "upload",
                big_file.to_str().unwrap(),
                "--patient",
                "pat@clinic.test",
                "--title",
                "big",
            ],
        );
        println!(
            "  {big} MiB upload: {:.1} MB/s, client peak RSS {} MiB (vs {} MiB for {mib} MiB)",
            (big << 20) as f64 / t / 1e6,
            rss / 1024,
            up_rss / 1024
        );
    }
    rt.block_on(c.ts.handle.shutdown()).unwrap();
}
