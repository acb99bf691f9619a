//! Writes valid seed inputs into the fuzz corpus (fuzz/corpus/<target>/):
//! `cargo run --example write_fuzz_seeds`, when the formats change.

use std::path::PathBuf;

fn main() {
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

    let mut state =
        clinvault::seal::UploadState::new(report_id, [1; 16], 16, 40, Dek::from_bytes([5; 32]))
            .unwrap();
    state.pin(1, &[7; 16]).unwrap();
    write(
        "upload_state",
        "valid",
        &state.seal(&WrapKey([3; 32])).unwrap(),
    );

    // Report bundles: the committed vectors (the harness verifies against their keys) and a
    // few framing edge cases derived from the first.
    let v = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/bundle-v1.cvb"),
    )
    .unwrap();
    write("report_bundle", "vector-v1", &v);
    write("report_bundle", "header-only", &v[..25]);
    write("report_bundle", "no-chunks", &v[..25 + 5 + 189]);
    write(
        "report_bundle",
        "version-2",
        &[&v[..23], &[0, 2], &v[25..]].concat(),
    );
    write("report_bundle", "trailing", &[&v[..], &[11, 0]].concat());
    // A station's report: the station group (tags 12-15), same keys.
    let s = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/bundle-v1-station.cvb"),
    )
    .unwrap();
    write("report_bundle", "vector-v1-station", &s);
}
