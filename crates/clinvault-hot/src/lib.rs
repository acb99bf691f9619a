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

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// An AES-256-GCM key, ready to seal and open (the key schedule is computed once).
///
/// ring's AES-GCM: it uses VAES and VPCLMULQDQ where the CPU has them, about 3.5× RustCrypto's
/// `aes-gcm` on the development machine (issue 13). ring does not wipe the expanded key when it
/// is dropped; the key bytes it was made from are the caller's to wipe (clinvault's are
/// `Zeroizing`), and docs/security.md lists this.
pub struct Aes256Gcm(LessSafeKey);

/// Authentication failed: wrong key, nonce, associated data, or altered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFailed;

impl Aes256Gcm {
    pub fn new(key: &[u8; 32]) -> Self {
        // ring refuses only a key of the wrong length, and the type fixes it at 32 bytes.
        match UnboundKey::new(&AES_256_GCM, key) {
            Ok(k) => Aes256Gcm(LessSafeKey::new(k)),
            Err(_) => unreachable!("a 32-byte AES-256 key is refused by ring"),
        }
    }

    /// Encrypts `buf` in place and appends the 16-byte tag. Fails only past AES-GCM's
    /// 64 GiB message limit.
    pub fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> bool {
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .is_ok()
    }

    /// Checks the tag at the end of `buf` while decrypting in place, and drops the tag. On
    /// failure `buf` holds no plaintext (ring overwrites it): use the bytes no further.
    pub fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), OpenFailed> {
        // ring refuses a buffer shorter than the tag itself.
        let len = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| OpenFailed)?
            .len();
        buf.truncate(len);
        Ok(())
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
