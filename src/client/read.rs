//! Reading a report into memory, for the terminal client's viewer (issue 14.11): the same
//! checks as a download, but the plaintext never touches the disk. It is held in a
//! `Zeroizing` buffer, and each chunk's own buffer is wiped once copied.

use futures::StreamExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use super::ledger::Ledger;
use super::reports::{VerifiedReport, verify_report};
use super::{ApiClient, ClientError, LoggedIn};
use crate::seal::ReportOpener;

/// A report read through every check: its SHA-256 and size always, its bytes only when asked.
pub struct InMemory {
    pub report: VerifiedReport,
    pub sha256: [u8; 32],
    pub len: u64,
    /// `None` when the caller did not want the bytes, or they exceed its limit.
    pub bytes: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for InMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemory")
            .field("len", &self.len)
            .field("kept", &self.bytes.is_some())
            .finish_non_exhaustive()
    }
}

fn integrity(what: impl std::fmt::Display) -> ClientError {
    ClientError::Integrity(what.to_string())
}

/// Verifies report `id` like a download (manifest, signature, ledger entries, key commitment,
/// every chunk and the chain) and keeps its plaintext in memory when `keep(meta)` says so and
/// the manifest's length is at most `max_keep`; otherwise only hashes it.
pub async fn read(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    id: Uuid,
    transfers: usize,
    max_keep: u64,
    keep: impl FnOnce(&crate::seal::ReportMeta) -> bool,
) -> Result<InMemory, ClientError> {
    let report = verify_report(client, me, ledger, id).await?;
    read_verified(client, report, transfers, max_keep, keep).await
}

/// The chunks of a report already verified up to its key (by [`read`], or by a break-glass
/// read), each checked and opened.
pub(crate) async fn read_verified(
    client: &ApiClient,
    report: VerifiedReport,
    transfers: usize,
    max_keep: u64,
    keep: impl FnOnce(&crate::seal::ReportMeta) -> bool,
) -> Result<InMemory, ClientError> {
    let len = report.manifest.plaintext_len;
    let keep = len <= max_keep && keep(&report.meta);
    let mut ids = Vec::with_capacity(report.detail.chunk_ids.len());
    for c in &report.detail.chunk_ids {
        let mut b = [0u8; 32];
        hex::decode_to_slice(c, &mut b)
            .map_err(|_| integrity("a chunk id is not 64 hex digits"))?;
        ids.push(b);
    }
    let mut opener = ReportOpener::new(report.dek(), &report.manifest)?.with_chunk_ids(ids)?;
    // Sized once from the signed length, so the buffer never reallocates (a reallocation
    // would leave an unwiped copy behind).
    let mut bytes = keep.then(|| Zeroizing::new(Vec::with_capacity(len as usize)));
    let mut hash = Sha256::new();
    let mut stream = futures::stream::iter(report.detail.chunk_ids.clone())
        .enumerate()
        .map(|(i, chunk)| async move {
            let mut wait = std::time::Duration::from_millis(200);
            for attempt in 0.. {
                match client.chunk(&chunk, None).await {
                    Ok(b) => return Ok(b),
                    Err(ClientError::Network(_)) if attempt < 4 => {}
                    Err(ClientError::Server { status, .. })
                        if attempt < 4 && (status == 503 || status == 429) => {}
                    Err(ClientError::Server { message, .. }) => {
                        return Err(integrity(format!("chunk {i}: {message}")));
                    }
                    Err(e) => return Err(e),
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            unreachable!("the loop returns")
        })
        .buffered(transfers.max(1));
    let mut done = 0u64;
    while let Some(chunk) = stream.next().await {
        let mut plain = opener
            .open_next(chunk?.to_vec())
            .map_err(|e| integrity(e.to_string()))?;
        done += plain.len() as u64;
        if done > len {
            plain.zeroize();
            return Err(integrity("the chunks hold more than the manifest's length"));
        }
        hash.update(&plain);
        if let Some(b) = bytes.as_mut() {
            b.extend_from_slice(&plain);
        }
        plain.zeroize();
    }
    opener.finish().map_err(|e| integrity(e.to_string()))?;
    Ok(InMemory {
        report,
        sha256: hash.finalize().into(),
        len: done,
        bytes,
    })
}
