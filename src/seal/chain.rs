//! The SHA-256 hash chain over chunk ids. Needs no key: an auditor verifies it from ciphertexts.

use super::{ChunkCheck, Id, SealError, chunk_id, sha256};

const CHAIN_PREFIX: &[u8] = b"clinvault/chain/v1";

/// Running hash chain: `link_0 = H("clinvault/chain/v1" ‖ report_id ‖ id_0)`,
/// `link_i = H(link_{i-1} ‖ id_i)`.
#[derive(Debug, Clone)]
pub struct Chain {
    report_id: Id,
    link: Option<[u8; 32]>,
    len: u32,
}

impl Chain {
    pub fn new(report_id: Id) -> Self {
        Chain {
            report_id,
            link: None,
            len: 0,
        }
    }

    /// Appends the next chunk id and returns the new link.
    pub fn push(&mut self, chunk_id: &[u8; 32]) -> [u8; 32] {
        let link = match &self.link {
            None => sha256(&[CHAIN_PREFIX, &self.report_id, chunk_id]),
            Some(prev) => sha256(&[prev, chunk_id]),
        };
        self.link = Some(link);
        self.len = self.len.saturating_add(1);
        link
    }

    /// The head (last link), or `None` before the first chunk.
    pub fn head(&self) -> Option<[u8; 32]> {
        self.link
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Head of the chain over an ordered list of chunk ids (`None` for an empty list, which no
/// valid report has: an empty report is one empty chunk).
pub fn chain_head(report_id: &Id, chunk_ids: &[[u8; 32]]) -> Option<[u8; 32]> {
    let mut chain = Chain::new(*report_id);
    for id in chunk_ids {
        chain.push(id);
    }
    chain.head()
}

/// Keyless check of stored ciphertexts against a manifest's head and count: each chunk's
/// SHA-256 must equal its listed id, and the chain over the ids must end at `head`.
/// `ciphertexts` yields `(index, bytes)` in order; the first fault is named.
pub fn verify_chain<'a>(
    report_id: &Id,
    head: &[u8; 32],
    chunk_ids: &[[u8; 32]],
    ciphertexts: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), SealError> {
    if chain_head(report_id, chunk_ids).as_ref() != Some(head) {
        return Err(SealError::ChainHead);
    }
    let mut seen = 0usize;
    for (i, ct) in ciphertexts.into_iter().enumerate() {
        let index = u32::try_from(i).map_err(|_| SealError::TooManyChunks)?;
        let Some(expected) = chunk_ids.get(i) else {
            return Err(SealError::Integrity {
                chunk: index,
                check: ChunkCheck::Unexpected,
            });
        };
        if &chunk_id(ct) != expected {
            return Err(SealError::Integrity {
                chunk: index,
                check: ChunkCheck::ChunkId,
            });
        }
        seen += 1;
    }
    if seen < chunk_ids.len() {
        return Err(SealError::Integrity {
            chunk: u32::try_from(seen).map_err(|_| SealError::TooManyChunks)?,
            check: ChunkCheck::Missing,
        });
    }
    Ok(())
}
