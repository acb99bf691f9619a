//! Replays the saved ledger fuzz corpus (fuzz/corpus/ledger_*/) through the fuzzers' own
//! entry points, so every `cargo test` re-checks those inputs on stable.

#[path = "../fuzz/harness_ledger.rs"]
#[allow(dead_code)]
mod harness_ledger;

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn replay(target: &str, f: fn(&[u8])) {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        f(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count > 0, "no corpus for {target} in {}", dir.display());
    for data in [&b""[..], &[0u8][..], &[1u8][..], &[0xff; 4096][..]] {
        f(data);
    }
}

#[test]
fn ledger_entry_corpus() {
    replay("ledger_entry", harness_ledger::ledger_entry);
}

#[test]
fn ledger_inclusion_corpus() {
    replay("ledger_inclusion", harness_ledger::ledger_inclusion);
}

#[test]
fn ledger_consistency_corpus() {
    replay("ledger_consistency", harness_ledger::ledger_consistency);
}
