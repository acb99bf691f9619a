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

#[test]
fn upload_state_corpus() {
    replay("upload_state", harness::upload_state);
}

#[test]
fn report_bundle_corpus() {
    replay("report_bundle", harness::report_bundle);
}
