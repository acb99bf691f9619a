//! State of an interrupted upload, kept by the client in its state folder (DESIGN.md §2).
//!
//! Resuming reuses the report's DEK and id, so every chunk re-sealed must have exactly the
//! plaintext it had: the state records each chunk's id (SHA-256 of its ciphertext), and the
//! client writes that record to disk BEFORE the chunk's ciphertext leaves. Under one key and
//! nonce AES-GCM gives different plaintexts different ciphertexts, so a re-sealed chunk whose
//! id differs from the record had other plaintext: it never leaves, and no (key, nonce) pair
//! ever lets out two plaintexts. Pinning the id rather than a plaintext hash saves a SHA-256
//! pass over every byte uploaded (issue 13). The DEK is sealed under the user's `wrap_key`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::{ChunkCheck, Dek, Id, SealError, TAG_LEN, WrapKey, expected_chunks, random_array};

// v3: records hold chunk ids (v2 held plaintext hashes; a v2 state is not read, and its upload
// starts over as a new report).
const AAD: &[u8] = b"clinvault/upload-state/v3";
const MAGIC: &[u8] = b"CVUS3";
/// Refuse state files for absurd chunk counts before allocating.
const MAX_CHUNKS: u32 = 1 << 24;
/// The sealed header: magic, nonce, then report, patient, chunk size, length, DEK and journal
/// key under the user's wrap key.
pub const STATE_HEADER_LEN: usize = 5 + 12 + (16 + 16 + 4 + 8 + 32 + 32) + TAG_LEN;
/// One journal record: the chunk index, then its chunk id sealed under the journal key
/// with the index as nonce (each index is recorded at most once per journal).
pub const STATE_RECORD_LEN: usize = 4 + 32 + TAG_LEN;

