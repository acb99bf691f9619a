//! One chunk: AES-256-GCM under the report's chunk key, STREAM-style nonce, report-bound AAD.

use clinvault_hot::Aes256Gcm;

use super::{ChunkCheck, Id, ReportKeys, SealError, TAG_LEN, sha256};

const CHUNK_AAD_PREFIX: &[u8] = b"clinvault/chunk/v1";

/// A sealed chunk as it is stored: content-addressed by `chunk_id = SHA-256(ciphertext)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedChunk {
    pub index: u32,
    pub chunk_id: [u8; 32],
    /// Ciphertext including the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// `SHA-256(ciphertext)`: a chunk's storage address.
pub fn chunk_id(ciphertext: &[u8]) -> [u8; 32] {
    sha256(&[ciphertext])
}

/// Nonce of chunk `index`: the index as 11 big-endian bytes, then 1 for the last chunk, else 0.
pub fn chunk_nonce(index: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[7..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// The per-report chunk cipher. Stateless per chunk and `Sync`: chunks seal and open in
/// parallel on every core.
pub struct ChunkCipher {
    aead: Aes256Gcm,
    aad: [u8; 18 + 16],
}

impl ChunkCipher {
    pub fn new(keys: &ReportKeys, report_id: &Id) -> Self {
        let mut aad = [0u8; 34];
        aad[..18].copy_from_slice(CHUNK_AAD_PREFIX);
        aad[18..].copy_from_slice(report_id);
        ChunkCipher {
            aead: Aes256Gcm::new(&keys.chunk_key),
            aad,
        }
    }

    /// Seals `buf` (the plaintext) in place; reserve [`TAG_LEN`] spare capacity to avoid a copy.
    pub fn seal_in_place(&self, index: u32, mut buf: Vec<u8>, last: bool) -> SealedChunk {
        // Only fails past AES-GCM's 64 GiB message limit; chunks are at most 16 MiB.
        if !self
            .aead
            .seal_in_place(&chunk_nonce(index, last), &self.aad, &mut buf)
        {
            unreachable!("chunk over AES-GCM's message limit");
        }
        SealedChunk {
            index,
            chunk_id: chunk_id(&buf),
            ciphertext: buf,
        }
    }

    pub fn seal(&self, index: u32, plaintext: &[u8], last: bool) -> SealedChunk {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(index, buf, last)
    }

    /// Authenticates and decrypts chunk `index` in place; the buffer becomes the plaintext.
    pub fn open_in_place(
        &self,
        index: u32,
        buf: &mut Vec<u8>,
        last: bool,
    ) -> Result<(), SealError> {
        if buf.len() < TAG_LEN {
            return Err(SealError::Integrity {
                chunk: index,
                check: ChunkCheck::Length,
            });
        }
        self.aead
            .open_in_place(&chunk_nonce(index, last), &self.aad, buf)
            .map_err(|_| SealError::Integrity {
                chunk: index,
                check: ChunkCheck::Authentication,
            })
    }

    pub fn open(&self, index: u32, ciphertext: &[u8], last: bool) -> Result<Vec<u8>, SealError> {
        let mut buf = ciphertext.to_vec();
        self.open_in_place(index, &mut buf, last)?;
        Ok(buf)
    }
}
