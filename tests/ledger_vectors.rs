//! Every RFC 6962/9162 proof case in tests/vectors/rfc6962 (transparency-dev/merkle's, Apache-2.0):
//! the verifiers must accept exactly the `wantErr: false` cases and refuse every other one.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clinvault::ledger::{verify_consistency, verify_inclusion};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/rfc6962");

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
}

fn bytes(case: &Value, key: &str) -> Vec<u8> {
    let text = case[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string"));
    STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn number(case: &Value, key: &str) -> u64 {
    case[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a u64"))
}

fn proof(case: &Value) -> Vec<Vec<u8>> {
    match &case["proof"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|h| STANDARD.decode(h.as_str().expect("proof hash")).unwrap())
            .collect(),
        other => panic!("proof is {other}"),
    }
}

/// `Ok` when the verifier accepted, `Err(message)` when it refused.
fn run(case: &Value) -> Result<(), String> {
    let proof = proof(case);
    if case.get("leafIdx").is_some() {
        verify_inclusion(
            number(case, "leafIdx"),
            number(case, "treeSize"),
            &bytes(case, "leafHash"),
            &proof,
            &bytes(case, "root"),
        )
    } else {
        verify_consistency(
            number(case, "size1"),
            number(case, "size2"),
            &bytes(case, "root1"),
            &bytes(case, "root2"),
            &proof,
        )
    }
    .map_err(|e| e.to_string())
}

#[test]
fn every_rfc6962_case() {
    let dir = Path::new(VECTORS);
    assert!(
        dir.is_dir(),
        "the RFC 6962 vectors are missing: expected them in {} (part of the repository)",
        dir.display()
    );
    let mut files = Vec::new();
    json_files(dir, &mut files);
    files.sort();

    let (mut accepted, mut refused, mut inclusion) = (0, 0, 0);
    let mut wrong = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let case: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let want_err = case["wantErr"].as_bool().expect("wantErr");
        let got = run(&case);
        if case.get("leafIdx").is_some() {
            inclusion += 1;
        }
        match (&got, want_err) {
            (Ok(()), false) => accepted += 1,
            (Err(_), true) => refused += 1,
            _ => wrong.push(format!(
                "{}: wantErr {want_err}, got {got:?}",
                path.strip_prefix(dir).unwrap_or(path).display()
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let total = files.len();
    assert!(total > 0, "no vector files under {}", dir.display());
    assert!(accepted > 0 && refused > 0);
    assert!(
        inclusion > 0 && inclusion < total,
        "both inclusion and consistency cases"
    );
    println!("{total} cases: {accepted} accepted, {refused} refused ({inclusion} inclusion)");
}
