//! Test vectors (tests/vectors/*.json): the v1 format byte for byte, so it cannot drift silently.
//!
//! `CLINVAULT_WRITE_VECTORS=1 cargo test --test seal_vectors` rewrites them (only when the format
//! version changes); a plain run checks the committed files against this implementation.

use std::path::PathBuf;

use clinvault::seal::{
    Chain, ChunkCipher, Dek, Manifest, ReportKeys, ReportOpener, ReportSealer, verify_manifest,
};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn h(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("{key} missing"))).unwrap()
}

fn arr<const N: usize>(v: &Value, key: &str) -> [u8; N] {
    h(v, key).try_into().unwrap()
}

struct Case {
    name: &'static str,
    seed: u8,
    chunk_size: u32,
    plaintext: Vec<u8>,
    with_manifest: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "empty",
            seed: 1,
            chunk_size: 16,
            plaintext: vec![],
            with_manifest: false,
        },
        Case {
            name: "one-short-chunk",
            seed: 2,
            chunk_size: 64,
            plaintext: b"clinvault v1: one short chunk".to_vec(),
            with_manifest: false,
        },
        Case {
            name: "several-chunks-short-last",
            seed: 3,
            chunk_size: 16,
            plaintext: b"Patient stable; continue current medication, review in 6 weeks.".to_vec(),
            with_manifest: true,
        },
    ]
}

fn derive(tag: &str, seed: u8) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest([tag.as_bytes(), &[seed]].concat()).into()
}

fn generate(case: &Case) -> Value {
    let dek = Dek::from_bytes(derive("vector dek", case.seed));
    let report_id: [u8; 16] = derive("vector report", case.seed)[..16].try_into().unwrap();
    let mut sealer =
        ReportSealer::new(&dek, report_id, case.chunk_size, &case.plaintext[..]).unwrap();
    let mut chain = Chain::new(report_id);
    let mut chunks = Vec::new();
    while let Some(c) = sealer.next_chunk().unwrap() {
        let link = chain.push(&c.chunk_id);
        chunks.push(json!({
            "index": c.index,
            "ciphertext": hex::encode(&c.ciphertext),
            "chunk_id": hex::encode(c.chunk_id),
            "link": hex::encode(link),
        }));
    }
    let s = sealer.finish().unwrap();
    let mut v = json!({
        "description": format!("clinvault report format v1: {}", case.name),
        "dek": hex::encode(dek.as_bytes()),
        "report_id": hex::encode(report_id),
        "chunk_size": case.chunk_size,
        "plaintext": hex::encode(&case.plaintext),
        "key_commit": hex::encode(s.key_commit),
        "chunks": chunks,
        "head": hex::encode(s.head),
    });
    if case.with_manifest {
        let m = Manifest {
            report_id,
            patient_id: derive("vector patient", case.seed)[..16]
                .try_into()
                .unwrap(),
            author_id: derive("vector author", case.seed)[..16].try_into().unwrap(),
            created_at_ms: 1_795_000_000_000,
            plaintext_len: s.plaintext_len,
            chunk_size: s.chunk_size,
            n_chunks: s.n_chunks,
            head: s.head,
            meta_hash: derive("vector meta", case.seed),
            key_commit: s.key_commit,
        };
        let key = SigningKey::from_bytes(&derive("vector ed25519", case.seed));
        v["manifest"] = json!({
            "report_id": hex::encode(m.report_id),
            "patient_id": hex::encode(m.patient_id),
            "author_id": hex::encode(m.author_id),
            "created_at_ms": m.created_at_ms,
            "plaintext_len": m.plaintext_len,
            "chunk_size": m.chunk_size,
            "n_chunks": m.n_chunks,
            "head": hex::encode(m.head),
            "meta_hash": hex::encode(m.meta_hash),
            "key_commit": hex::encode(m.key_commit),
        });
        v["manifest_bytes"] = json!(hex::encode(m.to_bytes()));
        v["ed25519_seed"] = json!(hex::encode(key.to_bytes()));
        v["ed25519_public"] = json!(hex::encode(key.verifying_key().to_bytes()));
        v["signature"] = json!(hex::encode(m.sign(&key)));
    }
    v
}

