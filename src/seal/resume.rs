//! State of an interrupted upload, kept by the client in its state folder (DESIGN.md §2).
//!
//! Resuming reuses the report's DEK and id, so every chunk re-sealed must have exactly the
//! plaintext it had: the state records SHA-256 of each chunk's plaintext, and the client writes
//! that record to disk BEFORE the chunk's ciphertext leaves, so no (key, nonce) pair can ever
//! seal two different plaintexts. The DEK is sealed under the user's `wrap_key`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::{
    ChunkCheck, Dek, Id, SealError, TAG_LEN, WrapKey, expected_chunks, random_array, sha256,
};

const AAD: &[u8] = b"clinvault/upload-state/v1";
const MAGIC: &[u8] = b"CVUS1";
/// Refuse state files for absurd chunk counts before allocating.
const MAX_CHUNKS: u32 = 1 << 24;

pub struct UploadState {
    pub report_id: Id,
    pub patient_id: Id,
    pub chunk_size: u32,
    pub file_len: u64,
    dek: Dek,
    /// SHA-256 of each chunk's plaintext, once that chunk has been sealed.
    plain_hashes: Vec<Option<[u8; 32]>>,
}

impl UploadState {
    pub fn new(
        report_id: Id,
        patient_id: Id,
        chunk_size: u32,
        file_len: u64,
        dek: Dek,
    ) -> Result<Self, SealError> {
        let n = expected_chunks(file_len, chunk_size)?;
        if n > MAX_CHUNKS {
            return Err(SealError::TooManyChunks);
        }
        Ok(UploadState {
            report_id,
            patient_id,
            chunk_size,
            file_len,
            dek,
            plain_hashes: vec![None; n as usize],
        })
    }

    pub fn dek(&self) -> &Dek {
        &self.dek
    }

    pub fn n_chunks(&self) -> u32 {
        self.plain_hashes.len() as u32
    }

    /// Chunks sealed before (whose plaintext is pinned).
    pub fn sealed_count(&self) -> usize {
        self.plain_hashes.iter().filter(|h| h.is_some()).count()
    }

    /// Before sealing chunk `index`: refuses a plaintext that differs from the one sealed under
    /// this index before, then pins it. Persist the state after this and before sending.
    pub fn pin(&mut self, index: u32, plaintext: &[u8]) -> Result<(), SealError> {
        let slot = self
            .plain_hashes
            .get_mut(index as usize)
            .ok_or(SealError::Integrity {
                chunk: index,
                check: ChunkCheck::Unexpected,
            })?;
        let hash = sha256(&[plaintext]);
        match slot {
            Some(prev) if *prev != hash => Err(SealError::InputChanged { chunk: index }),
            Some(_) => Ok(()),
            None => {
                *slot = Some(hash);
                Ok(())
            }
        }
    }

    /// Whether the file on disk still has the recorded length (a cheap first check).
    pub fn matches_len(&self, file_len: u64) -> bool {
        self.file_len == file_len
    }

    /// `MAGIC ‖ nonce ‖ AES-256-GCM(wrap_key, body, AAD)`; the body holds the DEK.
    pub fn seal(&self, wrap_key: &WrapKey) -> Result<Vec<u8>, SealError> {
        let mut body = Zeroizing::new(Vec::with_capacity(80 + 33 * self.plain_hashes.len()));
        body.extend_from_slice(&self.report_id);
        body.extend_from_slice(&self.patient_id);
        body.extend_from_slice(&self.chunk_size.to_be_bytes());
        body.extend_from_slice(&self.file_len.to_be_bytes());
        body.extend_from_slice(self.dek.as_bytes());
        for h in &self.plain_hashes {
            match h {
                Some(h) => {
                    body.push(1);
                    body.extend_from_slice(h);
                }
                None => body.push(0),
            }
        }
        let nonce: [u8; 12] = random_array()?;
        let ct = Aes256Gcm::new(&wrap_key.0.into())
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &body,
                    aad: AAD,
                },
            )
            .map_err(|_| SealError::malformed("upload state", "could not encrypt"))?;
        Ok([MAGIC, &nonce[..], &ct].concat())
    }

    pub fn open(bytes: &[u8], wrap_key: &WrapKey) -> Result<Self, SealError> {
        let bad = |why: &str| SealError::malformed("upload state", why.to_string());
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a clinvault upload state file"))?;
        if rest.len() < 12 + TAG_LEN {
            return Err(bad("truncated"));
        }
        let (nonce, ct) = rest.split_at(12);
        let mut n = [0u8; 12];
        n.copy_from_slice(nonce);
        let body = Zeroizing::new(
            Aes256Gcm::new(&wrap_key.0.into())
                .decrypt(&Nonce::from(n), Payload { msg: ct, aad: AAD })
                .map_err(|_| bad("cannot be decrypted with this account's key, or altered"))?,
        );
        let fixed = 16 + 16 + 4 + 8 + 32;
        if body.len() < fixed {
            return Err(bad("truncated body"));
        }
        let take = |at: usize, len: usize| &body[at..at + len];
        let mut report_id = [0u8; 16];
        report_id.copy_from_slice(take(0, 16));
        let mut patient_id = [0u8; 16];
        patient_id.copy_from_slice(take(16, 16));
        let mut cs = [0u8; 4];
        cs.copy_from_slice(take(32, 4));
        let mut len = [0u8; 8];
        len.copy_from_slice(take(36, 8));
        let mut dek = Zeroizing::new([0u8; 32]);
        dek.copy_from_slice(take(44, 32));
        let mut state = UploadState::new(
            report_id,
            patient_id,
            u32::from_be_bytes(cs),
            u64::from_be_bytes(len),
            Dek::from_bytes(*dek),
        )?;
        let mut at = fixed;
        for slot in state.plain_hashes.iter_mut() {
            match body.get(at) {
                Some(0) => at += 1,
                Some(1) if body.len() >= at + 33 => {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(&body[at + 1..at + 33]);
                    *slot = Some(h);
                    at += 33;
                }
                _ => return Err(bad("chunk records do not match the file length")),
            }
        }
        if at != body.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(state)
    }
}
