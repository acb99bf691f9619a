//! Exporting a report as a bundle: everything comes through the client's verified paths
//! (`verify_report`, the ledger view, the author's checked keys), and the finished bundle is
//! run through the offline verifier before the caller writes it.

use std::io::Write;
use std::path::Path;

use uuid::Uuid;

use super::format::{Bundle, MAX_BUNDLE_LEN, ProvenEntry, StationEvidence};
use super::verify::{BundleError, Trust, Verified, check};
use crate::api::{LedgerHead, LedgerProof, Role};
use crate::client::ledger::Ledger;
use crate::client::reports::{integrity, retryable};
use crate::client::{ApiClient, ClientError, JSON_LIMIT, LoggedIn, chunk_ciphertext_len};

/// A bundle's bytes, checked offline against the exporter's own ledger key and witnesses
/// (`verified` holds the evidence, not the plaintext).
pub struct Exported {
    pub bytes: Vec<u8>,
    pub verified: Verified,
}

impl std::fmt::Debug for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exported")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Builds the bundle of report `id` for its patient or its author. The bundle holds the
/// report key in clear: handing the file over is handing over the report.
pub async fn export(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &mut Ledger,
    id: Uuid,
) -> Result<Exported, ClientError> {
    // On the heap: the whole read-and-check chain in one future is too deep for the TUI's
    // task stack in a debug build.
    Box::pin(export_boxed(client, me, ledger, id)).await
}

async fn export_boxed(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &mut Ledger,
    id: Uuid,
) -> Result<Exported, ClientError> {
    let report = crate::client::reports::verify_report(client, me, ledger, id).await?;
    let m = &report.manifest;
    let my = *me.login.user.id.as_bytes();
    if my != m.patient_id && my != m.author_id {
        return Err(ClientError::Refused(format!(
            "only the patient or the author of report {id} may export it: a bundle discloses its \
             key to whoever holds the file"
        )));
    }
    // The chunks, their 5-byte section headers and at most ~24 KiB of the rest.
    let estimate = m
        .plaintext_len
        .saturating_add(u64::from(m.n_chunks) * 21)
        .saturating_add(24 * 1024);
    if estimate > MAX_BUNDLE_LEN {
        return Err(ClientError::Refused(format!(
            "report {id} is too large for a bundle ({} bytes; bundles hold at most {} MiB)",
            m.plaintext_len,
            MAX_BUNDLE_LEN >> 20
        )));
    }
    let mut chunks = Vec::with_capacity(m.n_chunks as usize);
    for index in 0..m.n_chunks {
        chunks.push(fetch_chunk(client, id, index, chunk_ciphertext_len(m, index)).await?);
    }
    // `verify_report` checked the author is a doctor or a station, and for a station the
    // order (`report.origin`) against the ledger.
    let author = ledger
        .user_keys(report.detail.summary.author_id, None)
        .await?;
    let station_order = match (&author.role, &report.origin) {
        (Role::Doctor, None) => None,
        (Role::Station, Some(origin)) => {
            let order = client.report_order(id).await?;
            if order.id != origin.order_id || order.ledger_index != origin.order_index {
                return Err(integrity(format!(
                    "report {id}: the server now names another order than the one just checked"
                )));
            }
            let doctor = ledger
                .user_keys(origin.doctor_id, Some(Role::Doctor))
                .await?;
            Some((order, doctor))
        }
        _ => {
            return Err(integrity(format!(
                "report {id}: its author is a {} account; only a doctor's or a station's report \
                 can be exported",
                author.role
            )));
        }
    };
    let checkpoint = head_with_checkpoint(client, ledger).await?;
    let size = ledger.head().tree_size;
    let station = match station_order {
        Some((order, doctor)) => Some(StationEvidence {
            order_entry: ProvenEntry {
                index: order.ledger_index,
                proof: proof(client, order.ledger_index, size).await?,
                entry: order.entry,
            },
            doctor_key_entry: ProvenEntry {
                index: doctor.key_index,
                proof: proof(client, doctor.key_index, size).await?,
                entry: doctor.key_entry,
            },
        }),
        None => None,
    };
    let bundle = Bundle {
        manifest: report.detail.manifest.clone(),
        signature: report
            .detail
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| integrity("the manifest signature is not 64 bytes"))?,
        meta: report.detail.meta.clone(),
        key_entry: ProvenEntry {
            index: author.key_index,
            entry: author.key_entry.clone(),
            proof: proof(client, author.key_index, size).await?,
        },
        commit_entry: ProvenEntry {
            index: report.detail.ledger_index,
            entry: report.detail.commit_entry.clone(),
            proof: proof(client, report.detail.ledger_index, size).await?,
        },
        station,
        signed_head: ledger.head().to_bytes().to_vec(),
        checkpoint,
        dek: *report.dek().as_bytes(),
        chunks,
    };
    let bytes = bundle.to_bytes();
    drop(bundle);
    let trust = Trust {
        ledger_key: *ledger.key(),
        witnesses: ledger.policy().witnesses.clone(),
        quorum: ledger.policy().quorum,
    };
    // What is checked is what will be written: the encoded file, decoded again. No plaintext
    // is kept, so the peak is about twice the bundle's size.
    let verified = Bundle::from_bytes(&bytes)
        .map_err(BundleError::from)
        .and_then(|b| check(&b, &trust))
        .map_err(|e| integrity(format!("the bundle of report {id} does not verify: {e}")))?;
    Ok(Exported { bytes, verified })
}