/// Checks a vector file against this implementation, in both directions: sealing reproduces
/// its bytes, and opening its bytes gives its plaintext.
fn check(v: &Value) {
    let dek = Dek::from_bytes(arr(v, "dek"));
    let report_id: [u8; 16] = arr(v, "report_id");
    let chunk_size = v["chunk_size"].as_u64().unwrap() as u32;
    let plaintext = h(v, "plaintext");
    let keys = ReportKeys::derive(&dek, &report_id);
    assert_eq!(keys.key_commit(), arr::<32>(v, "key_commit"));
    let cipher = ChunkCipher::new(&keys, &report_id);
    let listed = v["chunks"].as_array().unwrap();
    let mut chain = Chain::new(report_id);
    let mut opened = Vec::new();
    for (i, c) in listed.iter().enumerate() {
        assert_eq!(c["index"].as_u64().unwrap() as usize, i);
        let ct = h(c, "ciphertext");
        assert_eq!(clinvault::seal::chunk_id(&ct), arr::<32>(c, "chunk_id"));
        assert_eq!(chain.push(&arr(c, "chunk_id")), arr::<32>(c, "link"));
        opened.extend(cipher.open(i as u32, &ct, i + 1 == listed.len()).unwrap());
    }
    assert_eq!(opened, plaintext);
    assert_eq!(chain.head().unwrap(), arr::<32>(v, "head"));

    let sealed: Vec<_> = ReportSealer::new(&dek, report_id, chunk_size, &plaintext[..])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sealed.len(), listed.len());
    for (s, c) in sealed.iter().zip(listed) {
        assert_eq!(s.ciphertext, h(c, "ciphertext"));
    }

    if v.get("manifest").is_some() {
        let mv = &v["manifest"];
        let bytes = h(v, "manifest_bytes");
        let m = verify_manifest(&bytes, &h(v, "signature"), &arr(v, "ed25519_public")).unwrap();
        assert_eq!(m.report_id, arr::<16>(mv, "report_id"));
        assert_eq!(m.patient_id, arr::<16>(mv, "patient_id"));
        assert_eq!(m.author_id, arr::<16>(mv, "author_id"));
        assert_eq!(m.created_at_ms, mv["created_at_ms"].as_i64().unwrap());
        assert_eq!(m.plaintext_len, mv["plaintext_len"].as_u64().unwrap());
        assert_eq!(u64::from(m.chunk_size), mv["chunk_size"].as_u64().unwrap());
        assert_eq!(u64::from(m.n_chunks), mv["n_chunks"].as_u64().unwrap());
        assert_eq!(m.head, arr::<32>(mv, "head"));
        assert_eq!(m.meta_hash, arr::<32>(mv, "meta_hash"));
        assert_eq!(m.key_commit, arr::<32>(mv, "key_commit"));
        assert_eq!(m.to_bytes().to_vec(), bytes);
        let key = SigningKey::from_bytes(&arr(v, "ed25519_seed"));
        assert_eq!(
            m.sign(&key).to_vec(),
            h(v, "signature"),
            "Ed25519 is deterministic"
        );
        let mut opener = ReportOpener::new(&dek, &m).unwrap();
        let mut out = Vec::new();
        for c in listed {
            out.extend(opener.open_next(h(c, "ciphertext")).unwrap());
        }
        opener.finish().unwrap();
        assert_eq!(out, plaintext);
    }
}

#[test]
fn vectors_match_the_implementation() {
    let write = std::env::var_os("CLINVAULT_WRITE_VECTORS").is_some();
    if write {
        std::fs::create_dir_all(dir()).unwrap();
    }
    for case in cases() {
        let path = dir().join(format!("{}.json", case.name));
        if write {
            let text = serde_json::to_string_pretty(&generate(&case)).unwrap();
            std::fs::write(&path, text + "\n").unwrap();
        }
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let v: Value = serde_json::from_str(&text).unwrap();
        check(&v);
        // The file is exactly what this implementation generates from the same inputs.
        assert_eq!(v, generate(&case), "{} drifted", path.display());
    }
}
