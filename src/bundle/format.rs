//! The bundle container (docs/protocol.md §16): magic, version, then length-prefixed sections
//! in a fixed order, each with a hard size limit. Decoding checks framing only; what the bytes
//! mean is checked by [`super::verify`].

use crate::ledger::Hash;
use crate::seal::{MANIFEST_LEN, MAX_CHUNK_SIZE, TAG_LEN};

/// The first bytes of every bundle file.
pub const MAGIC: &[u8; 23] = b"clinvault/report-bundle";
/// The only version this code writes and reads.
pub const VERSION: u16 = 1;
/// Largest bundle file accepted (and written): the whole file is held in memory.
pub const MAX_BUNDLE_LEN: u64 = 256 * 1024 * 1024;
/// Most hashes in one inclusion proof (a tree of 2^64 leaves needs 64).
pub const MAX_PROOF_HASHES: usize = 64;
/// Largest checkpoint note (the log's signature and a few cosignatures need under 2 KiB).
pub const MAX_CHECKPOINT_LEN: usize = 16 * 1024;
/// Smallest and largest encrypted metadata blob (docs/protocol.md §5.6).
pub const META_LEN: (usize, usize) = (28, 64 * 1024);
/// Smallest and largest ledger entry (docs/protocol.md §6.2).
pub const ENTRY_LEN: (usize, usize) = (43, 139);

/// Section tags, in the order they must appear. The station group (`OrderEntry` to
/// `DoctorKeyProof`) comes after `CommitProof`, all four or none: present exactly when the
/// author is a station. `Chunk` repeats (one per chunk, at least one) and ends the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    Manifest = 1,
    Signature = 2,
    Meta = 3,
    KeyEntry = 4,
    KeyProof = 5,
    CommitEntry = 6,
    CommitProof = 7,
    SignedHead = 8,
    Checkpoint = 9,
    ReportKey = 10,
    Chunk = 11,
    OrderEntry = 12,
    OrderProof = 13,
    DoctorKeyEntry = 14,
    DoctorKeyProof = 15,
}

impl Tag {
    const ORDER: [Tag; 11] = [
        Tag::Manifest,
        Tag::Signature,
        Tag::Meta,
        Tag::KeyEntry,
        Tag::KeyProof,
        Tag::CommitEntry,
        Tag::CommitProof,
        Tag::SignedHead,
        Tag::Checkpoint,
        Tag::ReportKey,
        Tag::Chunk,
    ];
    /// The optional station group, read after `CommitProof` when its first tag follows.
    const STATION: [Tag; 4] = [
        Tag::OrderEntry,
        Tag::OrderProof,
        Tag::DoctorKeyEntry,
        Tag::DoctorKeyProof,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tag::Manifest => "manifest",
            Tag::Signature => "manifest signature",
            Tag::Meta => "metadata",
            Tag::KeyEntry => "author's key entry",
            Tag::KeyProof => "key entry's inclusion proof",
            Tag::CommitEntry => "commit entry",
            Tag::CommitProof => "commit entry's inclusion proof",
            Tag::SignedHead => "signed head",
            Tag::Checkpoint => "checkpoint",
            Tag::ReportKey => "report key",
            Tag::Chunk => "chunk",
            Tag::OrderEntry => "station order entry",
            Tag::OrderProof => "order entry's inclusion proof",
            Tag::DoctorKeyEntry => "ordering doctor's key entry",
            Tag::DoctorKeyProof => "doctor's key entry's inclusion proof",
        }
    }

    /// Allowed body lengths (inclusive).
    fn limits(self) -> (usize, usize) {
        match self {
            Tag::Manifest => (MANIFEST_LEN, MANIFEST_LEN),
            Tag::Signature => (64, 64),
            Tag::Meta => META_LEN,
            Tag::KeyEntry | Tag::CommitEntry | Tag::OrderEntry | Tag::DoctorKeyEntry => {
                (8 + ENTRY_LEN.0, 8 + ENTRY_LEN.1)
            }
            Tag::KeyProof | Tag::CommitProof | Tag::OrderProof | Tag::DoctorKeyProof => {
                (0, 32 * MAX_PROOF_HASHES)
            }
            Tag::SignedHead => (
                crate::ledger::SIGNED_HEAD_LEN,
                crate::ledger::SIGNED_HEAD_LEN,
            ),
            Tag::Checkpoint => (0, MAX_CHECKPOINT_LEN),
            Tag::ReportKey => (32, 32),
            Tag::Chunk => (TAG_LEN, MAX_CHUNK_SIZE as usize + TAG_LEN),
        }
    }
}

