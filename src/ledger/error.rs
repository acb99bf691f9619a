/// Everything that can go wrong in `ledger/`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    // Proofs.
    #[error("{what} must be 32 bytes, got {len}")]
    HashLength { what: &'static str, len: usize },
    #[error("the tree is empty: there is nothing to prove")]
    EmptyTree,
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a consistency proof from an empty tree proves nothing: pin the head instead")]
    ConsistencyFromEmpty,
    #[error("rollback: the new tree has {size2} entries, fewer than the {size1} already seen")]
    Rollback { size1: u64, size2: u64 },
    #[error("proof has {got} hashes, the tree sizes call for {want}")]
    ProofLength { got: usize, want: usize },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("the proof does not lead to the root of the earlier tree: the log forked")]
    OldRootMismatch,
    #[error("leaf range {start}..{end} does not split into aligned subtrees")]
    BadRange { start: u64, end: u64 },
    #[error("asked for a tree of size {size} but only {have} leaves are known")]
    TreeTooSmall { size: u64, have: u64 },

    // Entries.
    #[error("ledger entry does not start with \"clinvault/entry/v1\"")]
    EntryPrefix,
    #[error("ledger entry too short: {0} bytes")]
    EntryTooShort(usize),
    #[error("unknown ledger entry kind {0}")]
    UnknownKind(u8),
    #[error("ledger entry of kind {kind} must be {want} bytes, got {got}")]
    EntryLength { kind: u8, want: usize, got: usize },
    #[error("unknown {field} code {code} in a ledger entry")]
    UnknownCode { field: &'static str, code: u8 },

    // Signed heads and the ledger key.
    #[error("signed head must be {want} bytes, got {got}")]
    HeadLength { want: usize, got: usize },
    #[error("signed head does not start with \"clinvault/head/v1\"")]
    HeadPrefix,
    #[error("the signed head's signature does not verify against the pinned ledger key")]
    HeadSignature,
    #[error("the signed head is {age_ms} ms old, more than the {max_age_ms} ms allowed")]
    HeadStale { age_ms: i128, max_age_ms: u64 },
    #[error("the signed head is dated {ahead_ms} ms in the future: check this computer's clock")]
    HeadFromFuture { ahead_ms: i128 },
    #[error("invalid ledger key: {0}")]
    LedgerKey(&'static str),
}
