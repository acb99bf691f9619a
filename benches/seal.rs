//! `cargo bench --bench seal`: sealing and opening throughput beside baselines measured in the
//! same run (raw AES-256-GCM + SHA-256 on the same buffers, with the primitives clinvault uses:
//! ring's AES-GCM and sha2; RustCrypto's aes-gcm as a reference row; and `age` when installed).
//!
//! CLINVAULT_BENCH_MIB sets the report size (default 256); CLINVAULT_BENCH_RUNS the repeats
//! (default 3, best kept).

use std::hint::black_box;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use clinvault::seal::{
    ChunkCipher, Dek, Manifest, ReportKeys, ReportOpener, ReportSealer, SealedChunk, seal_file,
    seal_parallel,
};
use rayon::prelude::*;
use sha2::Digest;

const CHUNK: usize = 1024 * 1024;
const REPORT: [u8; 16] = [0x42; 16];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn best_of<T>(runs: usize, mut setup: impl FnMut() -> T, mut f: impl FnMut(T)) -> Duration {
    (0..runs)
        .map(|_| {
            let input = setup();
            let t = Instant::now();
            f(input);
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = vec![0u8; len];
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn manifest_for(dek: &Dek, plain: &[u8]) -> (Manifest, Vec<SealedChunk>) {
    let mut sealer = ReportSealer::new(dek, REPORT, CHUNK as u32, plain).expect("sealer");
    let chunks: Vec<SealedChunk> = sealer.by_ref().map(|c| c.expect("seal")).collect();
    let s = sealer.finish().expect("finish");
    let m = Manifest {
        report_id: REPORT,
        patient_id: [1; 16],
        author_id: [2; 16],
        created_at_ms: 0,
        plaintext_len: s.plaintext_len,
        chunk_size: s.chunk_size,
        n_chunks: s.n_chunks,
        head: s.head,
        meta_hash: [0; 32],
        key_commit: s.key_commit,
    };
    (m, chunks)
}

fn row(name: &str, bytes: usize, d: Duration, base: Option<(&str, Duration)>) {
    match base {
        Some((bname, b)) => println!(
            "{name:<44} {:>8.0} MB/s   ratio {:.2} vs {bname}",
            mbps(bytes, d),
            b.as_secs_f64() / d.as_secs_f64()
        ),
        None => println!("{name:<44} {:>8.0} MB/s", mbps(bytes, d)),
    }
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: stay quick there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mib = if quick {
        4
    } else {
        env_usize("CLINVAULT_BENCH_MIB", 256)
    };
    let runs = if quick {
        1
    } else {
        env_usize("CLINVAULT_BENCH_RUNS", 3)
    };
    let len = mib * 1024 * 1024;
    let plain = data(len);
    let dek = Dek::generate().expect("rng");
    let threads = rayon::current_num_threads();

    #[cfg(target_arch = "x86_64")]
    println!(
        "cpu: aes={} pclmulqdq={} vaes={} vpclmulqdq={} sha_ni={} avx2={} (runtime-detected; crates pick these paths themselves)",
        std::is_x86_feature_detected!("aes"),
        std::is_x86_feature_detected!("pclmulqdq"),
        std::is_x86_feature_detected!("vaes"),
        std::is_x86_feature_detected!("vpclmulqdq"),
        std::is_x86_feature_detected!("sha"),
        std::is_x86_feature_detected!("avx2"),
    );
    println!(
        "report {mib} MiB, chunk 1 MiB, best of {runs}, {threads} threads for all-core rows\n"
    );

    // Baseline: raw AES-256-GCM in place + SHA-256 of each ciphertext, same buffers, one core.
    let aead = Aes256Gcm::new(&[7u8; 32].into());
    let chunk_copies = || -> Vec<Vec<u8>> {
        plain
            .chunks(CHUNK)
            .map(|c| {
                let mut v = Vec::with_capacity(c.len() + 16);
                v.extend_from_slice(c);
                v
            })
            .collect()
    };
    let raw_seal = best_of(runs, chunk_copies, |bufs| {
        for (i, mut b) in bufs.into_iter().enumerate() {
            let mut n = [0u8; 12];
            n[8..].copy_from_slice(&(i as u32).to_be_bytes());
            aead.encrypt_in_place(&Nonce::from(n), b"aad", &mut b)
                .expect("aead");
            black_box(sha2::Sha256::digest(&b));
        }
    });
    row(
        "reference: RustCrypto aes-gcm + sha2, seal, 1 core (the cipher before issue 13)",
        len,
        raw_seal,
        None,
    );
    // The baseline proper: the same primitives clinvault seals with (ring's AES-256-GCM
    // behind clinvault-hot, sha2's SHA-256), raw, on the same buffers.
    let hot = clinvault_hot::Aes256Gcm::new(&[7u8; 32]);
    let raw_seal = best_of(runs, chunk_copies, |bufs| {
        for (i, mut b) in bufs.into_iter().enumerate() {
            let mut n = [0u8; 12];
            n[8..].copy_from_slice(&(i as u32).to_be_bytes());
            assert!(hot.seal_in_place(&n, b"aad", &mut b));
            black_box(clinvault_hot::sha256(&[&b]));
        }
    });
    row(
        "baseline: raw ring AES-256-GCM + sha2, seal, 1 core",
        len,
        raw_seal,
        None,
    );

    let ours_seal = best_of(
        runs,
        || (),
        |_| {
            let mut sealer =
                ReportSealer::new(&dek, REPORT, CHUNK as u32, &plain[..]).expect("sealer");
            while let Some(c) = sealer.next_chunk().expect("seal") {
                black_box(c);
            }
            black_box(sealer.finish().expect("finish"));
        },
    );
    row(
        "clinvault seal (stream from Read), 1 core",
        len,
        ours_seal,
        Some(("raw", raw_seal)),
    );

    let ours_seal_par = best_of(
        runs,
        || (),
        |_| {
            black_box(
                seal_parallel(&dek, REPORT, CHUNK as u32, &plain[..], 2 * threads, |c| {
                    black_box(c);
                    Ok(())
                })
                .expect("seal"),
            );
        },
    );
    row(
        "clinvault seal, all cores",
        len,
        ours_seal_par,
        Some(("our 1-core", ours_seal)),
    );

    // Opening: each run starts from fresh ciphertext buffers, as if just downloaded.
    let (manifest, sealed) = manifest_for(&dek, &plain);
    let keys = ReportKeys::derive(&dek, &REPORT);
    let cipher = ChunkCipher::new(&keys, &REPORT);
    let ct_copies = || -> Vec<Vec<u8>> { sealed.iter().map(|c| c.ciphertext.clone()).collect() };
    let n = sealed.len();
    let raw_open = best_of(runs, ct_copies, |bufs| {
        for (i, mut b) in bufs.into_iter().enumerate() {
            black_box(sha2::Sha256::digest(&b));
            cipher
                .open_in_place(i as u32, &mut b, i + 1 == n)
                .expect("open");
            black_box(b);
        }
    });
    row(
        "baseline: raw sha2 + ring AES-256-GCM, open, 1 core",
        len,
        raw_open,
        None,
    );

    let ours_open = best_of(runs, ct_copies, |bufs| {
        let mut opener = ReportOpener::new(&dek, &manifest).expect("opener");
        for b in bufs {
            black_box(opener.open_next(b).expect("open"));
        }
        opener.finish().expect("finish");
    });
    row(
        "clinvault open (verifying stream), 1 core",
        len,
        ours_open,
        Some(("raw", raw_open)),
    );

    let ids: Vec<[u8; 32]> = sealed.iter().map(|c| c.chunk_id).collect();
    let ours_open_par = best_of(runs, ct_copies, |bufs| {
        let opener = ReportOpener::new(&dek, &manifest)
            .expect("opener")
            .with_chunk_ids(ids.clone())
            .expect("ids");
        bufs.into_par_iter().enumerate().for_each(|(i, b)| {
            black_box(opener.open_chunk(i as u32, b).expect("open"));
        });
    });
    row(
        "clinvault open, all cores",
        len,
        ours_open_par,
        Some(("our 1-core", ours_open)),
    );

    if quick {
        return;
    }
    file_rows(&dek, &plain, threads, runs);
}

/// File to file: our all-core sealing against `age` on the same file.
fn file_rows(dek: &Dek, plain: &[u8], threads: usize, runs: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("report.bin");
    std::fs::write(&input, plain).expect("write input");
    let ours = best_of(
        runs,
        || (),
        |_| {
            let src = std::fs::File::open(&input).expect("open input");
            // Chunks are 1 MiB: written straight, no buffer in between.
            let mut out = std::fs::File::create(dir.path().join("ours.sealed")).expect("out");
            seal_file(dek, REPORT, CHUNK as u32, &src, threads, &mut out).expect("seal");
            out.flush().expect("flush");
        },
    );
    row(
        "clinvault seal_file file → file (read, seal on all cores, write)",
        plain.len(),
        ours,
        None,
    );

    let keygen = Command::new("age-keygen").output();
    let Some(keygen) = keygen.ok().filter(|o| o.status.success()) else {
        println!("age: not installed (apt-get install age) — comparison skipped");
        return;
    };
    let text = String::from_utf8_lossy(&keygen.stdout).into_owned();
    let Some(recipient) = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(str::to_owned)
    else {
        println!("age-keygen printed no public key — comparison skipped");
        return;
    };
    let age = best_of(
        runs,
        || (),
        |_| {
            let status = Command::new("age")
                .args(["-r", &recipient, "-o"])
                .arg(dir.path().join("age.out"))
                .arg(&input)
                .status()
                .expect("run age");
            assert!(status.success());
        },
    );
    row(
        "age -r (X25519, ChaCha20-Poly1305) file → file",
        plain.len(),
        age,
        None,
    );
    println!(
        "ratio: clinvault all-core sealing to a file / age = {:.2}",
        age.as_secs_f64() / ours.as_secs_f64()
    );
}
