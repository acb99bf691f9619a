//! Downloading and verifying a report (DESIGN.md §2, §5): every check before the file appears.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ledger::Ledger;
use super::reports::{Progress, file_err, integrity, retryable};
use super::{ApiClient, ClientError, LoggedIn};
use crate::api::{COMMIT_GRANT_ID, ReportDetail, Role};
use crate::ledger::Entry;
use crate::seal::{
    Dek, Manifest, ReportKeys, ReportMeta, ReportOpener, open_meta, unwrap_dek, verify_manifest,
};

/// A report whose manifest, signature, commit entry, wrapped key and key commitment all
/// checked out, ready to open.
pub struct VerifiedReport {
    pub detail: ReportDetail,
    pub manifest: Manifest,
    pub meta: ReportMeta,
    /// Issue 16: for a station's report, the station and the ordering doctor, as the ledger
    /// shows them.
    pub origin: Option<super::station::StationOrigin>,
    dek: Dek,
    chunk_ids: Vec<[u8; 32]>,
}

impl std::fmt::Debug for VerifiedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedReport")
            .field("id", &self.detail.summary.id)
            .finish_non_exhaustive()
    }
}

impl VerifiedReport {
    pub fn dek(&self) -> &Dek {
        &self.dek
    }
}

/// Every check short of the chunks: the author's key and the report's commit in the ledger,
/// the manifest's signature, the wrapped key's ledger entry, and the key commitment.
pub async fn verify_report(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    id: Uuid,
) -> Result<VerifiedReport, ClientError> {
    let my_id = me.login.user.id;
    let (detail, manifest, origin) = verify_detail(client, ledger, id).await?;
    let key = client.report_key(id).await?;
    let wrapped_hash: [u8; 32] = Sha256::digest(&key.wrapped).into();
    match ledger
        .checked_entry(key.wrap_index, &key.wrap_entry)
        .await?
    {
        Entry::KeyWrapped {
            grant_id,
            report_id,
            reader_id,
            wrapper_id,
            wrapped_key_hash,
            ..
        } if report_id == *id.as_bytes()
            && reader_id == *my_id.as_bytes()
            && wrapped_key_hash == wrapped_hash
            && wrapper_id == *key.wrapper_id.as_bytes()
            && (wrapper_id == manifest.author_id
                || (grant_id != COMMIT_GRANT_ID.into_bytes()
                    && wrapper_id == manifest.patient_id)) =>
        {
            // A station's commit wraps go to the patient and the ordering doctor only.
            if let Some(o) = &origin
                && grant_id == COMMIT_GRANT_ID.into_bytes()
                && my_id != detail.summary.patient_id
                && my_id != o.doctor_id
            {
                return Err(ClientError::Ledger(format!(
                    "report {id}: a station wrapped its key to you, but its order is for another doctor"
                )));
            }
            // A key given through a grant holds only while the ledger says the grant does
            // (issue 17): not after the expiry it records, not after a revocation entry.
            if grant_id != COMMIT_GRANT_ID.into_bytes() {
                super::grants::check_grant_in_force(
                    client,
                    ledger,
                    Uuid::from_bytes(grant_id),
                    my_id,
                )
                .await?;
            }
        }
        _ => {
            return Err(ClientError::Ledger(format!(
                "the key the server handed over for report {id} is not the one recorded in the ledger"
            )));
        }
    }
    open_with_key(detail, manifest, origin, &key.wrapped, me)
}

/// The checks that need no key: the author's key and the report's commit in the ledger, the
/// manifest's signature and what it names, and a station's order (issue 16).
pub(crate) async fn verify_detail(
    client: &ApiClient,
    ledger: &Ledger,
    id: Uuid,
) -> Result<
    (
        ReportDetail,
        Manifest,
        Option<super::station::StationOrigin>,
    ),
    ClientError,
