//! Streaming sealing and opening of whole reports, chunk by chunk.
//!
//! Sealing reads from any `Read` with memory bounded by the chunk size. A client that drives
//! chunks itself (async reads, several in flight) uses [`ChunkCipher`] and [`Chain`] directly
//! with [`expected_chunks`] to know which chunk is last; this module is built the same way.

use std::io::{ErrorKind, Read};

use rayon::prelude::*;

use super::{
    Chain, ChunkCheck, ChunkCipher, Dek, Id, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, Manifest, ReportKeys,
    SealError, SealedChunk, TAG_LEN, chunk_id,
};

/// Number of chunks a report of `plaintext_len` bytes has: an exact multiple gives no extra
/// chunk, and an empty report is one empty chunk.
pub fn expected_chunks(plaintext_len: u64, chunk_size: u32) -> Result<u32, SealError> {
    check_chunk_size(chunk_size)?;
    let n = plaintext_len.div_ceil(u64::from(chunk_size)).max(1);
    u32::try_from(n).map_err(|_| SealError::TooManyChunks)
}

fn check_chunk_size(chunk_size: u32) -> Result<(), SealError> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        Ok(())
    } else {
        Err(SealError::ChunkSize(chunk_size.into()))
    }
}

/// What the manifest needs from a finished sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSummary {
    pub report_id: Id,
    pub plaintext_len: u64,
    pub chunk_size: u32,
    pub n_chunks: u32,
    pub head: [u8; 32],
    pub key_commit: [u8; 32],
}

