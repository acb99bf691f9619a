//! Writes seed inputs into the ledger fuzz corpus (fuzz/corpus/ledger_*/): one entry of each
//! kind and true proofs for the real-tree mode. `cargo run --example write_fuzz_seeds_ledger`,
//! when the formats change.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn main() {
    use clinvault::ledger::{AccessWhat, Entry, GrantHow, Role};

    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };

    let entries = [
        Entry::UserRegistered {
            time_ms: 1_795_000_000_000,
            user_id: [1; 16],
            role: Role::Patient,
            x25519_public: [2; 32],
            ed25519_public: [3; 32],
        },
        Entry::ReportCommitted {
            time_ms: 1_795_000_000_001,
            report_id: [4; 16],
            manifest_hash: [5; 32],
            signature: [6; 64],
        },
        Entry::GrantApproved {
            time_ms: 2,
            grant_id: [7; 16],
            report_id: [8; 16],
            reader_id: [9; 16],
            how: GrantHow::Otp,
            expires_ms: None,
        },
        Entry::KeyWrapped {
            time_ms: 3,
            grant_id: [10; 16],
            report_id: [11; 16],
            reader_id: [12; 16],
            wrapper_id: [13; 16],
            wrapped_key_hash: [14; 32],
        },
        Entry::GrantRevoked {
            time_ms: 4,
            grant_id: [15; 16],
        },
        Entry::ReportAccess {
            time_ms: 5,
            report_id: [16; 16],
            reader_id: [17; 16],
            what: AccessWhat::ReleasedByOtp,
        },
        Entry::OtpVerified {
            time_ms: 6,
            request_id: [18; 16],
            user_id: [19; 16],
        },
    ];
    for e in &entries {
        write("ledger_entry", &format!("kind-{}", e.kind()), &e.to_bytes());
    }

    // Raw-mode inputs (first byte even) are not seeded from tests/vectors/rfc6962:
    // tests/ledger_vectors.rs runs every one of those through the verifiers already.

    // Real-tree mode (first byte odd): the claim equals the source, no edits: must verify.
    for (a, b) in [(0u64, 1u64), (3, 7), (5, 8), (100, 256), (256, 257)] {
        let mut inc = vec![1u8];
        for v in [b - 1, a, b - 1, a] {
            inc.extend(v.to_le_bytes());
        }
        write("ledger_inclusion", &format!("tree-{a}-{b}"), &inc);
        let mut con = vec![1u8];
        for v in [b - 1, a.max(1) - 1, b, a.max(1)] {
            con.extend(v.to_le_bytes());
        }
        write("ledger_consistency", &format!("tree-{a}-{b}"), &con);
    }
}
