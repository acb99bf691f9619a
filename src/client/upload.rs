//! Sealing and uploading a report (DESIGN.md §2, §5), resuming an interrupted upload of the
//! same file only after proving every re-sealed chunk unchanged.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ledger::Ledger;
use super::reports::{Progress, file_err, retryable};
use super::{ApiClient, ClientError, LoggedIn};
use crate::api::{CommitRequest, CommitResponse, OpenReportRequest, Role, WrappedKeyIn};
use crate::seal::{
    ChunkSealer, Dek, Manifest, ReportKeys, ReportMeta, SealError, UploadState, seal_meta, wrap_dek,
};

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

/// One writer per upload state (issue 17 point 11): two processes resuming the same state
/// while the file changes could pin different plaintexts for one chunk index. The lock is held
/// for the whole upload and released when the file closes, however the process ends.
fn lock_state(state_path: &Path) -> Result<std::fs::File, ClientError> {
    let dir = state_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(file_err(dir))?;
    let lock_path = state_path.with_extension("lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(file_err(&lock_path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(ClientError::Refused(
            "another clinvault process is uploading this file for this patient; let it finish \
             (or stop it) and try again"
                .into(),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(file_err(&lock_path)(e)),
    }
}

/// The saved state, if there is one; a link at its name is refused, not followed.
fn read_state(state_path: &Path) -> Result<Option<Vec<u8>>, ClientError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(state_path);
    match f {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(file_err(state_path))?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(state_path)(e)),
    }
}

/// The resume journal, open for appending: a sealed header, then one fixed-size record per
/// pinned chunk, each batch synced (one fdatasync) before its chunks leave.
fn journal(state_path: &Path, fresh_header: Option<&[u8]>) -> Result<std::fs::File, ClientError> {
    if let Some(header) = fresh_header {
        // Temporary file created new (never through a link), synced, renamed into place.
        crate::fsutil::write_private_atomic(state_path, header).map_err(file_err(state_path))?;
    }
    let f = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(state_path)
        .map_err(file_err(state_path))?;
    // A record torn by a crash (ignored when the state was read) is cut off, so that the
    // records appended now stay aligned.
    let len = f.metadata().map_err(file_err(state_path))?.len();
    let header = crate::seal::STATE_HEADER_LEN as u64;
    let record = crate::seal::STATE_RECORD_LEN as u64;
    if len > header && !(len - header).is_multiple_of(record) {
        f.set_len(header + (len - header) / record * record)
            .map_err(file_err(state_path))?;
    }
    Ok(f)
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
    upload_to(
        client,
        me,
        ledger,
        patient,
        file,
        opts,
        UploadTarget::default(),
    )
    .await
}

/// Issue 16: who gets the key besides the patient, and the report's id.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadTarget {
    /// The second reader (id, ledger-checked X25519 key) instead of the author: a station
    /// wraps to the ordering doctor, never to itself.
    pub co_reader: Option<(Uuid, [u8; 32])>,
    /// A fixed report id (a watch folder's per-file id) instead of a random one.
    pub report_id: Option<Uuid>,
}

/// The resume state of a committed or refused upload holds the report key sealed under the
/// user's key: overwritten and synced before it is removed (issue 16: a station keeps no
/// usable copy of a key after commit).
fn wipe_state(state_path: &Path) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(state_path)
        && let Ok(m) = f.metadata()
    {
        // The sealed key is in the header, at the start: the first MiB covers it.
        let zeros = vec![0u8; usize::try_from(m.len()).unwrap_or(0).min(1 << 20)];
        if f.write_all(&zeros).and_then(|()| f.sync_data()).is_err() {
            tracing::warn!(path = %state_path.display(), "could not overwrite the upload state");
        }
    }
    let _ = std::fs::remove_file(state_path);
}

