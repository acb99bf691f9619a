//! Reports on the client (DESIGN.md §2, §5): sealing and uploading with resume, downloading
//! with every check before the file appears, grants and codes.
//!
//! Every key used is checked against the ledger first; the server's word alone never leads
//! to a wrap or an opened report.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ledger::Ledger;
use super::{ApiClient, ClientError, LoggedIn};
use crate::api::{
    COMMIT_GRANT_ID, CommitRequest, CommitResponse, Grant, GrantApprove, GrantCreate, GrantList,
    GrantWrap, MissingRequest, MissingResponse, OpenReportRequest, OpenReportResponse, OtpPending,
    OtpPendingList, OtpVerifyRequest, OtpVerifyResponse, ReportDetail, ReportKey, ReportList, Role,
    WrappedKeyIn, consent_message,
};
use crate::ledger::{Entry, GrantHow};
use crate::seal::{
    ChunkSealer, Dek, Manifest, ReportKeys, ReportMeta, ReportOpener, SealError, UploadState,
    fingerprint, open_meta, seal_meta, unwrap_dek, verify_manifest, wrap_dek,
};

fn integrity(what: impl std::fmt::Display) -> ClientError {
    ClientError::Integrity(what.to_string())
}

fn file_err(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::File {
        path: path.display().to_string(),
        source,
    }
}

impl ApiClient {
    pub async fn open_report(
        &self,
        req: &OpenReportRequest,
    ) -> Result<OpenReportResponse, ClientError> {
        self.post("/v1/reports", req).await
    }

    pub async fn put_chunk(
        &self,
        report: Uuid,
        chunk_id: &[u8; 32],
        body: Bytes,
    ) -> Result<(), ClientError> {
        self.call_raw(
            Method::PUT,
            &format!("/v1/reports/{report}/chunks/{}", hex::encode(chunk_id)),
            &[],
            Some(body),
        )
        .await
        .map(|_| ())
    }

    pub async fn missing_chunks(
        &self,
        report: Uuid,
        ids: &[[u8; 32]],
    ) -> Result<Vec<String>, ClientError> {
        let r: MissingResponse = self
            .post(
                &format!("/v1/reports/{report}/missing"),
                &MissingRequest {
                    chunk_ids: ids.iter().map(hex::encode).collect(),
                },
            )
            .await?;
        Ok(r.missing)
    }

    pub async fn commit_report(
        &self,
        report: Uuid,
        req: &CommitRequest,
    ) -> Result<CommitResponse, ClientError> {
        self.post(&format!("/v1/reports/{report}/commit"), req)
            .await
    }

    pub async fn reports(&self, patient: Option<Uuid>) -> Result<ReportList, ClientError> {
        let q: Vec<(&str, String)> = patient
            .map(|p| ("patient", p.to_string()))
            .into_iter()
            .collect();
        self.get("/v1/reports", &q).await
    }

    pub async fn report(&self, id: Uuid) -> Result<ReportDetail, ClientError> {
        self.get(&format!("/v1/reports/{id}"), &[]).await
    }

    pub async fn report_key(&self, id: Uuid) -> Result<ReportKey, ClientError> {
        self.get(&format!("/v1/reports/{id}/key"), &[]).await
    }

    pub async fn chunk(&self, chunk_id: &str, replica: Option<&str>) -> Result<Bytes, ClientError> {
        let q: Vec<(&str, String)> = replica
            .map(|r| ("replica", r.to_string()))
            .into_iter()
            .collect();
        self.call_raw(Method::GET, &format!("/v1/chunks/{chunk_id}"), &q, None)
            .await
    }

    pub async fn otp_verify(
        &self,
        request_id: Uuid,
        code: &str,
    ) -> Result<OtpVerifyResponse, ClientError> {
        self.post(
            "/v1/otp/verify",
            &OtpVerifyRequest {
                request_id,
                code: code.to_string(),
            },
        )
        .await
    }

