//! Replays the saved fuzz corpus (fuzz/corpus/<target>/) through the same entry points the
//! fuzzers use, so every `cargo test` re-checks that no decoder panics on those inputs.
//! The fuzzers themselves need nightly: see README.md, "Fuzzing".

#[path = "../fuzz/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::PathBuf;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        f(&data);
        count += 1;
    }
    assert!(count > 0, "no corpus for {target} in {}", dir.display());
    // Plus the classic edge inputs.
    for data in [&b""[..], &[0u8][..], &[0xff; 4096][..]] {
        f(data);
    }
}

#[test]
fn manifest_corpus() {
    replay("manifest", harness::manifest);
}

#[test]
fn bundle_corpus() {
    replay("bundle", harness::bundle);
}

#[test]
fn wrapped_key_corpus() {
    replay("wrapped_key", harness::wrapped_key);
}

#[test]
fn sealed_chunk_corpus() {
    replay("sealed_chunk", harness::sealed_chunk);
}

#[test]
fn meta_corpus() {
    replay("meta", harness::meta);
}

/// Writes valid seed inputs into the corpus: `cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes the seed corpus; run by hand when the formats change"]
fn write_seed_corpus() {
    use clinvault::seal::{
        Dek, Manifest, ReportKeys, ReportMeta, ReportSealer, UserSecrets, WrapKey, seal_meta,
        wrap_dek,
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };

    let author = UserSecrets::generate().unwrap();
    let dek = Dek::from_bytes([5; 32]);
    let report_id = [6; 16];
    let plain = b"seed report: three chunks of sixteen and a short tail".to_vec();
    let mut sealer = ReportSealer::new(&dek, report_id, 16, &plain[..]).unwrap();
    let chunks: Vec<_> = sealer.by_ref().map(Result::unwrap).collect();
    let s = sealer.finish().unwrap();
    let m = Manifest {
        report_id,
        patient_id: [1; 16],
        author_id: [2; 16],
        created_at_ms: 1_795_000_000_000,
        plaintext_len: s.plaintext_len,
        chunk_size: 16,
        n_chunks: s.n_chunks,
        head: s.head,
        meta_hash: [3; 32],
        key_commit: s.key_commit,
    };
    let sig = m.sign(author.signing_key());
    write(
        "manifest",
        "valid",
        &[&m.to_bytes()[..], &sig, &author.public().ed25519].concat(),
    );

    write(
        "bundle",
        "valid-length",
        &author.seal_bundle(&WrapKey([3; 32]), &[1; 16]).unwrap(),
    );
    write(
        "wrapped_key",
        "valid-length",
        &wrap_dek(&dek, &[1; 16], &[2; 16], &author.public().x25519).unwrap(),
    );

    let mut framed = Vec::new();
    framed.extend((plain.len() as u32).to_le_bytes());
    framed.extend(16u32.to_le_bytes());
    framed.extend([0u8; 4]);
    for c in &chunks {
        framed.extend((c.ciphertext.len() as u16).to_le_bytes());
        framed.extend(&c.ciphertext);
    }
    write("sealed_chunk", "valid-chunks", &framed);

    let keys = ReportKeys::derive(&dek, &report_id);
    let meta = ReportMeta {
        title: "Seed".into(),
        file_name: "seed.pdf".into(),
        media_type: "application/pdf".into(),
        note: String::new(),
    };
    write(
        "meta",
        "valid",
        &seal_meta(&keys, &report_id, &meta).unwrap(),
    );
}
