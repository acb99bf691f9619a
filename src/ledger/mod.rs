//! The ledger: an append-only transparency log (DESIGN.md §6).
//!
//! Pure: no I/O, no async, nothing of ours imported. RFC 6962/9162 Merkle hashing, proof
//! generation (for the server) and verification (for every client), the entry encoding and
//! signed tree heads. Every decoder and verifier of untrusted bytes returns a
//! [`LedgerError`]; none panics.

mod entry;
mod error;
mod hash;
mod head;
mod proof;
mod tree;
mod verify;

pub use entry::{AccessWhat, AccountState, ENTRY_PREFIX, Entry, GrantHow, Role};
pub use entry::{TeamChange, emergency_reports_hash};
pub use error::LedgerError;
pub use hash::{empty_root, leaf_hash, node_hash, root};
pub use head::{
    HEAD_MESSAGE_LEN, HEAD_PREFIX, LEDGER_KEY_PREFIX, LedgerKey, MAX_CLOCK_SKEW_MS,
    SIGNED_HEAD_LEN, SignedHead,
};
pub use proof::{
    Subtree, consistency_proof, consistency_proof_with, inclusion_proof, inclusion_proof_with,
    root_with,
};
pub use tree::MerkleTree;
pub use verify::{
    consistency_proof_len, inclusion_proof_len, verify_consistency, verify_inclusion,
};

/// A SHA-256 output: leaf hash, node hash or tree root.
pub type Hash = [u8; 32];

/// A 16-byte id (user, report, grant, request): UUID bytes as they go on the wire.
pub type Id = [u8; 16];
