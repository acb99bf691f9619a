//! End-to-end transfer benchmark (issues 4 and 13): the `clinvault` binary (the code users run:
//! `clinvault upload` / `download`, login included in its process) uploads and downloads a file
//! to a server on loopback (two local buckets, two durable replicas; and on S3 when moto is
//! there), and in the same run restic backs the same file up to a local repository and
//! restores it, and `age -r` encrypts it. Then a large file up and down, for the client's peak
//! memory, which must stay flat. A peer that is not installed is skipped, saying so.
//!
//! `cargo bench --bench transfer` (CLINVAULT_BENCH_MIB, default 256; CLINVAULT_BENCH_RUNS,
//! default 3; CLINVAULT_BENCH_BIG_MIB, default 1024, 0 to skip; CLINVAULT_BENCH_TRANSFERS, the
//! client's default unless set; CLINVAULT_TEST_S3_ENDPOINT for the S3 rows). `--profile dev` measures the binary `cargo run` builds.

#[path = "../tests/common/mod.rs"]
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
        .env("CLINVAULT_CLIENT__KDF_FLOOR__P", "1")
        // The client's default number of transfers unless this run asks for another.
        .envs(
            std::env::var("CLINVAULT_BENCH_TRANSFERS")
                .ok()
                .map(|t| ("CLINVAULT_CLIENT__TRANSFERS", t)),
        )
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

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
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

/// `age -r` file → file on the same input, seconds; None when age is not installed.
fn age(work: &Path, file: &Path) -> Option<f64> {
    let keygen = Command::new("age-keygen").output().ok()?;
    let text = String::from_utf8_lossy(&keygen.stdout).into_owned();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))?
        .to_string();
    let started = Instant::now();
    let status = Command::new("age")
        .arg("-r")
        .arg(public)
        .arg("-o")
        .arg(work.join("age.out"))
        .arg(file)
        .status()
        .ok()?;
    let t = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(work.join("age.out"));
    status.success().then_some(t)
}

struct Run {
    up: f64,
    down: f64,
    up_rss: u64,
    down_rss: u64,
}

/// One upload, release and download of `file` through the CLI, checked byte for byte.
fn ours(
    rt: &tokio::runtime::Runtime,
    c: &common::clinic::Clinic,
    doc: &Path,
    pat: &Path,
    work: &Path,
    file: &Path,
    title: &str,
) -> Run {
    let url = c.ts.url.as_str();
    let (up, up_rss) = cli(
        doc,
        url,
        &[
            "upload",
            file.to_str().unwrap(),
            "--patient",
            "pat@clinic.test",
            "--title",
            title,
        ],
    );
    rt.block_on(common::clinic::release(c));
    let list = rt.block_on(c.pat.c.reports(None)).unwrap();
    let id = list.reports[0].id.to_string();
    let target = work.join("back.bin");
    let (down, down_rss) = cli(pat, url, &["download", &id, "-o", target.to_str().unwrap()]);
    assert!(
        std::fs::read(file).unwrap() == std::fs::read(&target).unwrap(),
        "round trip"
    );
    std::fs::remove_file(&target).unwrap();
    Run {
        up,
        down,
        up_rss,
        down_rss,
    }
}

fn main() {
    let mib = env_mib("CLINVAULT_BENCH_MIB", 256);
    let big = env_mib("CLINVAULT_BENCH_BIG_MIB", 1024);
    let runs = env_mib("CLINVAULT_BENCH_RUNS", 3);
    let have_restic = installed("restic");
    let have_age = installed("age");
    if !have_restic {
        println!("restic: not installed (apt-get install restic) — its rows are skipped");
    }
    if !have_age {
        println!("age: not installed (apt-get install age) — its row is skipped");
    }
    let s3 = std::env::var("CLINVAULT_TEST_S3_ENDPOINT").is_ok();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("report.bin");
    random_file(&file, mib);
    let bytes = (mib << 20) as f64;
    let mbs = |bytes: f64, secs: f64| bytes / secs / 1e6;

    let backends: Vec<&str> = if s3 {
        vec!["local", "s3"]
    } else {
        println!("S3: CLINVAULT_TEST_S3_ENDPOINT not set (moto, see CRATES.md) — S3 rows skipped");
        vec!["local"]
    };
    for backend in backends {
        let c = rt.block_on(clinic_with(common::Db::Sqlite, |cfg| {
            cfg.server.auth_per_address_per_minute = 100_000;
            cfg.server.max_body_bytes = 1 << 20;
            if backend == "s3" {
                cfg.server.buckets = common::s3_buckets();
            }
        }));
        let url = c.ts.url.clone();
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
        println!(
            "transfer benchmark: {mib} MiB, loopback, 2 {backend} buckets, 2 durable replicas, \
             the clinvault CLI against the server in this process"
        );
        let n = if backend == "local" { runs } else { 1 };
        for run in 1..=n {
            let r = ours(
                &rt,
                &c,
                doc_state.path(),
                pat_state.path(),
                work.path(),
                &file,
                "bench",
            );
            println!(
                "  run {run}: clinvault upload {:7.1} MB/s ({:.2} s, RSS {} MiB), download {:7.1} MB/s ({:.2} s, RSS {} MiB)",
                mbs(bytes, r.up),
                r.up,
                r.up_rss / 1024,
                mbs(bytes, r.down),
                r.down,
                r.down_rss / 1024
            );
            if have_restic {
                // restic, same file, same disk, a local repository.
                let repo = work.path().join(format!("restic-repo-{backend}-{run}"));
                restic(&repo, &["init"]);
                let backup = restic(&repo, &["backup", "--quiet", file.to_str().unwrap()]);
                let restore_dir = work.path().join(format!("restored-{backend}-{run}"));
                let restore = restic(
                    &repo,
                    &[
                        "restore",
                        "latest",
                        "--target",
                        restore_dir.to_str().unwrap(),
                    ],
                );
                let _ = std::fs::remove_dir_all(&repo);
                let _ = std::fs::remove_dir_all(&restore_dir);
                println!(
                    "  run {run}: restic backup {:7.1} MB/s, restore {:7.1} MB/s; ratio upload {:.2}x backup, download {:.2}x restore",
                    mbs(bytes, backup),
                    mbs(bytes, restore),
                    backup / r.up,
                    restore / r.down
                );
            }
        }
        if backend == "local" {
            if let Some(t) = have_age.then(|| age(work.path(), &file)).flatten() {
                println!(
                    "  age -r file → file {:7.1} MB/s (reference for sealing; see `cargo bench --bench seal`)",
                    mbs(bytes, t)
                );
            }
            if big > 0 {
                let big_file = work.path().join("big.bin");
                random_file(&big_file, big);
                let r = ours(
                    &rt,
                    &c,
                    doc_state.path(),
                    pat_state.path(),
                    work.path(),
                    &big_file,
                    "big",
                );
                let b = (big << 20) as f64;
                println!(
                    "  {big} MiB: upload {:.1} MB/s (client peak RSS {} MiB), download {:.1} MB/s (client peak RSS {} MiB)",
                    mbs(b, r.up),
                    r.up_rss / 1024,
                    mbs(b, r.down),
                    r.down_rss / 1024
                );
                std::fs::remove_file(&big_file).unwrap();
            }
        }
        rt.block_on(c.ts.handle.shutdown()).unwrap();
    }
}