> {
    let detail = client.report(id).await?;
    let author = detail.summary.author_id;
    // The key the author held at the commit: a later rotation (issue 15) does not unsign it.
    let (author_keys, author_key) = ledger.signer_at(author, None, detail.ledger_index).await?;
    if !matches!(author_keys.role, Role::Doctor | Role::Station) {
        return Err(ClientError::Ledger(format!(
            "report {id} is signed by a {} account; only doctors and stations write reports",
            author_keys.role
        )));
    }
    let manifest = verify_manifest(&detail.manifest, &detail.signature, &author_key)
        .map_err(|e| integrity(format!("manifest of report {id}: {e}")))?;
    if manifest.report_id != *id.as_bytes()
        || manifest.author_id != *author.as_bytes()
        || manifest.patient_id != *detail.summary.patient_id.as_bytes()
    {
        return Err(integrity(format!(
            "the manifest of report {id} names another report, author or patient"
        )));
    }
    let manifest_hash: [u8; 32] = Sha256::digest(&detail.manifest).into();
    let commit_ms = match ledger
        .checked_entry(detail.ledger_index, &detail.commit_entry)
        .await?
    {
        Entry::ReportCommitted {
            time_ms,
            report_id,
            manifest_hash: h,
            signature,
        } if report_id == *id.as_bytes()
            && h == manifest_hash
            && signature.as_slice() == detail.signature.as_slice() =>
        {
            time_ms
        }
        _ => {
            return Err(ClientError::Ledger(format!(
                "the ledger's commit entry for report {id} does not match its manifest"
            )));
        }
    };
    let origin = if author_keys.role == Role::Station {
        Some(
            super::station::verify_origin(
                client,
                ledger,
                id,
                &author_keys,
                detail.summary.patient_id,
                (detail.ledger_index, commit_ms),
            )
            .await?,
        )
    } else {
        None
    };
    Ok((detail, manifest, origin))
}

/// With a wrapped key the caller has checked against the ledger: unwrap it, check the key
/// commitment and open the metadata.
pub(crate) fn open_with_key(
    detail: ReportDetail,
    manifest: Manifest,
    origin: Option<super::station::StationOrigin>,
    wrapped: &[u8],
    me: &LoggedIn,
) -> Result<VerifiedReport, ClientError> {
    // Checked against the requested id by `verify_detail`.
    let id = Uuid::from_bytes(manifest.report_id);
    let my_id = me.login.user.id;
    let dek = unwrap_dek(wrapped, id.as_bytes(), my_id.as_bytes(), &me.secrets)
        .map_err(|e| integrity(format!("report {id}: your wrapped key: {e}")))?;
    let keys = ReportKeys::derive(&dek, id.as_bytes());
    keys.check_commit(&manifest.key_commit)
        .map_err(|e| integrity(format!("report {id}: {e}")))?;
    let meta = open_meta(&keys, id.as_bytes(), &detail.meta)
        .map_err(|e| integrity(format!("report {id}: metadata: {e}")))?;
    if crate::seal::meta_hash(&detail.meta) != manifest.meta_hash {
        return Err(integrity(format!(
            "report {id}: metadata does not match the manifest"
        )));
    }
    let mut chunk_ids = Vec::with_capacity(detail.chunk_ids.len());
    for c in &detail.chunk_ids {
        let mut b = [0u8; 32];
        hex::decode_to_slice(c, &mut b)
            .map_err(|_| integrity("a chunk id is not 64 hex digits"))?;
        chunk_ids.push(b);
    }
    Ok(VerifiedReport {
        detail,
        manifest,
        meta,
        origin,
        dek,
        chunk_ids,
    })
}