/// Reads until `buf` holds `want` bytes or the input ends.
fn read_up_to(reader: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<()> {
    while buf.len() < want {
        let start = buf.len();
        buf.resize(want, 0);
        match reader.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                return Ok(());
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) if e.kind() == ErrorKind::Interrupted => buf.truncate(start),
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Cuts a `Read` into plaintext chunks, telling which is last by reading one byte ahead
/// (so memory stays at one chunk, not two).
struct Chunker<R> {
    reader: R,
    chunk_size: usize,
    carry: Option<u8>,
    next_index: u32,
    total: u64,
    done: bool,
    failed: bool,
}

impl<R: Read> Chunker<R> {
    /// The next `(index, plaintext with TAG_LEN spare capacity, last)`. After an error it
    /// yields nothing more: a failed read never turns into a shorter report.
    fn next_plain(&mut self) -> Result<Option<(u32, Vec<u8>, bool)>, SealError> {
        if self.done {
            return Ok(None);
        }
        let result = self.read_next();
        if result.is_err() {
            self.done = true;
            self.failed = true;
        }
        result.map(Some)
    }

    fn read_next(&mut self) -> Result<(u32, Vec<u8>, bool), SealError> {
        let mut buf = Vec::with_capacity(self.chunk_size + TAG_LEN);
        if let Some(b) = self.carry.take() {
            buf.push(b);
        }
        read_up_to(&mut self.reader, &mut buf, self.chunk_size)?;
        let mut last = buf.len() < self.chunk_size;
        if !last {
            let mut probe = Vec::with_capacity(1);
            read_up_to(&mut self.reader, &mut probe, 1)?;
            match probe.first() {
                Some(&b) => self.carry = Some(b),
                None => last = true,
            }
        }
        let index = self.next_index;
        if !last {
            self.next_index = index.checked_add(1).ok_or(SealError::TooManyChunks)?;
        }
        self.total += buf.len() as u64;
        self.done = last;
        Ok((index, buf, last))
    }
}

/// Seals a report from any `Read`, one chunk at a time, in order.
pub struct ReportSealer<R> {
    cipher: ChunkCipher,
    key_commit: [u8; 32],
    report_id: Id,
    chunk_size: u32,
    chunker: Chunker<R>,
    chain: Chain,
}

impl<R: Read> ReportSealer<R> {
    pub fn new(dek: &Dek, report_id: Id, chunk_size: u32, reader: R) -> Result<Self, SealError> {
        check_chunk_size(chunk_size)?;
        let keys = ReportKeys::derive(dek, &report_id);
        Ok(ReportSealer {
            cipher: ChunkCipher::new(&keys, &report_id),
            key_commit: keys.key_commit(),
            report_id,
            chunk_size,
            chunker: Chunker {
                reader,
                chunk_size: chunk_size as usize,
                carry: None,
                next_index: 0,
                total: 0,
                done: false,
                failed: false,
            },
            chain: Chain::new(report_id),
        })
    }

    /// The next sealed chunk, or `None` once the last one has been returned.
    pub fn next_chunk(&mut self) -> Result<Option<SealedChunk>, SealError> {
        let Some((index, buf, last)) = self.chunker.next_plain()? else {
            return Ok(None);
        };
        let sealed = self.cipher.seal_in_place(index, buf, last);
        self.chain.push(&sealed.chunk_id);
        Ok(Some(sealed))
    }

    /// The summary for the manifest; errors if chunks remain unread.
    pub fn finish(self) -> Result<SealSummary, SealError> {
        summary(
            &self.chunker,
            &self.chain,
            self.report_id,
            self.chunk_size,
            self.key_commit,
        )
    }
}

fn summary<R>(
    chunker: &Chunker<R>,
    chain: &Chain,
    report_id: Id,
    chunk_size: u32,
    key_commit: [u8; 32],
) -> Result<SealSummary, SealError> {
    match (chunker.done && !chunker.failed, chain.head()) {
        (true, Some(head)) => Ok(SealSummary {
            report_id,
            plaintext_len: chunker.total,
            chunk_size,
            n_chunks: chain.len(),
            head,
            key_commit,
        }),
        _ => Err(SealError::malformed(
            "sealing",
            "finish called before the last chunk was sealed, or after a failed read",
        )),
    }
}

impl<R: Read> Iterator for ReportSealer<R> {
    type Item = Result<SealedChunk, SealError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

/// Seals any chunk of a report whose length is known up front (a file): the form a client
/// drives itself, reading chunks asynchronously and sealing several at once in any order.
pub struct ChunkSealer {
    cipher: ChunkCipher,
    key_commit: [u8; 32],
    report_id: Id,
    chunk_size: u32,
    plaintext_len: u64,
    n_chunks: u32,
}

impl ChunkSealer {
    pub fn new(
        dek: &Dek,
        report_id: Id,
        chunk_size: u32,
        plaintext_len: u64,
    ) -> Result<Self, SealError> {
        let n_chunks = expected_chunks(plaintext_len, chunk_size)?;
        let keys = ReportKeys::derive(dek, &report_id);
        Ok(ChunkSealer {
            cipher: ChunkCipher::new(&keys, &report_id),
            key_commit: keys.key_commit(),
            report_id,
            chunk_size,
            plaintext_len,
            n_chunks,
        })
    }

    pub fn n_chunks(&self) -> u32 {
        self.n_chunks
    }

    pub fn key_commit(&self) -> [u8; 32] {
        self.key_commit
    }

    /// Byte offset and length of chunk `index` in the plaintext.
    pub fn chunk_range(&self, index: u32) -> Result<(u64, usize), SealError> {
        if index >= self.n_chunks {
            return Err(SealError::Integrity {
                chunk: index,
                check: ChunkCheck::Unexpected,
            });
        }
        let offset = u64::from(index) * u64::from(self.chunk_size);
        let len = (self.plaintext_len - offset).min(u64::from(self.chunk_size));
        Ok((offset, len as usize))
    }

    /// Seals chunk `index` from its plaintext (give the buffer [`TAG_LEN`] spare capacity).
    /// A buffer of the wrong length is refused: the input changed since the plan was made.
    pub fn seal(&self, index: u32, plaintext: Vec<u8>) -> Result<SealedChunk, SealError> {
        let (_, len) = self.chunk_range(index)?;
        if plaintext.len() != len {
            return Err(SealError::Integrity {
                chunk: index,
                check: ChunkCheck::Length,
            });
        }
        Ok(self
            .cipher
            .seal_in_place(index, plaintext, index + 1 == self.n_chunks))
    }

    /// The manifest's figures from the chunk ids, in order.
    pub fn summary(&self, chunk_ids: &[[u8; 32]]) -> Result<SealSummary, SealError> {
        if chunk_ids.len() != self.n_chunks as usize {
            return Err(SealError::Integrity {
                chunk: u32::try_from(chunk_ids.len()).map_err(|_| SealError::TooManyChunks)?,
                check: ChunkCheck::Missing,
            });
        }
        let head = super::chain_head(&self.report_id, chunk_ids).ok_or(SealError::ChainHead)?;
        Ok(SealSummary {
            report_id: self.report_id,
            plaintext_len: self.plaintext_len,
            chunk_size: self.chunk_size,
            n_chunks: self.n_chunks,
            head,
            key_commit: self.key_commit,
        })
    }
}

/// Seals on every core: reads `batch` chunks, seals them in parallel, hands them to `sink` in
/// order. Memory is O(chunk_size × batch).
pub fn seal_parallel<R: Read>(
    dek: &Dek,
    report_id: Id,
    chunk_size: u32,
    reader: R,
    batch: usize,
    mut sink: impl FnMut(SealedChunk) -> Result<(), SealError>,
) -> Result<SealSummary, SealError> {
    let mut sealer = ReportSealer::new(dek, report_id, chunk_size, reader)?;
    let batch = batch.max(1);
    loop {
        let mut plains = Vec::with_capacity(batch);
        while plains.len() < batch {
            match sealer.chunker.next_plain()? {
                Some(p) => plains.push(p),
                None => break,
            }
        }
        if plains.is_empty() {
            break;
        }
        let cipher = &sealer.cipher;
        let sealed: Vec<SealedChunk> = plains
            .into_par_iter()
            .map(|(index, buf, last)| cipher.seal_in_place(index, buf, last))
            .collect();
        for chunk in sealed {
            sealer.chain.push(&chunk.chunk_id);
            sink(chunk)?;
        }
    }
    sealer.finish()
}

/// Seals a file of known length into `out` (the sealed chunks back to back, in order) as a
/// three-stage pipeline: one thread reads chunks with positional reads into pooled buffers,
/// `workers` threads seal them (AES-GCM and chunk id), and the calling thread writes them in
/// order and extends the chain. Channels are bounded and buffers come back to the pool after
/// their write, so memory stays at about `2 × workers + 2` chunks, without a per-chunk
/// allocation or a read ahead to find the last chunk (the length says which is last).
///
/// A file that changes length while it is read fails with an integrity error rather than
/// seal a report other than the one its length announced.
pub fn seal_file(
    dek: &Dek,
    report_id: Id,
    chunk_size: u32,
    input: &std::fs::File,
    workers: usize,
    out: &mut impl std::io::Write,
) -> Result<SealSummary, SealError> {
    use std::os::unix::fs::FileExt;
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
    use std::sync::{Arc, Mutex};

    let len = input.metadata()?.len();
    let sealer = ChunkSealer::new(dek, report_id, chunk_size, len)?;
    let n = sealer.n_chunks();
    let workers = workers.max(1);
    let depth = 2 * workers + 2;
    // The pool: every buffer the pipeline will ever use, made once.
    let (pool_tx, pool_rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = sync_channel(depth);
    for _ in 0..depth {
        let _ = pool_tx.send(Vec::with_capacity(chunk_size as usize + TAG_LEN));
    }
    let (read_tx, read_rx) = sync_channel::<(u32, Vec<u8>)>(workers);
    let read_rx = Arc::new(Mutex::new(read_rx));
    let (sealed_tx, sealed_rx) = sync_channel::<Result<SealedChunk, SealError>>(workers);
    let sealer = &sealer;
    // `move`: on an early return the channels' ends drop with the closure, so every stage
    // thread wakes and ends before the scope joins them.
    std::thread::scope(move |scope| {
        // Stage 1: read.
        let reader_sealed_tx = sealed_tx.clone();
        scope.spawn(move || {
            for index in 0..n {
                let Ok(mut buf) = pool_rx.recv() else { return };
                let read = sealer.chunk_range(index).and_then(|(offset, len)| {
                    buf.clear();
                    buf.resize(len, 0);
                    input
                        .read_exact_at(&mut buf, offset)
                        .map_err(SealError::from)
                });
                if let Err(e) = read {
                    let _ = reader_sealed_tx.send(Err(e));
                    return;
                }
                if read_tx.send((index, buf)).is_err() {
                    return;
                }
            }
        });
        // Stage 2: seal, on `workers` threads.
        for _ in 0..workers {
            let (rx, tx) = (read_rx.clone(), sealed_tx.clone());
            scope.spawn(move || {
                loop {
                    let next = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok((index, buf)) = next else { return };
                    if tx.send(sealer.seal(index, buf)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sealed_tx);
        // Stage 3: write in order (here), giving buffers back to the pool.
        let mut chain = Chain::new(report_id);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0u32;
        let mut ids = Vec::with_capacity(n as usize);
        while next < n {
            let chunk = match sealed_rx.recv() {
                Ok(c) => c?,
                Err(_) => {
                    return Err(SealError::malformed(
                        "sealing",
                        "a pipeline stage stopped early",
                    ));
                }
            };
            waiting.insert(chunk.index, chunk);
            while let Some(chunk) = waiting.remove(&next) {
                out.write_all(&chunk.ciphertext)?;
                chain.push(&chunk.chunk_id);
                ids.push(chunk.chunk_id);
                let _ = pool_tx.send(chunk.ciphertext);
                next += 1;
            }
        }
        drop(sealed_rx);
        drop(pool_tx);
        if input.metadata()?.len() != len {
            return Err(SealError::Integrity {
                chunk: n - 1,
                check: ChunkCheck::Length,
            });
        }
        sealer.summary(&ids)
    })
}

/// Opens a report chunk by chunk, verifying as it goes: chunk id, chain link, AES-GCM with the
/// last-chunk flag, lengths, count and total. Build it only from a verified manifest.
pub struct ReportOpener {
    cipher: ChunkCipher,
    manifest: Manifest,
    chunk_ids: Option<Vec<[u8; 32]>>,
    chain: Chain,
    next: u32,
    total: u64,
}

impl ReportOpener {
    /// Checks the DEK against the manifest's key commitment before anything is opened.
    pub fn new(dek: &Dek, manifest: &Manifest) -> Result<Self, SealError> {
        let keys = ReportKeys::derive(dek, &manifest.report_id);
        keys.check_commit(&manifest.key_commit)?;
        manifest.validate()?;
        Ok(ReportOpener {
            cipher: ChunkCipher::new(&keys, &manifest.report_id),
            manifest: manifest.clone(),
            chunk_ids: None,
            chain: Chain::new(manifest.report_id),
            next: 0,
            total: 0,
        })
    }

    /// Takes the stored chunk-id list and checks it against the manifest's count and head, so
    /// each chunk can then be checked on its own (and opened in any order with [`Self::open_chunk`]).
    pub fn with_chunk_ids(mut self, ids: Vec<[u8; 32]>) -> Result<Self, SealError> {
        if ids.len() != self.manifest.n_chunks as usize {
            return Err(SealError::malformed(
                "chunk list",
                format!(
                    "{} chunks, the manifest says {}",
                    ids.len(),
                    self.manifest.n_chunks
                ),
            ));
        }
        if super::chain_head(&self.manifest.report_id, &ids) != Some(self.manifest.head) {
            return Err(SealError::ChainHead);
        }
        self.chunk_ids = Some(ids);
        Ok(self)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn expected_len(&self, index: u32) -> usize {
        let cs = u64::from(self.manifest.chunk_size);
        let plain = if index + 1 < self.manifest.n_chunks {
            cs
        } else {
            self.manifest.plaintext_len - cs * u64::from(index)
        };
        plain as usize + TAG_LEN
    }

    fn fault(chunk: u32, check: ChunkCheck) -> SealError {
        SealError::Integrity { chunk, check }
    }

    /// Opens chunk `index` on its own (needs the verified chunk-id list). `&self`: call it from
    /// many threads at once.
    pub fn open_chunk(&self, index: u32, mut ciphertext: Vec<u8>) -> Result<Vec<u8>, SealError> {
        if index >= self.manifest.n_chunks {
            return Err(Self::fault(index, ChunkCheck::Unexpected));
        }
        if let Some(ids) = &self.chunk_ids
            && chunk_id(&ciphertext) != ids[index as usize]
        {
            return Err(Self::fault(index, ChunkCheck::ChunkId));
        }
        let last = index + 1 == self.manifest.n_chunks;
        let expected_len = self.expected_len(index);
        if ciphertext.len() != expected_len {
            // A chunk sealed as last where a full one belongs is truncation, not noise.
            if ciphertext.len() >= TAG_LEN
                && self
                    .cipher
                    .open_in_place(index, &mut ciphertext, !last)
                    .is_ok()
            {
                return Err(Self::fault(index, ChunkCheck::LastFlag));
            }
            return Err(Self::fault(index, ChunkCheck::Length));
        }
        // A chunk of the right length sealed under the other flag fails here as an
        // authentication failure: ring leaves no ciphertext to try the other flag on.
        self.cipher.open_in_place(index, &mut ciphertext, last)?;
        Ok(ciphertext)
    }

    /// Opens the next chunk in order, extending the chain.
    pub fn open_next(&mut self, ciphertext: Vec<u8>) -> Result<Vec<u8>, SealError> {
        let index = self.next;
        if index >= self.manifest.n_chunks {
            return Err(Self::fault(index, ChunkCheck::Unexpected));
        }
        let id = chunk_id(&ciphertext);
        let link = self.chain.push(&id);
        if index + 1 == self.manifest.n_chunks && link != self.manifest.head {
            // Without a chunk list the chain can only be judged at its end; AES-GCM has already
            // vouched for every earlier chunk, so this one is at fault.
            let plain = self.open_chunk(index, ciphertext)?;
            drop(plain);
            return Err(Self::fault(index, ChunkCheck::ChainLink));
        }
        let plain = self.open_chunk(index, ciphertext)?;
        self.next += 1;
        self.total += plain.len() as u64;
        Ok(plain)
    }

    /// Checks that every chunk arrived and the totals match the manifest.
    pub fn finish(self) -> Result<(), SealError> {
        if self.next < self.manifest.n_chunks {
            return Err(Self::fault(self.next, ChunkCheck::Missing));
        }
        if self.total != self.manifest.plaintext_len {
            return Err(SealError::TotalLength {
                expected: self.manifest.plaintext_len,
                got: self.total,
            });
        }
        if self.chain.head() != Some(self.manifest.head) {
            return Err(SealError::ChainHead);
        }
        Ok(())
    }
}