/// [`upload`] with the second reader and the report id given (issue 16).
pub async fn upload_to(
    client: &ApiClient,
    me: &LoggedIn,
    ledger: &Ledger,
    patient: Uuid,
    file: &Path,
    opts: &UploadOptions<'_>,
    target: UploadTarget,
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
    let _lock = lock_state(&state_path)?;

    let mut restarted = false;
    loop {
        // An earlier state for this file, if it still fits; else a new report.
        let mut state = match read_state(&state_path)? {
            Some(bytes) => match UploadState::open(&bytes, &me.wrap_key) {
                Ok(s)
                    if s.matches_len(file_len)
                        && s.patient_id == *patient.as_bytes()
                        && target
                            .report_id
                            .is_none_or(|id| s.report_id == *id.as_bytes()) =>
                {
                    Some(s)
                }
                _ => {
                    restarted = true;
                    None
                }
            },
            None => None,
        };
        let fresh = state.is_none();
        let st = match state.take() {
            Some(s) => s,
            None => UploadState::new(
                *target.report_id.unwrap_or_else(Uuid::new_v4).as_bytes(),
                *patient.as_bytes(),
                opts.chunk_size,
                file_len,
                Dek::generate()?,
            )?,
        };
        // Saved before anything is sent: a crash from here on resumes this report.
        let header = if fresh {
            Some(st.seal(&me.wrap_key)?)
        } else {
            None
        };
        let journal = journal(&state_path, header.as_deref())?;
        // For the emergency escrow after the commit (issue 16); wiped on drop.
        let dek = st.dek().clone();
        match upload_once(
            client,
            me,
            st,
            journal,
            file,
            &patient_keys.public_keys.x25519,
            opts,
            target.co_reader,
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
            Err(e) => {
                // Committed already, or the id is taken: this state can never resume.
                if e.code() == Some(crate::api::codes::REPORT_NOT_OPEN) {
                    wipe_state(&state_path);
                }
                return Err(e);
            }
            Ok(mut outcome) => {
                wipe_state(&state_path);
                super::emergency::escrow_after_commit(client, me, ledger, outcome.report_id, &dek)
                    .await;
                outcome.restarted = restarted;
                return Ok(outcome);
            }
        }
    }
}

/// Chunk buffers reused across an upload (issue 13 point 1): a buffer goes back to the pool when
/// the last handle of its ciphertext is dropped (its PUT finished), so in steady state no chunk
/// buffer is allocated and none is zero-filled. At most `keep` idle buffers are kept, the most
/// the pipeline can hold at once, so the pool never grows past what the upload needs.
struct BufPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
    /// Capacity of every buffer: a whole chunk and its tag.
    size: usize,
    keep: usize,
    /// Buffers allocated over the pool's life: at most `keep` plus a few when reuse works.
    made: std::sync::atomic::AtomicUsize,
}

