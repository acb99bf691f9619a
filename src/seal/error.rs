use std::fmt;

/// Which check a chunk failed: the opener reports the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkCheck {
    /// SHA-256 of the ciphertext differs from the chunk id it should have.
    ChunkId,
    /// The hash-chain link computed through this chunk differs from the expected one.
    ChainLink,
    /// AES-GCM authentication failed (wrong key, wrong position, wrong report or bytes changed).
    Authentication,
    /// This chunk is sealed as the last one but more were expected (or the reverse): the
    /// stream was truncated or extended.
    LastFlag,
    /// The ciphertext has the wrong length for its position.
    Length,
    /// The chunk is absent: the stream ended early.
    Missing,
    /// A chunk arrived beyond the count the manifest promises.
    Unexpected,
}

impl fmt::Display for ChunkCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkCheck::ChunkId => "chunk id (SHA-256 of the ciphertext) does not match",
            ChunkCheck::ChainLink => "hash-chain link does not match",
            ChunkCheck::Authentication => "AES-GCM authentication failed",
            ChunkCheck::LastFlag => "last-chunk flag does not match (truncated or extended)",
            ChunkCheck::Length => "ciphertext length is wrong for its position",
            ChunkCheck::Missing => "chunk is missing (report truncated)",
            ChunkCheck::Unexpected => "chunk beyond the count in the manifest (report extended)",
        })
    }
}

/// Everything that can go wrong in `seal/`. Integrity failures name the chunk.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("chunk {chunk}: {check}")]
    Integrity { chunk: u32, check: ChunkCheck },
    #[error(
        "chunk {chunk}: the input file changed since this upload began; the upload must start over as a new report"
    )]
    InputChanged { chunk: u32 },
    #[error("chain head does not match the manifest: the chunk list was altered")]
    ChainHead,
    #[error("total plaintext length {got} does not match the manifest's {expected}")]
    TotalLength { expected: u64, got: u64 },
    #[error("chunk size {0} is outside the format's range (16 B to 16 MiB)")]
    ChunkSize(u64),
    #[error("report too large: more than 2^32 chunks at this chunk size")]
    TooManyChunks,
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("manifest signature does not verify against the author's key")]
    ManifestSignature,
    #[error("the data key does not match the manifest's key commitment")]
    KeyCommitment,
    #[error("could not unwrap the data key: it was not wrapped for this reader and report")]
    Unwrap,
    #[error("could not wrap the data key to the reader's public key")]
    Wrap,
    #[error("wrong password, or the key bundle was altered")]
    Bundle,
    #[error("metadata could not be decrypted: wrong key or altered")]
    Metadata,
    #[error("invalid public key: {0}")]
    PublicKey(&'static str),
    #[error("key derivation parameters refused: {0}")]
    KdfParams(String),
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("reading the input failed: {0}")]
    Io(#[from] std::io::Error),
}

impl SealError {
    pub(crate) fn malformed(what: &'static str, why: impl Into<String>) -> Self {
        SealError::Malformed {
            what,
            why: why.into(),
        }
    }

    /// The chunk at fault, where one is.
    pub fn chunk(&self) -> Option<u32> {
        match self {
            SealError::Integrity { chunk, .. } | SealError::InputChanged { chunk } => Some(*chunk),
            _ => None,
        }
    }
}
