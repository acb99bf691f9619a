//! The per-byte crypto of clinvault (AES-256-GCM over chunks, SHA-256 over chunks) behind
//! non-generic functions.
//!
//! Why a crate of its own: AES-GCM and SHA-256 are generic types, so their code is compiled in
//! the crate that names the concrete type. Named in clinvault itself, a debug build (`cargo
//! run`) runs them at opt-level 0 with debug assertions, about 20× slower, whatever the
//! profile says for `aes-gcm` or `sha2`. Named here, they compile with this crate's profile
//! (opt-level 3 in the main `Cargo.toml`), and clinvault calls plain functions.
//!
//! Tested through clinvault: `tests/seal_vectors.rs` (fixed-key vectors, both ways) and
//! `tests/seal_tamper.rs` (every altered byte refused).
#![forbid(unsafe_code)]

use aes_gcm::aead::{AeadInOut, KeyInit};

/// An AES-256-GCM key, ready to seal and open (the key schedule is computed once).
/// Zeroized on drop (aes-gcm's `zeroize` feature).
pub struct Aes256Gcm(aes_gcm::Aes256Gcm);

/// Authentication failed: wrong key, nonce, associated data, or altered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFailed;

impl Aes256Gcm {
    pub fn new(key: &[u8; 32]) -> Self {
        Aes256Gcm(aes_gcm::Aes256Gcm::new(&(*key).into()))
    }

    /// Encrypts `buf` in place and appends the 16-byte tag. Fails only past AES-GCM's
    /// 64 GiB message limit.
    pub fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> bool {
        self.0
            .encrypt_in_place(&aes_gcm::Nonce::from(*nonce), aad, buf)
            .is_ok()
    }

    /// Checks the tag at the end of `buf`, then decrypts in place and drops the tag. On
    /// failure `buf` is left as it was (the tag is checked before anything is decrypted).
    pub fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), OpenFailed> {
        self.0
            .decrypt_in_place(&aes_gcm::Nonce::from(*nonce), aad, buf)
            .map_err(|_| OpenFailed)
    }
}

/// SHA-256 of `parts` concatenated.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Incremental SHA-256, for data that arrives in pieces.
#[derive(Clone, Default)]
pub struct Sha256(sha2::Sha256);

impl Sha256 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    pub fn finalize(self) -> [u8; 32] {
        sha2::Digest::finalize(self.0).into()
    }
}