impl BufPool {
    fn new(size: usize, keep: usize) -> Arc<Self> {
        Arc::new(Self {
            free: std::sync::Mutex::new(Vec::with_capacity(keep)),
            size,
            keep,
            made: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A buffer of exactly `len` bytes (at most `size`) whose contents are to be overwritten.
    fn take(&self, len: usize) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        // A fresh buffer comes from the allocator already zeroed (calloc: untouched pages),
        // not zero-filled here; a reused one keeps its old bytes, overwritten by the read.
        let mut buf = reused.unwrap_or_else(|| {
            self.made.fetch_add(1, Ordering::Relaxed);
            vec![0u8; self.size]
        });
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf.truncate(len);
        buf
    }

    fn give(&self, buf: Vec<u8>) {
        // Only whole-size buffers come back; the lock is never poisoned by this code, but a
        // poisoned one just lets the buffer be freed.
        if buf.capacity() >= self.size
            && let Ok(mut f) = self.free.lock()
            && f.len() < self.keep
        {
            f.push(buf);
        }
    }

    /// The ciphertext as shared bytes whose buffer returns here once every clone is gone.
    fn share(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::clone(self),
        })
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// A sealed chunk on its way from the sealing thread to the senders.
type Sealed = (u32, [u8; 32], Bytes, u64);

/// A chunk read and sealed, not yet pinned.
type Unpinned = (u32, crate::seal::SealedChunk);

/// The sealing side of an upload, on its own thread: per batch, reads (positional) and seals
/// the chunks on every core (one SHA-256 pass: the chunk id), pins each chunk id in the state and
/// appends the new records to the journal with one sync, and only then hands the batch's
/// ciphertexts on. Returns the state when done.
fn seal_chunks(
    mut st: UploadState,
    mut journal: std::fs::File,
    file: PathBuf,
    batch: u32,
    pool: Arc<BufPool>,
    tx: tokio::sync::mpsc::Sender<Sealed>,
) -> Result<UploadState, ClientError> {
    use rayon::prelude::*;
    use std::os::unix::fs::FileExt;
    let sealer = ChunkSealer::new(st.dek(), st.report_id, st.chunk_size, st.file_len)?;
    let n = sealer.n_chunks();
    let fh = std::fs::File::open(&file).map_err(file_err(&file))?;
    let mut start = 0u32;
    while start < n {
        let end = (start + batch).min(n);
        // A chunk sealed here but refused by its pin below never leaves this thread: only
        // pinned ciphertexts are sent.
        let done: Vec<Result<Unpinned, ClientError>> = (start..end)
            .into_par_iter()
            .map(|i| {
                let (offset, len) = sealer.chunk_range(i)?;
                let mut buf = pool.take(len);
                fh.read_exact_at(&mut buf, offset)
                    .map_err(file_err(&file))?;
                Ok((i, sealer.seal(i, buf)?))
            })
            .collect();
        let mut records = Vec::new();
        let mut out = Vec::with_capacity(done.len());
        for r in done {
            let (i, sealed) = r?;
            if st.pin_chunk_id(i, sealed.chunk_id)? {
                records.extend_from_slice(&st.record(i).ok_or_else(|| {
                    ClientError::Refused("could not seal the upload state".into())
                })?);
            }
            out.push(sealed);
        }
        if !records.is_empty() {
            journal.write_all(&records).map_err(file_err(&file))?;
            journal.sync_data().map_err(file_err(&file))?;
        }
        for c in out {
            let len = (c.ciphertext.len() - crate::seal::TAG_LEN) as u64;
            if tx
                .blocking_send((c.index, c.chunk_id, pool.share(c.ciphertext), len))
                .is_err()
            {
                // The sending side stopped (cancelled or failed): so do we.
                return Ok(st);
            }
        }
        start = end;
    }
    tracing::debug!(
        chunks = n,
        buffers = pool.made.load(Ordering::Relaxed),
        "chunk buffers allocated"
    );
    Ok(st)
}

#[allow(clippy::too_many_arguments)]
async fn upload_once(
    client: &ApiClient,
    me: &LoggedIn,
    st: UploadState,
    journal: std::fs::File,
    file: &Path,
    patient_x25519: &[u8; 32],
    opts: &UploadOptions<'_>,
    co_reader: Option<(Uuid, [u8; 32])>,
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
    let batch = (transfers * 2).clamp(2, 32);
    // Buffers alive at once: a batch being sealed, the channel, a batch grouped for
    // `missing`, the PUTs in flight.
    let pool = BufPool::new(
        st.chunk_size as usize + crate::seal::TAG_LEN,
        2 * batch + 2 * transfers + 1,
    );
    let sealing = {
        let file = file.to_path_buf();
        // On failure the thread ends, the channel closes, and its error comes from the join.
        tokio::task::spawn_blocking(move || seal_chunks(st, journal, file, batch as u32, pool, tx))
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
        while let Some(first) = rx.recv().await {
            // What the sealer has ready, up to a batch: one `missing` question for all of it.
            let mut group = vec![first];
            while group.len() < batch {
                match rx.try_recv() {
                    Ok(item) => group.push(item),
                    Err(_) => break,
                }
            }
            let missing: Option<std::collections::HashSet<String>> = if resuming {
                let asked: Vec<[u8; 32]> = group.iter().map(|g| g.1).collect();
                Some(
                    client
                        .missing_chunks(report_id, &asked)
                        .await?
                        .into_iter()
                        .collect(),
                )
            } else {
                None
            };
            for item in group {
                if cancelled() {
                    return Err(ClientError::Cancelled);
                }
                let (i, id, ct, len) = item;
                ids[i as usize] = Some(id);
                if missing
                    .as_ref()
                    .is_some_and(|m| !m.contains(&hex::encode(id)))
                {
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
        // The sealing thread stops at its next batch; its journal is already on disk.
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
    let (my_id, my_x25519) = co_reader.unwrap_or((me.login.user.id, me.secrets.public().x25519));
    let wrapped_patient = wrap_dek(st.dek(), &st.report_id, &st.patient_id, patient_x25519)?;
    let wrapped_me = wrap_dek(st.dek(), &st.report_id, my_id.as_bytes(), &my_x25519)?;
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

#[cfg(test)]
mod tests {
    use super::BufPool;
    use std::sync::atomic::Ordering;

    /// The sealing side of a real upload, its output dropped as a finished PUT would: 65
    /// chunks go through no more buffers than the pipeline holds at once.
    #[test]
    fn sealing_65_chunks_reuses_a_bounded_set_of_buffers() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("report.bin");
        let data: Vec<u8> = (0..64 * 4096 + 100).map(|i| (i % 251) as u8).collect();
        std::fs::File::create(&file)
            .and_then(|mut f| f.write_all(&data))
            .expect("write input");
        let st = crate::seal::UploadState::new(
            [1; 16],
            [2; 16],
            4096,
            data.len() as u64,
            crate::seal::Dek::generate().expect("dek"),
        )
        .expect("state");
        let journal = tempfile::tempfile().expect("journal");
        let (batch, transfers) = (4usize, 1usize);
        let pool = BufPool::new(4096 + crate::seal::TAG_LEN, 2 * batch + 2 * transfers + 1);
        let (tx, mut rx) = tokio::sync::mpsc::channel(transfers);
        let sealing = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                super::seal_chunks(st, journal, file, batch as u32, pool, tx).map(|_| ())
            })
        };
        let mut seen = 0u32;
        let mut total = 0u64;
        while let Some((index, _id, ct, len)) = rx.blocking_recv() {
            assert_eq!(index, seen, "chunks arrive in order");
            assert_eq!(ct.len() as u64, len + crate::seal::TAG_LEN as u64);
            seen += 1;
            total += len;
            drop(ct);
        }
        sealing.join().expect("sealing thread").expect("sealing");
        assert_eq!((seen, total), (65, data.len() as u64));
        let made = pool.made.load(Ordering::Relaxed);
        assert!(
            made <= pool.keep,
            "{made} buffers for 65 chunks (keep {})",
            pool.keep
        );
    }

    #[test]
    fn pool_reuses_a_buffer_once_its_bytes_are_dropped() {
        let pool = BufPool::new(4096 + 16, 2);
        let mut buf = pool.take(4096);
        assert_eq!(buf.len(), 4096);
        buf.extend_from_slice(&[7u8; 16]);
        let ptr = buf.as_ptr();
        let shared = pool.share(buf);
        let clone = shared.clone();
        drop(shared);
        // A retry still holds the body: the buffer is not back yet.
        let other = pool.take(4096);
        assert_ne!(other.as_ptr(), ptr);
        drop(clone);
        // Counted, not only compared by address: the allocator may hand a freed address out.
        let made = pool.made.load(Ordering::Relaxed);
        let again = pool.take(100);
        assert_eq!(
            pool.made.load(Ordering::Relaxed),
            made,
            "the returned buffer is reused"
        );
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(
            again.len(),
            100,
            "a shorter last chunk gets exactly its length"
        );
    }

    #[test]
    fn pool_keeps_at_most_its_bound_and_grows_a_short_buffer() {
        let pool = BufPool::new(64, 2);
        let bufs: Vec<Vec<u8>> = (0..5).map(|_| pool.take(64)).collect();
        for b in bufs {
            pool.give(b);
        }
        assert_eq!(pool.free.lock().map(|f| f.len()).unwrap_or(0), 2);
        // A buffer last used for a short chunk serves a whole one at full length.
        let mut short = pool.take(10);
        short.truncate(3);
        pool.give(short);
        while pool.free.lock().map(|f| f.len()).unwrap_or(0) > 1 {
            let _ = pool.free.lock().map(|mut f| f.remove(0));
        }
        assert_eq!(pool.take(64).len(), 64);
        // A foreign, smaller buffer is not kept.
        pool.give(Vec::with_capacity(8));
        assert!(
            pool.free
                .lock()
                .map(|f| f.iter().all(|b| b.capacity() >= 64))
                .unwrap_or(false)
        );
    }
}