/// Why a file is not a well-formed bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "not a clinvault report bundle (the file does not start with \"clinvault/report-bundle\"): check that it is the .cvb file clinvault export wrote"
    )]
    Magic,
    #[error(
        "bundle version {0} is not supported (this clinvault reads version {VERSION}); a newer clinvault may read it"
    )]
    Version(u16),
    #[error("the bundle is {0} bytes, more than the {MAX_BUNDLE_LEN} allowed")]
    TooLarge(u64),
    #[error("the bundle ends inside the {0}")]
    Truncated(&'static str),
    #[error("expected the {want} section (tag {}), found tag {got}", *want as u8)]
    WrongSection { want: Tag, got: u8 },
    #[error("the {what} section is {len} bytes; it must be {min} to {max}")]
    SectionLength {
        what: &'static str,
        len: usize,
        min: usize,
        max: usize,
    },
    #[error("the {0} section's length is not a whole number of 32-byte hashes")]
    ProofShape(&'static str),
    #[error("the checkpoint section is not UTF-8 text")]
    CheckpointText,
    #[error("{0} bytes follow the last chunk (trailing data, or an unknown section)")]
    Trailing(usize),
    #[error("the bundle holds no chunk")]
    NoChunk,
}

/// A ledger entry with its index in the tree, and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenEntry {
    pub index: u64,
    pub entry: Vec<u8>,
    pub proof: Vec<Hash>,
}

/// What a station-authored report's bundle adds (docs/protocol.md §16.1): the doctor's order
/// (ledger kind 13) the station uploaded under, and that doctor's key entry (kind 1), each with
/// its index and inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationEvidence {
    pub order_entry: ProvenEntry,
    pub doctor_key_entry: ProvenEntry,
}

/// Everything a verifier needs, with no server. See docs/protocol.md §16 for the layout.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    pub manifest: Vec<u8>,
    pub signature: [u8; 64],
    pub meta: Vec<u8>,
    pub key_entry: ProvenEntry,
    pub commit_entry: ProvenEntry,
    /// Present exactly when the author is a station.
    pub station: Option<StationEvidence>,
    pub signed_head: Vec<u8>,
    /// The head as a C2SP checkpoint note with cosignatures; empty when the server gave none.
    pub checkpoint: String,
    /// The report's data key, in clear: whoever holds the file can read the report.
    pub dek: [u8; 32],
    /// The sealed chunks, in order.
    pub chunks: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.dek);
    }
}

