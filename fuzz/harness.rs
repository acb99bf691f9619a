// Fuzz entry points, shared by the cargo-fuzz targets and the corpus replay in `cargo test`
// (tests/fuzz_corpus.rs), so every CI run re-checks the saved corpus on stable.
// Each takes arbitrary bytes and must return without panicking, whatever they are.

use clinvault::seal::{
    Dek, Manifest, PublicKeys, ReportKeys, ReportOpener, UserSecrets, WrapKey, open_bundle,
    open_meta, unwrap_dek, verify_manifest,
};

fn split(data: &[u8], at: usize) -> (&[u8], &[u8]) {
    data.split_at(at.min(data.len()))
}

fn fixed<const N: usize>(data: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = data.len().min(N);
    out[..n].copy_from_slice(&data[..n]);
    out
}

/// Manifest bytes ‖ signature ‖ key, in that order.
pub fn manifest(data: &[u8]) {
    let (bytes, rest) = split(data, clinvault::seal::MANIFEST_LEN);
    let (sig, key) = split(rest, 64);
    if let Ok(m) = Manifest::from_bytes(bytes) {
        assert_eq!(
            &m.to_bytes()[..],
            bytes,
            "parse then encode must give the same bytes"
        );
    }
    let _ = verify_manifest(bytes, sig, &fixed(key));
    let _ = Manifest::from_bytes(data);
}

/// A sealed key bundle, opened with a fixed wrap key against fixed public keys.
pub fn bundle(data: &[u8]) {
    let public = PublicKeys {
        x25519: [9; 32],
        ed25519: fixed(data),
    };
    let _ = open_bundle(data, &WrapKey([3; 32]), &[1; 16], &public);
}

/// A wrapped DEK (HPKE enc ‖ ciphertext), unwrapped with a fixed reader key.
pub fn wrapped_key(data: &[u8]) {
    thread_local! {
        static READER: Option<UserSecrets> = UserSecrets::generate().ok();
    }
    READER.with(|reader| {
        if let Some(reader) = reader {
            let _ = unwrap_dek(data, &[1; 16], &[2; 16], reader);
        }
    });
}

/// A manifest header (plaintext length, chunk size) then sealed chunks, each prefixed by a
/// little-endian u16 length: opened in order and on their own.
pub fn sealed_chunk(data: &[u8]) {
    let (head, mut rest) = split(data, 12);
    let head = fixed::<12>(head);
    let plaintext_len = u64::from(u32::from_le_bytes(fixed(&head[..4])));
    let chunk_size = u32::from_le_bytes(fixed(&head[4..8])).clamp(16, 4096);
    let Ok(n_chunks) = clinvault::seal::expected_chunks(plaintext_len, chunk_size) else {
        return;
    };
    if n_chunks > 64 {
        return;
    }
    let dek = Dek::from_bytes([5; 32]);
    let report_id = [6; 16];
    let keys = ReportKeys::derive(&dek, &report_id);
    let manifest = Manifest {
        report_id,
        patient_id: [0; 16],
        author_id: [0; 16],
        created_at_ms: 0,
        plaintext_len,
        chunk_size,
        n_chunks,
        head: [head[8]; 32],
        meta_hash: [0; 32],
        key_commit: keys.key_commit(),
    };
    let Ok(mut opener) = ReportOpener::new(&dek, &manifest) else {
        return;
    };
    let mut chunks = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let (chunk, tail) = split(&rest[2..], len);
        chunks.push(chunk.to_vec());
        rest = tail;
    }
    for (i, c) in chunks.iter().enumerate() {
        let _ = opener.open_chunk(i as u32, c.clone());
    }
    for c in chunks {
        if opener.open_next(c).is_err() {
            return;
        }
    }
    let _ = opener.finish();
}

/// An encrypted metadata blob.
pub fn meta(data: &[u8]) {
    let keys = ReportKeys::derive(&Dek::from_bytes([5; 32]), &[6; 16]);
    let _ = open_meta(&keys, &[6; 16], data);
}

/// A saved upload-state file, opened with a fixed wrap key.
pub fn upload_state(data: &[u8]) {
    if let Ok(mut state) = clinvault::seal::UploadState::open(data, &WrapKey([3; 32])) {
        let _ = state.pin(0, b"x");
    }
}

/// A report bundle file (issue 16): decoded (and re-encoded to the same bytes when it
/// decodes), then verified against the ledger and witness keys of tests/vectors/bundle-v1.json
/// (bundle-v1-station.json has the same), so inputs mutated from either vector (seeds
/// `vector-v1`, `vector-v1-station`) reach every check, the station group's included.
pub fn report_bundle(data: &[u8]) {
    use clinvault::bundle::{Bundle, Trust, verify};
    thread_local! {
        static TRUST: Option<Trust> = Some(Trust {
            ledger_key: clinvault::ledger::LedgerKey::parse(
                "clinvault-ledger:0EqyMnQrtKs6E2i9RhXk5tAiSrcaAWuvhSCjMsl3hzc=",
            )
            .ok()?,
            witnesses: vec![
                clinvault::witness::note::VerifierKey::parse(
                    "witness.example+adea4058+BMaCJjfH0xDsV2J74AuiWdJTdJ9Kr2REcM/75To19zJC",
                )
                .ok()?,
            ],
            quorum: 1,
        });
    }
    let Ok(bundle) = Bundle::from_bytes(data) else {
        return;
    };
    assert_eq!(
        bundle.to_bytes(),
        data,
        "decode then encode must give the same bytes"
    );
    TRUST.with(|t| {
        if let Some(t) = t {
            let _ = verify(&bundle, t);
        }
    });
}
