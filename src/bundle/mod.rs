//! Offline-verifiable report bundles (issue 16, docs/protocol.md §16): one file holding a
//! report's manifest, its ledger evidence, a signed head, the sealed chunks and the report key,
//! checkable with no server. `format` is the container, `verify` drives the existing
//! verifiers of `seal/`, `ledger/` and `witness/`, `export` gathers a bundle through the
//! client's verified paths.

pub mod export;
mod format;
mod verify;

pub use format::{
    Bundle, ENTRY_LEN, FormatError, MAGIC, MAX_BUNDLE_LEN, MAX_CHECKPOINT_LEN, MAX_PROOF_HASHES,
    META_LEN, ProvenEntry, StationEvidence, Tag, VERSION,
};
pub use verify::{BundleError, Check, StationProof, Trust, Verified, check, verify, verify_bytes};