/// The checkpoint of the head `ledger` verified. The server re-signs when the tree grows
/// (reading the key just appended an entry), so the view is moved to the newest head first,
/// checked for consistency as every sync is.
async fn head_with_checkpoint(
    client: &ApiClient,
    ledger: &mut Ledger,
) -> Result<String, ClientError> {
    for _ in 0..5 {
        ledger.refresh().await?;
        let answer: LedgerHead = client
            .get_limited("/v1/ledger/head", &[], JSON_LIMIT)
            .await?;
        if answer.signed_head == ledger.head().to_bytes() {
            return Ok(answer.checkpoint);
        }
    }
    Err(ClientError::Refused(
        "the ledger kept growing while the bundle was made; try again".into(),
    ))
}

/// The inclusion proof of entry `index` in the tree of `size` entries (checked offline later).
async fn proof(client: &ApiClient, index: u64, size: u64) -> Result<Vec<[u8; 32]>, ClientError> {
    let p: LedgerProof = client
        .get_limited(
            "/v1/ledger/inclusion",
            &[("index", index.to_string()), ("size", size.to_string())],
            JSON_LIMIT,
        )
        .await?;
    p.hashes
        .iter()
        .map(|h| {
            h.as_slice().try_into().map_err(|_| {
                ClientError::Ledger(format!(
                    "the inclusion proof of entry {index} has a hash that is not 32 bytes"
                ))
            })
        })
        .collect()
}

/// Chunk `index`, retrying network blips and busy answers; refused unread past `max_len`.
async fn fetch_chunk(
    client: &ApiClient,
    report: Uuid,
    index: u32,
    max_len: usize,
) -> Result<Vec<u8>, ClientError> {
    let mut wait = std::time::Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        match client.report_chunk(report, index, max_len).await {
            Ok(b) => return Ok(b.to_vec()),
            Err(e) if attempt < 4 && retryable(&e) => {
                attempt += 1;
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes `bytes` to `out` through an invisible temporary file (mode 0600) linked into place
/// at the end: never half-written, never over an existing file. For bundles and for the
/// plaintext a verified bundle gives.
pub fn write_new_file(out: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let file_err = |e: std::io::Error| ClientError::File {
        path: out.display().to_string(),
        source: e,
    };
    let (dir, name) = crate::client::output::target_parts(out)?;
    let mut pending = crate::client::output::PendingOutput::create(dir, &name).map_err(file_err)?;
    pending.file().write_all(bytes).map_err(file_err)?;
    pending.persist(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ClientError::Refused(format!(
                "{} exists; it was left as it is (choose another name)",
                out.display()
            ))
        } else {
            file_err(e)
        }
    })
}