pub struct UploadState {
    pub report_id: Id,
    pub patient_id: Id,
    pub chunk_size: u32,
    pub file_len: u64,
    dek: Dek,
    /// Seals the journal's records; random per state, kept in its header.
    journal_key: Zeroizing<[u8; 32]>,
    /// Each chunk's id (SHA-256 of its ciphertext), once that chunk has been sealed.
    chunk_ids: Vec<Option<[u8; 32]>>,
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
            journal_key: Zeroizing::new(random_array()?),
            chunk_ids: vec![None; n as usize],
        })
    }

    pub fn dek(&self) -> &Dek {
        &self.dek
    }

    pub fn n_chunks(&self) -> u32 {
        self.chunk_ids.len() as u32
    }

    /// Chunks sealed before (whose plaintext is pinned).
    pub fn sealed_count(&self) -> usize {
        self.chunk_ids.iter().filter(|h| h.is_some()).count()
    }

    /// Pins `plaintext` as chunk `index`: seals it as this report's chunk `index` and pins that
    /// chunk id ([`Self::pin_chunk_id`]). Refuses a plaintext that differs from the one pinned
    /// before. Persist the state after this and before sending.
    pub fn pin(&mut self, index: u32, plaintext: &[u8]) -> Result<(), SealError> {
        let last = index + 1 == self.n_chunks();
        let keys = super::ReportKeys::derive(&self.dek, &self.report_id);
        let sealed = super::ChunkCipher::new(&keys, &self.report_id).seal(index, plaintext, last);
        self.pin_chunk_id(index, sealed.chunk_id).map(|_| ())
    }

    /// Pins chunk `index` by its id, computed by a sealing worker from this state's DEK.
    /// Returns whether the index is newly pinned: its journal record must then be written
    /// ([`Self::record`]) and synced before the chunk's ciphertext leaves. A different id for
    /// an index pinned before is [`SealError::InputChanged`]: that ciphertext must not leave.
    pub fn pin_chunk_id(&mut self, index: u32, chunk_id: [u8; 32]) -> Result<bool, SealError> {
        let slot = self
            .chunk_ids
            .get_mut(index as usize)
            .ok_or(SealError::Integrity {
                chunk: index,
                check: ChunkCheck::Unexpected,
            })?;
        match slot {
            Some(prev) if *prev != chunk_id => Err(SealError::InputChanged { chunk: index }),
            Some(_) => Ok(false),
            None => {
                *slot = Some(chunk_id);
                Ok(true)
            }
        }
    }

    /// The chunk id pinned for `index`, if any.
    pub fn pinned(&self, index: u32) -> Option<[u8; 32]> {
        self.chunk_ids.get(index as usize).copied().flatten()
    }

    fn record_nonce(index: u32) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[8..].copy_from_slice(&index.to_be_bytes());
        n
    }

    /// The journal record of a pinned chunk, to append to the state file.
    pub fn record(&self, index: u32) -> Option<[u8; STATE_RECORD_LEN]> {
        let hash = self.pinned(index)?;
        let mut buf = Vec::with_capacity(32 + TAG_LEN);
        buf.extend_from_slice(&hash);
        let key = clinvault_hot::Aes256Gcm::new(&self.journal_key);
        if !key.seal_in_place(&Self::record_nonce(index), &self.report_id, &mut buf) {
            return None;
        }
        let mut rec = [0u8; STATE_RECORD_LEN];
        rec[..4].copy_from_slice(&index.to_be_bytes());
        rec[4..].copy_from_slice(&buf);
        Some(rec)
    }

    /// Whether the file on disk still has the recorded length (a cheap first check).
    pub fn matches_len(&self, file_len: u64) -> bool {
        self.file_len == file_len
    }

    /// The state file's header: `MAGIC ‖ nonce ‖ AES-256-GCM(wrap_key, body, AAD)`; the body
    /// holds the DEK and the journal key. Records follow it, appended as chunks are pinned.
    pub fn seal_header(&self, wrap_key: &WrapKey) -> Result<Vec<u8>, SealError> {
        let mut body = Zeroizing::new(Vec::with_capacity(108));
        body.extend_from_slice(&self.report_id);
        body.extend_from_slice(&self.patient_id);
        body.extend_from_slice(&self.chunk_size.to_be_bytes());
        body.extend_from_slice(&self.file_len.to_be_bytes());
        body.extend_from_slice(self.dek.as_bytes());
        body.extend_from_slice(&self.journal_key[..]);
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

    /// The whole state at once: the header and a record per pinned chunk.
    pub fn seal(&self, wrap_key: &WrapKey) -> Result<Vec<u8>, SealError> {
        let mut out = self.seal_header(wrap_key)?;
        for i in 0..self.n_chunks() {
            if self.pinned(i).is_some() {
                let rec = self
                    .record(i)
                    .ok_or_else(|| SealError::malformed("upload state", "could not encrypt"))?;
                out.extend_from_slice(&rec);
            }
        }
        Ok(out)
    }

    /// Reads a state file: its header, then its records. An incomplete last record (a crash
    /// while appending, before its sync) is ignored: the chunk it was for never left. Any
    /// other damage refuses the whole state.
    pub fn open(bytes: &[u8], wrap_key: &WrapKey) -> Result<Self, SealError> {
        let bad = |why: &str| SealError::malformed("upload state", why.to_string());
        if bytes.len() < STATE_HEADER_LEN {
            return Err(bad("truncated"));
        }
        let (header, records) = bytes.split_at(STATE_HEADER_LEN);
        let rest = header
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a clinvault upload state file"))?;
        let (nonce, ct) = rest.split_at(12);
        let mut n = [0u8; 12];
        n.copy_from_slice(nonce);
        let body = Zeroizing::new(
            Aes256Gcm::new(&wrap_key.0.into())
                .decrypt(&Nonce::from(n), Payload { msg: ct, aad: AAD })
                .map_err(|_| bad("cannot be decrypted with this account's key, or altered"))?,
        );
        if body.len() != STATE_HEADER_LEN - 5 - 12 - TAG_LEN {
            return Err(bad("header of the wrong size"));
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
        state.journal_key.copy_from_slice(take(76, 32));
        let key = clinvault_hot::Aes256Gcm::new(&state.journal_key);
        for rec in records.chunks_exact(STATE_RECORD_LEN) {
            let mut ix = [0u8; 4];
            ix.copy_from_slice(&rec[..4]);
            let index = u32::from_be_bytes(ix);
            let mut buf = rec[4..].to_vec();
            key.open_in_place(&Self::record_nonce(index), &state.report_id, &mut buf)
                .map_err(|_| bad("a chunk record is altered"))?;
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&buf);
            match state.chunk_ids.get_mut(index as usize) {
                Some(slot @ None) => *slot = Some(hash),
                Some(Some(_)) => return Err(bad("a chunk is recorded twice")),
                None => return Err(bad("a chunk record past the end of the file")),
            }
        }
        Ok(state)
    }
}
