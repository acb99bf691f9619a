//! Report sealing, format v1 (DESIGN.md §2–§3).
//!
//! Pure: no I/O beyond an optional `std::io::Read` source, no async, nothing of ours imported.
//! Every decoder of untrusted bytes returns a [`SealError`]; none panics.

mod chain;
mod chunk;
mod error;
mod identity;
mod keys;
mod manifest;
mod meta;
mod password;
mod resume;
mod stream;
mod wrap;

pub use chain::{Chain, chain_head, verify_chain};
pub use chunk::{ChunkCipher, SealedChunk, chunk_id, chunk_nonce};
pub use error::{ChunkCheck, SealError};
pub use identity::{BUNDLE_LEN, PublicKeys, UserSecrets, fingerprint, open_bundle};
pub use keys::{
    AuthKey, Dek, KdfParams, MasterKey, ReportKeys, WrapKey, derive_master_key, random_array,
};
pub use manifest::{MANIFEST_LEN, Manifest, verify_manifest};
pub use meta::{ReportMeta, meta_hash, open_meta, seal_meta};
pub use password::{MAX_PASSWORD_CHARS, PasswordProblem, check_password, normalize_password};
pub use resume::{STATE_HEADER_LEN, STATE_RECORD_LEN, UploadState};
pub use stream::{
    ChunkSealer, ReportOpener, ReportSealer, SealSummary, expected_chunks, seal_file, seal_parallel,
};
pub use wrap::{WRAPPED_DEK_LEN, WrappedDek, unwrap_dek, wrap_dek};

/// Smallest and largest chunk sizes the format allows (readers refuse others).
pub const MIN_CHUNK_SIZE: u32 = 16;
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// The client's default chunk size.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// AES-GCM tag length: every sealed chunk is its plaintext plus this.
pub const TAG_LEN: usize = 16;

/// A 16-byte id (report, user, grant, request): UUID bytes as they go on the wire.
pub type Id = [u8; 16];

/// SHA-256 of `parts` concatenated.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    // Optimised even in a debug build: chunk ids hash every byte.
    clinvault_hot::sha256(parts)
}

/// Constant-time equality for secrets and MACs.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}