    pub async fn otp_pending(&self) -> Result<Vec<OtpPending>, ClientError> {
        let l: OtpPendingList = self.get("/v1/otp", &[]).await?;
        Ok(l.pending)
    }

    pub async fn otp_resend(&self, request_id: Uuid) -> Result<OtpPending, ClientError> {
        self.post(
            &format!("/v1/otp/{request_id}/resend"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn grants(&self) -> Result<Vec<Grant>, ClientError> {
        let l: GrantList = self.get("/v1/grants", &[]).await?;
        Ok(l.grants)
    }

    pub async fn grant_request(&self, report_id: Uuid) -> Result<Grant, ClientError> {
        self.post("/v1/grants", &GrantCreate { report_id }).await
    }

    pub async fn grant_revoke(&self, id: Uuid) -> Result<Grant, ClientError> {
        self.post(&format!("/v1/grants/{id}/revoke"), &serde_json::json!({}))
            .await
    }

    async fn grant_wrap_raw(&self, id: Uuid, wrapped: Vec<u8>) -> Result<Grant, ClientError> {
        self.post(&format!("/v1/grants/{id}/wrap"), &GrantWrap { wrapped })
            .await
    }

    async fn grant_approve_raw(
        &self,
        id: Uuid,
        signature: Vec<u8>,
        wrapped: Option<Vec<u8>>,
    ) -> Result<Grant, ClientError> {
        self.post(
            &format!("/v1/grants/{id}/approve"),
            &GrantApprove { signature, wrapped },
        )
        .await
    }
}

// ---------------------------------------------------------------- upload

/// Where an upload stands, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub chunks_done: u32,
    pub chunks_total: u32,
}

pub struct UploadOptions<'a> {
    pub state_dir: &'a Path,
    pub chunk_size: u32,
    pub transfers: usize,
    pub title: String,
    pub note: String,
    /// Set to stop the transfer between chunks; the upload can be resumed later.
    pub cancel: Option<Arc<AtomicBool>>,
    pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
}

#[derive(Debug, Clone)]
pub struct UploadOutcome {
    pub report_id: Uuid,
    pub commit: CommitResponse,
    pub chunks_total: u32,
    /// Chunks sent by this run.
    pub chunks_sent: u32,
    /// Chunks the server already had (a resumed upload).
    pub chunks_skipped: u32,
    /// An earlier interrupted upload of a different input was abandoned.
    pub restarted: bool,
}

/// The saved state of one upload: which report, sealed under the user's `wrap_key`.
fn upload_state_path(state_dir: &Path, server: &str, patient: Uuid, file: &Path) -> PathBuf {
    let canonical = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let mut h = Sha256::new();
    h.update(server.as_bytes());
    h.update([0]);
    h.update(patient.as_bytes());
    h.update(canonical.as_os_str().as_encoded_bytes());
    state_dir
        .join("uploads")
        .join(format!("{}.state", hex::encode(&h.finalize()[..16])))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(file_err(dir))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(file_err(&tmp))?;
    f.write_all(bytes).map_err(file_err(&tmp))?;
    f.sync_all().map_err(file_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(file_err(path))?;
    Ok(())
}

/// Reads chunk `index` of the file into a buffer with room for the tag.
fn read_chunk(
    file: &mut std::fs::File,
    sealer: &ChunkSealer,
    index: u32,
) -> std::io::Result<Vec<u8>> {
    let (offset, len) = sealer
        .chunk_range(index)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut buf = Vec::with_capacity(len + crate::seal::TAG_LEN);
    buf.resize(len, 0);
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// Seals and uploads `file` as a report for `patient`, resuming an interrupted upload of the
/// same file (only after proving every re-sealed chunk unchanged), then commits it with the
/// key wrapped to the patient and to the author.
pub async fn upload(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    patient: Uuid,
    file: &Path,
    opts: &UploadOptions<'_>,
) -> Result<UploadOutcome, ClientError> {
    // Shown to others: nothing that makes the title or note read other than it is.
    crate::text::check_line(&opts.title)
        .map_err(|e| ClientError::Refused(format!("title: {e}")))?;
    crate::text::check_lines(&opts.note).map_err(|e| ClientError::Refused(format!("note: {e}")))?;
    let my_id = me.login.user.id;
    ledger.check_self(my_id, &me.secrets.public()).await?;
    let patient_keys = ledger.user_keys(patient, Some(Role::Patient)).await?;
    let meta_file = std::fs::metadata(file).map_err(file_err(file))?;
    if !meta_file.is_file() {
        return Err(ClientError::Refused(format!(
            "{} is not a file",
            file.display()
        )));
    }
    let file_len = meta_file.len();
    let state_path = upload_state_path(opts.state_dir, client.base_url().as_str(), patient, file);

    let mut restarted = false;
    loop {
        // An earlier state for this file, if it still fits; else a new report.
        let mut state = match std::fs::read(&state_path) {
            Ok(bytes) => match UploadState::open(&bytes, &me.wrap_key) {
                Ok(s) if s.matches_len(file_len) && s.patient_id == *patient.as_bytes() => Some(s),
                _ => {
                    restarted = true;
                    None
                }
            },
            Err(_) => None,
        };
        let fresh = state.is_none();
        let st = match state.take() {
            Some(s) => s,
            None => UploadState::new(
                *Uuid::new_v4().as_bytes(),
                *patient.as_bytes(),
                opts.chunk_size,
                file_len,
                Dek::generate()?,
            )?,
        };
        if fresh {
            // Saved before anything is sent: a crash from here on resumes this report.
            write_private(&state_path, &st.seal(&me.wrap_key)?)?;
        }
        match upload_once(
            client,
            me,
            st,
            &state_path,
            file,
            &patient_keys.public_keys.x25519,
            opts,
        )
        .await
        {
            Err(ClientError::Seal(SealError::InputChanged { chunk })) => {
                tracing::warn!(
                    chunk,
                    "the file changed since the interrupted upload; starting a new report"
                );
                let _ = std::fs::remove_file(&state_path);
                restarted = true;
                continue;
            }
            Err(e) => return Err(e),
            Ok(mut outcome) => {
                let _ = std::fs::remove_file(&state_path);
                outcome.restarted = restarted;
                return Ok(outcome);
            }
        }
    }
}

/// A sealed chunk on its way from the sealing thread to the senders.
type Sealed = (u32, [u8; 32], Bytes, u64);

/// The sealing side of an upload, on its own thread: reads the file chunk by chunk, pins each
/// chunk's plaintext in the saved state (written to disk before that chunk's ciphertext
/// exists), seals, and hands chunks on. Returns the state when done.
fn seal_chunks(
    mut st: UploadState,
    wrap_key: crate::seal::WrapKey,
    state_path: PathBuf,
    file: PathBuf,
    batch: u32,
    tx: tokio::sync::mpsc::Sender<Sealed>,
) -> Result<UploadState, ClientError> {
    let sealer = ChunkSealer::new(st.dek(), st.report_id, st.chunk_size, st.file_len)?;
    let n = sealer.n_chunks();
    let mut fh = std::fs::File::open(&file).map_err(file_err(&file))?;
    let mut start = 0u32;
    while start < n {
        let end = (start + batch).min(n);
        let mut plain = Vec::with_capacity((end - start) as usize);
        let mut pinned_new = false;
        for i in start..end {
            let buf = read_chunk(&mut fh, &sealer, i).map_err(file_err(&file))?;
            let before = st.sealed_count();
            st.pin(i, &buf)?;
            pinned_new |= st.sealed_count() != before;
            plain.push((i, buf));
        }
        if pinned_new {
            write_private(&state_path, &st.seal(&wrap_key)?)?;
        }
        for (i, buf) in plain {
            let len = buf.len() as u64;
            let c = sealer.seal(i, buf)?;
            if tx
                .blocking_send((i, c.chunk_id, Bytes::from(c.ciphertext), len))
                .is_err()
            {
                // The sending side stopped (cancelled or failed): so do we.
                return Ok(st);
            }
        }
        start = end;
    }
    Ok(st)
}

async fn upload_once(
    client: &ApiClient,
    me: &LoggedIn,
    st: UploadState,
    state_path: &Path,
    file: &Path,
    patient_x25519: &[u8; 32],
    opts: &UploadOptions<'_>,
) -> Result<UploadOutcome, ClientError> {
    let report_id = Uuid::from_bytes(st.report_id);
    let patient = Uuid::from_bytes(st.patient_id);
    let opened = client
        .open_report(&OpenReportRequest {
            report_id,
            patient_id: patient,
            chunk_size: st.chunk_size,
            plaintext_len: st.file_len,
        })
        .await?;
    // A fresh report has nothing on the server: no need to ask what is missing.
    let resuming = opened.chunks_present > 0;
    let n = crate::seal::expected_chunks(st.file_len, st.chunk_size)?;
    let mut progress = Progress {
        bytes_total: st.file_len,
        chunks_total: n,
        ..Progress::default()
    };
    let transfers = opts.transfers.max(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Sealed>(transfers);
    let sealing = {
        let (wrap_key, state_path, file) = (
            me.wrap_key.clone(),
            state_path.to_path_buf(),
            file.to_path_buf(),
        );
        let batch = (transfers * 2).clamp(2, 32) as u32;
        // On failure the thread ends, the channel closes, and its error comes from the join.
        tokio::task::spawn_blocking(move || seal_chunks(st, wrap_key, state_path, file, batch, tx))
    };
    let cancelled = || {
        opts.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };
    let mut ids: Vec<Option<[u8; 32]>> = vec![None; n as usize];
    let (mut sent, mut skipped) = (0u32, 0u32);
    let slots = Arc::new(tokio::sync::Semaphore::new(transfers));
    let mut sending: tokio::task::JoinSet<Result<u64, ClientError>> = tokio::task::JoinSet::new();
    let outcome: Result<(), ClientError> = async {
        let finish = |r: Result<Result<u64, ClientError>, tokio::task::JoinError>,
                      progress: &mut Progress,
                      sent: &mut u32|
         -> Result<(), ClientError> {
            let len = r.map_err(|e| ClientError::Refused(format!("upload task: {e}")))??;
            *sent += 1;
            progress.bytes_done += len;
            progress.chunks_done += 1;
            if let Some(p) = opts.progress {
                p(*progress);
            }
            Ok(())
        };
        while let Some(item) = rx.recv().await {
            if cancelled() {
                return Err(ClientError::Cancelled);
            }
            let (i, id, ct, len) = item;
            ids[i as usize] = Some(id);
            if resuming && client.missing_chunks(report_id, &[id]).await?.is_empty() {
                skipped += 1;
                progress.bytes_done += len;
                progress.chunks_done += 1;
                continue;
            }
            let permit = slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ClientError::Cancelled)?;
            let c = client.clone();
            sending.spawn(async move {
                let r = put_with_retry(&c, report_id, &id, ct).await.map(|()| len);
                drop(permit);
                r
            });
            while let Some(done) = sending.try_join_next() {
                finish(done, &mut progress, &mut sent)?;
                if cancelled() {
                    return Err(ClientError::Cancelled);
                }
            }
        }
        while let Some(done) = sending.join_next().await {
            finish(done, &mut progress, &mut sent)?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        sending.abort_all();
        drop(rx);
        // The sealing thread stops at its next chunk; its state file is already on disk.
        let _ = sealing.await;
        return Err(e);
    }
    let st = sealing
        .await
        .map_err(|e| ClientError::Refused(format!("sealing task: {e}")))??;
    let ids: Vec<[u8; 32]> = ids
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| ClientError::Refused("the sealing thread stopped early".into()))?;
    let sealer = ChunkSealer::new(st.dek(), st.report_id, st.chunk_size, st.file_len)?;

    // The commit: manifest, signature, metadata, chunk order, wrapped keys.
    let summary = sealer.summary(&ids)?;
    let keys = ReportKeys::derive(st.dek(), &st.report_id);
    let meta_blob = seal_meta(
        &keys,
        &st.report_id,
        &ReportMeta {
            title: opts.title.clone(),
            file_name: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            media_type: String::new(),
            note: opts.note.clone(),
        },
    )?;
    let manifest = Manifest {
        report_id: st.report_id,
        patient_id: st.patient_id,
        author_id: *me.login.user.id.as_bytes(),
        created_at_ms: chrono::Utc::now().timestamp_millis(),
        plaintext_len: summary.plaintext_len,
        chunk_size: summary.chunk_size,
        n_chunks: summary.n_chunks,
        head: summary.head,
        meta_hash: crate::seal::meta_hash(&meta_blob),
        key_commit: summary.key_commit,
    };
    let signature = manifest.sign(me.secrets.signing_key());
    let my_id = me.login.user.id;
    let wrapped_patient = wrap_dek(st.dek(), &st.report_id, &st.patient_id, patient_x25519)?;
    let wrapped_me = wrap_dek(
        st.dek(),
        &st.report_id,
        my_id.as_bytes(),
        &me.secrets.public().x25519,
    )?;
    let commit = client
        .commit_report(
            report_id,
            &CommitRequest {
                manifest: manifest.to_bytes().to_vec(),
                signature: signature.to_vec(),
                meta: meta_blob,
                chunk_ids: ids.iter().map(hex::encode).collect(),
                wrapped_keys: vec![
                    WrappedKeyIn {
                        reader_id: patient,
                        wrapped: wrapped_patient.to_vec(),
                    },
                    WrappedKeyIn {
                        reader_id: my_id,
                        wrapped: wrapped_me.to_vec(),
                    },
                ],
            },
        )
        .await?;
    Ok(UploadOutcome {
        report_id,
        commit,
        chunks_total: n,
        chunks_sent: sent,
        chunks_skipped: skipped,
        restarted: false,
    })
}

/// Network blips and busy answers are retried a few times; refusals are not.
async fn put_with_retry(
    client: &ApiClient,
    report: Uuid,
    id: &[u8; 32],
    body: Bytes,
) -> Result<(), ClientError> {
    let mut wait = std::time::Duration::from_millis(200);
    for attempt in 0.. {
        match client.put_chunk(report, id, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 4 && retryable(&e) => {
                tracing::warn!(error = %e, attempt, "chunk upload failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Network(_) => true,
        ClientError::Server { status, .. } => *status == 503 || *status == 429,
        _ => false,
    }
}

// ---------------------------------------------------------------- download and verify

/// A report whose manifest, signature, commit entry, wrapped key and key commitment all
/// checked out, ready to open.
pub struct VerifiedReport {
    pub detail: ReportDetail,
    pub manifest: Manifest,
    pub meta: ReportMeta,
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
    let detail = client.report(id).await?;
    let author = detail.summary.author_id;
    let author_keys = ledger.user_keys(author, Some(Role::Doctor)).await?;
    let manifest = verify_manifest(
        &detail.manifest,
        &detail.signature,
        &author_keys.public_keys.ed25519,
    )
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
    match ledger
        .checked_entry(detail.ledger_index, &detail.commit_entry)
        .await?
    {
        Entry::ReportCommitted {
            report_id,
            manifest_hash: h,
            signature,
            ..
        } if report_id == *id.as_bytes()
            && h == manifest_hash
            && signature.as_slice() == detail.signature.as_slice() => {}
        _ => {
            return Err(ClientError::Ledger(format!(
                "the ledger's commit entry for report {id} does not match its manifest"
            )));
        }
    }
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
                    && wrapper_id == manifest.patient_id)) => {}
        _ => {
            return Err(ClientError::Ledger(format!(
                "the key the server handed over for report {id} is not the one recorded in the ledger"
            )));
        }
    }
    let dek = unwrap_dek(&key.wrapped, id.as_bytes(), my_id.as_bytes(), &me.secrets)
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
        dek,
        chunk_ids,
    })
}

/// Streams the report's chunks, verifying each, into `sink`; `progress` after each.
async fn open_chunks(
    client: &ApiClient,
    report: &VerifiedReport,
    transfers: usize,
    cancel: Option<&Arc<AtomicBool>>,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
    mut sink: impl FnMut(&[u8]) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    let opener = ReportOpener::new(&report.dek, &report.manifest)?
        .with_chunk_ids(report.chunk_ids.clone())?;
    let mut opener = opener;
    let mut p = Progress {
        bytes_total: report.manifest.plaintext_len,
        chunks_total: report.manifest.n_chunks,
        ..Progress::default()
    };
    let mut stream = futures::stream::iter(report.detail.chunk_ids.clone())
        .enumerate()
        .map(|(i, id)| async move {
            let mut wait = std::time::Duration::from_millis(200);
            let mut attempt = 0;
            loop {
                let max = super::chunk_ciphertext_len(
                    &report.manifest,
                    u32::try_from(i).unwrap_or(u32::MAX),
                );
                match client.chunk_limited(&id, None, max).await {
                    Ok(b) => return Ok(b),
                    Err(e) if attempt < 4 && retryable(&e) => {
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                    Err(ClientError::Server { message, .. }) => {
                        return Err(integrity(format!("chunk {i}: {message}")));
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .buffered(transfers.max(1));
    while let Some(bytes) = stream.next().await {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(ClientError::Cancelled);
        }
        let bytes = bytes?;
        let plain = opener
            .open_next(bytes.to_vec())
            .map_err(|e| integrity(e.to_string()))?;
        sink(&plain)?;
        p.bytes_done += plain.len() as u64;
        p.chunks_done += 1;
        if let Some(f) = progress {
            f(p);
        }
    }
    opener.finish().map_err(|e| integrity(e.to_string()))
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
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .ok_or_else(|| ClientError::Refused(format!("{} is not a file name", out.display())))?;
    let mut pending = super::output::PendingOutput::create(dir, &name.to_string_lossy())
        .map_err(file_err(dir))?;
    open_chunks(
        client,
        &report,
        opts.transfers,
        opts.cancel,
        opts.progress,
        |plain| pending.file().write_all(plain).map_err(file_err(out)),
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
    open_chunks(client, &report, transfers, None, None, |_| Ok(())).await?;
    Ok(report)
}

// ---------------------------------------------------------------- grants

/// What a key holder sees before confirming a wrap.
#[derive(Debug, Clone)]
pub struct WrapCheck {
    pub grant: Grant,
    pub how: GrantHow,
    pub reader_name: String,
    pub reader_fingerprint: String,
    reader_x25519: [u8; 32],
}

/// Checks a grant before any key is wrapped for it: its approval must be in the ledger (a
/// grant approved only in the database is refused), a patient's direct approval must carry
/// their signature, and the reader's key must be the one the ledger registered.
pub async fn check_grant_for_wrap(
    client: &ApiClient,
    ledger: &Ledger,
    grant_id: Uuid,
) -> Result<WrapCheck, ClientError> {
    let grant = client
        .grants()
        .await?
        .into_iter()
        .find(|g| g.id == grant_id)
        .ok_or_else(|| ClientError::Refused(format!("no grant {grant_id} visible to you")))?;
    if grant.status != "approved" {
        return Err(ClientError::Refused(format!(
            "grant {grant_id} is {}; only an approved grant gets a key",
            grant.status
        )));
    }
    let (Some(index), Some(entry)) = (grant.approval_index, grant.approval_entry.as_ref()) else {
        return Err(ClientError::Ledger(format!(
            "grant {grant_id} has no approval in the ledger; refusing to wrap a key for it"
        )));
    };
    let how = match ledger.checked_entry(index, entry).await? {
        Entry::GrantApproved {
            grant_id: g,
            report_id,
            reader_id,
            how,
            ..
        } if g == *grant.id.as_bytes()
            && report_id == *grant.report_id.as_bytes()
            && reader_id == *grant.reader_id.as_bytes() =>
        {
            how
        }
        _ => {
            return Err(ClientError::Ledger(format!(
                "the ledger's approval entry does not match grant {grant_id}; refusing to wrap"
            )));
        }
    };
    if how == GrantHow::SignedByPatient {
        let patient = ledger
            .user_keys(grant.patient_id, Some(Role::Patient))
            .await?;
        let message = consent_message(
            &grant.id,
            &grant.report_id,
            &grant.reader_id,
            grant.expires_at.timestamp_millis(),
        );
        let ok = grant
            .consent_signature
            .as_deref()
            .and_then(|s| ed25519_dalek::Signature::from_slice(s).ok())
            .zip(ed25519_dalek::VerifyingKey::from_bytes(&patient.public_keys.ed25519).ok())
            .is_some_and(|(s, k)| k.verify_strict(&message, &s).is_ok());
        if !ok {
            return Err(ClientError::Ledger(format!(
                "grant {grant_id} claims the patient's signed consent, but the signature does not verify"
            )));
        }
    }
    let reader = ledger
        .user_keys(grant.reader_id, Some(Role::Doctor))
        .await?;
    Ok(WrapCheck {
        reader_name: reader.name.clone(),
        reader_fingerprint: fingerprint(&reader.public_keys),
        reader_x25519: reader.public_keys.x25519,
        how,
        grant,
    })
}

/// Wraps the report's key to the checked reader and signs nothing else: the server records
/// the wrap in the ledger.
pub async fn confirm_wrap(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    check: &WrapCheck,
) -> Result<Grant, ClientError> {
    let report = verify_report(client, me, ledger, check.grant.report_id).await?;
    let wrapped = wrap_dek(
        report.dek(),
        check.grant.report_id.as_bytes(),
        check.grant.reader_id.as_bytes(),
        &check.reader_x25519,
    )?;
    client
        .grant_wrap_raw(check.grant.id, wrapped.to_vec())
        .await
}

/// The patient approves a request in their own client: checks the reader's key and their own
/// copy of the report, wraps the key, and only then sends consent and wrap together (the
/// server stores both or neither).
pub async fn approve_and_wrap(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &mut Ledger,
    grant_id: Uuid,
) -> Result<Grant, ClientError> {
    let grant = client
        .grants()
        .await?
        .into_iter()
        .find(|g| g.id == grant_id)
        .ok_or_else(|| ClientError::Refused(format!("no grant {grant_id} visible to you")))?;
    if grant.patient_id != me.login.user.id {
        return Err(ClientError::Refused(
            "only the report's patient approves a grant".into(),
        ));
    }
    if grant.status != "requested" {
        return Err(ClientError::Refused(format!(
            "grant {grant_id} is {}; only a requested grant can be approved",
            grant.status
        )));
    }
    ledger.refresh().await?;
    let reader = ledger
        .user_keys(grant.reader_id, Some(Role::Doctor))
        .await?;
    let report = verify_report(client, me, ledger, grant.report_id).await?;
    let wrapped = wrap_dek(
        report.dek(),
        grant.report_id.as_bytes(),
        grant.reader_id.as_bytes(),
        &reader.public_keys.x25519,
    )?;
    let message = consent_message(
        &grant.id,
        &grant.report_id,
        &grant.reader_id,
        grant.expires_at.timestamp_millis(),
    );
    use ed25519_dalek::Signer;
    let signature = me.secrets.signing_key().sign(&message).to_bytes();
    client
        .grant_approve_raw(grant_id, signature.to_vec(), Some(wrapped.to_vec()))
        .await
}