fn section(out: &mut Vec<u8>, tag: Tag, body: &[u8]) {
    out.push(tag as u8);
    // Lengths are bounded by the section limits, far below u32::MAX.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

fn entry_body(e: &ProvenEntry) -> Vec<u8> {
    [&e.index.to_be_bytes()[..], &e.entry].concat()
}

impl Bundle {
    pub fn to_bytes(&self) -> Vec<u8> {
        let chunks: usize = self.chunks.iter().map(|c| c.len() + 5).sum();
        let mut out = Vec::with_capacity(chunks + 4096);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        section(&mut out, Tag::Manifest, &self.manifest);
        section(&mut out, Tag::Signature, &self.signature);
        section(&mut out, Tag::Meta, &self.meta);
        section(&mut out, Tag::KeyEntry, &entry_body(&self.key_entry));
        section(&mut out, Tag::KeyProof, &self.key_entry.proof.concat());
        section(&mut out, Tag::CommitEntry, &entry_body(&self.commit_entry));
        section(
            &mut out,
            Tag::CommitProof,
            &self.commit_entry.proof.concat(),
        );
        if let Some(st) = &self.station {
            section(&mut out, Tag::OrderEntry, &entry_body(&st.order_entry));
            section(&mut out, Tag::OrderProof, &st.order_entry.proof.concat());
            section(
                &mut out,
                Tag::DoctorKeyEntry,
                &entry_body(&st.doctor_key_entry),
            );
            section(
                &mut out,
                Tag::DoctorKeyProof,
                &st.doctor_key_entry.proof.concat(),
            );
        }
        section(&mut out, Tag::SignedHead, &self.signed_head);
        section(&mut out, Tag::Checkpoint, self.checkpoint.as_bytes());
        section(&mut out, Tag::ReportKey, &self.dek);
        for c in &self.chunks {
            section(&mut out, Tag::Chunk, c);
        }
        out
    }

    /// Parses a bundle file's bytes: refuses a wrong magic, another version, sections out of
    /// order or outside their limits, a file larger than [`MAX_BUNDLE_LEN`] and trailing bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Bundle, FormatError> {
        if data.len() as u64 > MAX_BUNDLE_LEN {
            return Err(FormatError::TooLarge(data.len() as u64));
        }
        let rest = data.strip_prefix(&MAGIC[..]).ok_or(FormatError::Magic)?;
        let (version, rest) = rest
            .split_first_chunk::<2>()
            .ok_or(FormatError::Truncated("version"))?;
        let version = u16::from_be_bytes(*version);
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        let mut r = Reader(rest);
        let mut fixed = Vec::with_capacity(10);
        let mut station = None;
        for tag in &Tag::ORDER[..10] {
            if *tag == Tag::SignedHead && r.0.first() == Some(&(Tag::OrderEntry as u8)) {
                let mut g = Vec::with_capacity(4);
                for t in Tag::STATION {
                    g.push(r.section(t)?);
                }
                let [order, order_proof, doctor, doctor_proof] = g[..] else {
                    return Err(FormatError::Truncated("station order"));
                };
                station = Some(StationEvidence {
                    order_entry: proven(order, order_proof, Tag::OrderProof)?,
                    doctor_key_entry: proven(doctor, doctor_proof, Tag::DoctorKeyProof)?,
                });
            }
            fixed.push(r.section(*tag)?);
        }
        let mut chunks = Vec::new();
        while !r.0.is_empty() {
            if r.0[0] != Tag::Chunk as u8 {
                return Err(FormatError::Trailing(r.0.len()));
            }
            chunks.push(r.section(Tag::Chunk)?.to_vec());
        }
        if chunks.is_empty() {
            return Err(FormatError::NoChunk);
        }
        let [
            manifest,
            signature,
            meta,
            key,
            key_proof,
            commit,
            commit_proof,
            head,
            cp,
            dek,
        ] = fixed[..]
        else {
            return Err(FormatError::Truncated("sections"));
        };
        Ok(Bundle {
            manifest: manifest.to_vec(),
            signature: fixed_array(signature),
            meta: meta.to_vec(),
            key_entry: proven(key, key_proof, Tag::KeyProof)?,
            commit_entry: proven(commit, commit_proof, Tag::CommitProof)?,
            station,
            signed_head: head.to_vec(),
            checkpoint: String::from_utf8(cp.to_vec()).map_err(|_| FormatError::CheckpointText)?,
            dek: fixed_array(dek),
            chunks,
        })
    }
}

/// Copies a slice whose length the section limits fixed already.
fn fixed_array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = b.len().min(N);
    out[..n].copy_from_slice(&b[..n]);
    out
}

fn proven(entry: &[u8], proof: &[u8], tag: Tag) -> Result<ProvenEntry, FormatError> {
    let (index, entry) = entry
        .split_first_chunk::<8>()
        .ok_or(FormatError::Truncated("entry index"))?;
    if !proof.len().is_multiple_of(32) {
        return Err(FormatError::ProofShape(tag.name()));
    }
    Ok(ProvenEntry {
        index: u64::from_be_bytes(*index),
        entry: entry.to_vec(),
        proof: proof.chunks_exact(32).map(fixed_array).collect(),
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn section(&mut self, want: Tag) -> Result<&'a [u8], FormatError> {
        let (&tag, rest) = self
            .0
            .split_first()
            .ok_or(FormatError::Truncated(want.name()))?;
        if tag != want as u8 {
            return Err(FormatError::WrongSection { want, got: tag });
        }
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(FormatError::Truncated(want.name()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let (min, max) = want.limits();
        if len < min || len > max {
            return Err(FormatError::SectionLength {
                what: want.name(),
                len,
                min,
                max,
            });
        }
        if rest.len() < len {
            return Err(FormatError::Truncated(want.name()));
        }
        let (body, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(body)
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod magic_tests {
    use super::*;

    /// The message names the magic as text a user can compare, not as a byte list.
    #[test]
    fn the_magic_error_reads_as_text() {
        let text = FormatError::Magic.to_string();
        assert!(
            text.contains(&format!("\"{}\"", String::from_utf8_lossy(MAGIC))),
            "{text}"
        );
    }
}