/// Fetches chunk `index`, retrying network blips and busy answers.
/// The answer is refused unread past `max_len`, the length the manifest implies for `index`.
async fn fetch_chunk(
    client: &ApiClient,
    report: Uuid,
    index: u32,
    max_len: usize,
) -> Result<Bytes, ClientError> {
    let mut wait = std::time::Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        match client.report_chunk(report, index, max_len).await {
            Ok(b) => return Ok(b),
            Err(e) if attempt < 4 && retryable(&e) => {
                attempt += 1;
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(ClientError::Server { message, .. }) => {
                return Err(integrity(format!("chunk {index}: {message}")));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Fetches, verifies and opens every chunk, `transfers` at a time: each chunk is fetched by a
/// spawned task, opened on the blocking pool (chunk id against the verified list, AES-GCM with
/// its index and last flag: one hash per chunk) and written at its offset in `out`, so chunks
/// finish in any order. Every chunk must open: the list was checked against the manifest's
/// count and chain head, and each chunk's length against the manifest, before this runs.
async fn open_chunks(
    client: &ApiClient,
    report: &VerifiedReport,
    transfers: usize,
    cancel: Option<&Arc<AtomicBool>>,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
    out: Option<(std::fs::File, &Path)>,
) -> Result<(), ClientError> {
    let opener = Arc::new(
        ReportOpener::new(&report.dek, &report.manifest)?
            .with_chunk_ids(report.chunk_ids.clone())?,
    );
    let n = report.manifest.n_chunks;
    let chunk_size = u64::from(report.manifest.chunk_size);
    let id = report.detail.summary.id;
    let out = match out {
        Some((file, path)) => {
            // Pre-sized: every chunk lands at its own offset, in whatever order it arrives.
            file.set_len(report.manifest.plaintext_len)
                .map_err(file_err(path))?;
            // Written past the page cache where the filesystem and the chunk size allow it.
            let direct = chunk_size
                .is_multiple_of(crate::direct_io::ALIGN as u64)
                .then(|| crate::direct_io::reopen_direct(&file))
                .flatten();
            Some(Arc::new(Output {
                file,
                direct,
                path: path.to_path_buf(),
            }))
        }
        None => None,
    };
    let mut p = Progress {
        bytes_total: report.manifest.plaintext_len,
        chunks_total: n,
        ..Progress::default()
    };
    let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let mut tasks: tokio::task::JoinSet<Result<u64, ClientError>> = tokio::task::JoinSet::new();
    let mut next = 0u32;
    let limit = transfers.max(1);
    loop {
        while next < n && tasks.len() < limit {
            if cancelled() {
                return Err(ClientError::Cancelled);
            }
            let (c, opener, out, index) = (client.clone(), opener.clone(), out.clone(), next);
            let max_len = super::chunk_ciphertext_len(&report.manifest, index);
            tasks.spawn(async move {
                let bytes = fetch_chunk(&c, id, index, max_len).await?;
                tokio::task::spawn_blocking(move || {
                    // Without a copy when the body's buffer is ours alone.
                    let plain = opener
                        .open_chunk(index, Vec::from(bytes))
                        .map_err(|e| integrity(e.to_string()))?;
                    if let Some(out) = &out {
                        out.write_at(&plain, u64::from(index) * chunk_size)?;
                    }
                    Ok(plain.len() as u64)
                })
                .await
                .map_err(|e| ClientError::Refused(format!("opening task: {e}")))?
            });
            next += 1;
        }
        // Dropping `tasks` on an early return aborts the fetches still running.
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let len = done.map_err(|e| ClientError::Refused(format!("download task: {e}")))??;
        p.bytes_done += len;
        p.chunks_done += 1;
        if let Some(f) = progress {
            f(p);
        }
        if cancelled() {
            return Err(ClientError::Cancelled);
        }
    }
    if p.chunks_done != n || p.bytes_done != report.manifest.plaintext_len {
        return Err(integrity(format!(
            "{} of {n} chunks, {} of {} bytes opened",
            p.chunks_done, p.bytes_done, report.manifest.plaintext_len
        )));
    }
    if let Some(out) = &out
        && out.direct.is_some()
    {
        // The last chunk went in padded to whole blocks: cut the file to the report's length.
        out.file
            .set_len(report.manifest.plaintext_len)
            .map_err(file_err(&out.path))?;
    }
    Ok(())
}

/// Where a download's plaintext goes: the pending output file, and another handle on it with
/// `O_DIRECT` when the filesystem takes it and chunks start on block boundaries.
struct Output {
    file: std::fs::File,
    direct: Option<std::fs::File>,
    path: PathBuf,
}

impl Output {
    fn write_at(&self, plain: &[u8], offset: u64) -> Result<(), ClientError> {
        crate::direct_io::write_at(&self.file, self.direct.as_ref(), plain, offset)
            .map_err(file_err(&self.path))
    }
}

/// How a download runs: chunks in flight, a cancel flag, a progress callback.
#[derive(Clone, Copy)]
pub struct TransferOptions<'a> {
    pub transfers: usize,
    pub cancel: Option<&'a Arc<AtomicBool>>,
    pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
}

impl TransferOptions<'_> {
    pub fn new(transfers: usize) -> Self {
        TransferOptions {
            transfers,
            cancel: None,
            progress: None,
        }
    }
}

/// Downloads a report to `out`: an unnamed temporary file in its folder (`output`), linked into
/// place only after every chunk, the chain, the signature, the key commitment and the ledger
/// entries verify, and never over an existing file. On any failure, or if the process is
/// interrupted, nothing appears at `out` and no plaintext stays behind.
pub async fn download(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    id: Uuid,
    out: &Path,
    opts: &TransferOptions<'_>,
) -> Result<VerifiedReport, ClientError> {
    let report = verify_report(client, me, ledger, id).await?;
    let (dir, name) = super::output::target_parts(out)?;
    let pending = super::output::PendingOutput::create(dir, &name).map_err(file_err(dir))?;
    let file = pending.positional().map_err(file_err(out))?;
    open_chunks(
        client,
        &report,
        opts.transfers,
        opts.cancel,
        opts.progress,
        Some((file, out)),
    )
    .await?;
    pending.persist(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ClientError::Refused(format!(
                "{} appeared meanwhile; it was left as it is",
                out.display()
            ))
        } else {
            file_err(out)(e)
        }
    })?;
    Ok(report)
}

/// Every check of a download, without writing anything.
pub async fn verify(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    id: Uuid,
    transfers: usize,
) -> Result<VerifiedReport, ClientError> {
    let report = verify_report(client, me, ledger, id).await?;
    open_chunks(client, &report, transfers, None, None, None).await?;
    Ok(report)
}
