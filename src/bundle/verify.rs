//! Checking a bundle with no server: the ledger key and witness keys come from the verifier,
//! everything else from the file. Only the existing verifiers of `seal/`, `ledger/` and
//! `witness/` do crypto here; this is the order they run in.

use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use super::format::{Bundle, FormatError};

use crate::client::station::order_rule;
use crate::ledger::{Entry, LedgerKey, Role, SignedHead, leaf_hash, verify_inclusion};
use crate::seal::{
    Dek, Manifest, PublicKeys, ReportKeys, ReportMeta, ReportOpener, fingerprint, meta_hash,
    open_meta, verify_manifest,
};
use crate::witness::note::{Checkpoint, Note, SIG_ED25519, VerifierKey, cosigned_by};

/// The checks, in the order they run. Every failure names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    HeadSignature,
    Checkpoint,
    WitnessQuorum,
    KeyEntryInclusion,
    CommitEntryInclusion,
    OrderEntryInclusion,
    DoctorKeyInclusion,
    KeyEntry,
    Manifest,
    CommitEntry,
    StationOrder,
    DoctorKeyEntry,
    ManifestSignature,
    KeyCommitment,
    Metadata,
    Chunks,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Check::HeadSignature => "signed head (ledger key signature)",
            Check::Checkpoint => "checkpoint (the head's signed note)",
            Check::WitnessQuorum => "witness cosignatures",
            Check::KeyEntryInclusion => "inclusion of the author's key entry",
            Check::CommitEntryInclusion => "inclusion of the commit entry",
            Check::OrderEntryInclusion => "inclusion of the station order entry",
            Check::DoctorKeyInclusion => "inclusion of the ordering doctor's key entry",
            Check::KeyEntry => "author's key entry",
            Check::Manifest => "manifest",
            Check::CommitEntry => "commit entry matches the manifest",
            Check::StationOrder => "station order covers the commit",
            Check::DoctorKeyEntry => "ordering doctor's key entry",
            Check::ManifestSignature => "manifest signature (author's key from the ledger)",
            Check::KeyCommitment => "key commitment",
            Check::Metadata => "metadata",
            Check::Chunks => "chunks (hash chain and AES-GCM)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("bundle format: {0}")]
    Format(#[from] FormatError),
    #[error("check failed: {check}: {detail}")]
    Check { check: Check, detail: String },
}

impl BundleError {
    /// The failing check; `None` for a malformed file.
    pub fn check(&self) -> Option<Check> {
        match self {
            BundleError::Check { check, .. } => Some(*check),
            BundleError::Format(_) => None,
        }
    }
}

fn fail(check: Check, detail: impl std::fmt::Display) -> BundleError {
    BundleError::Check {
        check,
        detail: detail.to_string(),
    }
}

/// Whom the verifier trusts, obtained out of band: the ledger key, and the witnesses whose
/// cosignatures count with how many are needed.
#[derive(Debug, Clone)]
pub struct Trust {
    pub ledger_key: LedgerKey,
    pub witnesses: Vec<VerifierKey>,
    pub quorum: usize,
}

/// For a station's report: the order it was submitted under, as the ledger states it. The
/// ledger carries ids and keys, not names, so a bundle proves no name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationProof {
    pub station_id: Uuid,
    pub doctor_id: Uuid,
    pub doctor_fingerprint: String,
    pub doctor_key_index: u64,
    pub order_id: Uuid,
    pub order_index: u64,
    pub order_time_ms: i64,
    pub expires_ms: i64,
}

/// What a verified bundle proves, and the plaintext (wiped on drop).
pub struct Verified {
    pub manifest: Manifest,
    pub meta: ReportMeta,
    /// The author's keys from their ledger entry, and that entry's index and time.
    pub author_keys: PublicKeys,
    pub author_fingerprint: String,
    pub key_index: u64,
    /// The commit entry: where and when the report entered the ledger.
    pub commit_index: u64,
    pub committed_at_ms: i64,
    /// Set when the author is a station (its key entry has role station).
    pub station: Option<StationProof>,
    pub head: SignedHead,
    pub ledger_key: LedgerKey,
    /// The checkpoint's origin, when the bundle carries one.
    pub origin: Option<String>,
    /// Configured witnesses whose cosignature verified.
    pub cosigned_by: Vec<String>,
    /// Names on other signature lines, checked by nobody here (witnesses not given).
    pub unchecked: Vec<String>,
    /// Empty when checked with [`check`].
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("commit_index", &self.commit_index)
            .field("len", &self.plaintext.len())
            .finish_non_exhaustive()
    }
}

/// Decodes and verifies a bundle file's bytes.
pub fn verify_bytes(data: &[u8], trust: &Trust) -> Result<Verified, BundleError> {
    verify(&Bundle::from_bytes(data)?, trust)
}

fn include(
    check: Check,
    e: &super::format::ProvenEntry,
    head: &SignedHead,
) -> Result<(), BundleError> {
    if e.index >= head.tree_size {
        return Err(fail(
            check,
            format!(
                "entry {} is not in the signed tree of {} entries",
                e.index, head.tree_size
            ),
        ));
    }
    verify_inclusion(
        e.index,
        head.tree_size,
        &leaf_hash(&e.entry),
        &e.proof,
        &head.root,
    )
    .map_err(|err| fail(check, format!("entry {}: {err}", e.index)))
}

/// Every check of docs/protocol.md §16.2, in order; the plaintext only if all pass.
pub fn verify(b: &Bundle, trust: &Trust) -> Result<Verified, BundleError> {
    verify_keeping(b, trust, true)
}

/// Every check, keeping no plaintext (`Verified::plaintext` stays empty): for an exporter,
/// which needs the verdict, not a second copy of the report in memory.
pub fn check(b: &Bundle, trust: &Trust) -> Result<Verified, BundleError> {
    verify_keeping(b, trust, false)
}

fn verify_keeping(b: &Bundle, trust: &Trust, keep: bool) -> Result<Verified, BundleError> {
    // 1. The head, under the ledger key the verifier brought.
    let head = SignedHead::from_bytes(&b.signed_head).map_err(|e| fail(Check::HeadSignature, e))?;
    head.verify(trust.ledger_key.as_bytes()).map_err(|_| {
        fail(
            Check::HeadSignature,
            format!(
                "the head is not signed by the ledger key {} (a different ledger, or altered)",
                trust.ledger_key
            ),
        )
    })?;
    // 2. Its checkpoint and the witnesses' cosignatures.
    let (origin, cosigned, unchecked) = checkpoint(&b.checkpoint, &head, trust)?;
    if cosigned.len() < trust.quorum {
        return Err(fail(
            Check::WitnessQuorum,
            format!(
                "{} of the given witnesses cosigned the head, {} required",
                cosigned.len(),
                trust.quorum
            ),
        ));
    }
    // 3. Both entries are in that tree.
    include(Check::KeyEntryInclusion, &b.key_entry, &head)?;
    include(Check::CommitEntryInclusion, &b.commit_entry, &head)?;
    if let Some(st) = &b.station {
        include(Check::OrderEntryInclusion, &st.order_entry, &head)?;
        include(Check::DoctorKeyInclusion, &st.doctor_key_entry, &head)?;
    }
    // 4. What they say.
    let manifest = Manifest::from_bytes(&b.manifest).map_err(|e| fail(Check::Manifest, e))?;
    let (author_keys, author_role) = match Entry::from_bytes(&b.key_entry.entry) {
        Ok(Entry::UserRegistered {
            user_id,
            role: role @ (Role::Doctor | Role::Station),
            x25519_public,
            ed25519_public,
            ..
        }) if user_id == manifest.author_id => (
            PublicKeys {
                x25519: x25519_public,
                ed25519: ed25519_public,
            },
            role,
        ),
        Ok(_) => {
            return Err(fail(
                Check::KeyEntry,
                "it is not a doctor's or a station's key registration for the manifest's author",
            ));
        }
        Err(e) => return Err(fail(Check::KeyEntry, e)),
    };
    // The station group is there exactly when a station signed: nothing unchecked rides along.
    match (author_role, &b.station) {
        (Role::Station, None) => {
            return Err(fail(
                Check::KeyEntry,
                "the author is a station, but the bundle carries no order it uploaded under",
            ));
        }
        (Role::Doctor, Some(_)) => {
            return Err(fail(
                Check::KeyEntry,
                "the author is a doctor, but the bundle carries a station order",
            ));
        }
        _ => {}
    }
    if b.key_entry.index >= b.commit_entry.index {
        return Err(fail(
            Check::KeyEntry,
            "the author's key was registered after the commit",
        ));
    }
    let manifest_hash: [u8; 32] = Sha256::digest(&b.manifest).into();
    let committed_at_ms = match Entry::from_bytes(&b.commit_entry.entry) {
        Ok(Entry::ReportCommitted {
            time_ms,
            report_id,
            manifest_hash: h,
            signature,
        }) if report_id == manifest.report_id && h == manifest_hash && signature == b.signature => {
            time_ms
        }
        Ok(_) => {
            return Err(fail(
                Check::CommitEntry,
                "it does not record this report id, manifest hash and signature",
            ));
        }
        Err(e) => return Err(fail(Check::CommitEntry, e)),
    };
    let station = match &b.station {
        Some(st) => Some(station_proof(
            st,
            &manifest,
            (b.commit_entry.index, committed_at_ms),
        )?),
        None => None,
    };
    // 5. The author's signature, with the key from the ledger.
    verify_manifest(&b.manifest, &b.signature, &author_keys.ed25519)
        .map_err(|e| fail(Check::ManifestSignature, e))?;
    // 6. The key, the metadata and every chunk.
    let dek = Dek::from_bytes(b.dek);
    let keys = ReportKeys::derive(&dek, &manifest.report_id);
    keys.check_commit(&manifest.key_commit)
        .map_err(|e| fail(Check::KeyCommitment, e))?;
    if meta_hash(&b.meta) != manifest.meta_hash {
        return Err(fail(
            Check::Metadata,
            "its hash is not the manifest's meta_hash",
        ));
    }
    let meta =
        open_meta(&keys, &manifest.report_id, &b.meta).map_err(|e| fail(Check::Metadata, e))?;
    let plaintext = open_chunks(&dek, &manifest, &b.chunks, keep)?;
    Ok(Verified {
        author_fingerprint: fingerprint(&author_keys),
        author_keys,
        key_index: b.key_entry.index,
        commit_index: b.commit_entry.index,
        committed_at_ms,
        station,
        head,
        ledger_key: trust.ledger_key,
        origin,
        cosigned_by: cosigned,
        unchecked,
        plaintext,
        manifest,
        meta,
    })
}

/// A station's report: the same order rule a reader applies online (`order_rule`), then the
/// order's doctor must be registered as a doctor (`verify_origin` asks the ledger for the
/// doctor's keys with role doctor; here the bundle carries that key entry).
fn station_proof(
    st: &super::format::StationEvidence,
    manifest: &Manifest,
    commit: (u64, i64),
) -> Result<StationProof, BundleError> {
    let order =
        Entry::from_bytes(&st.order_entry.entry).map_err(|e| fail(Check::StationOrder, e))?;
    let station_id = Uuid::from_bytes(manifest.author_id);
    let terms = order_rule(
        &order,
        st.order_entry.index,
        station_id,
        Uuid::from_bytes(manifest.patient_id),
        commit,
    )
    .map_err(|e| fail(Check::StationOrder, e))?;
    let doctor_keys = match Entry::from_bytes(&st.doctor_key_entry.entry) {
        Ok(Entry::UserRegistered {
            user_id,
            role: Role::Doctor,
            x25519_public,
            ed25519_public,
            ..
        }) if user_id == terms.doctor_id.into_bytes() => PublicKeys {
            x25519: x25519_public,
            ed25519: ed25519_public,
        },
        Ok(_) => {
            return Err(fail(
                Check::DoctorKeyEntry,
                "it is not a doctor's key registration for the order's doctor",
            ));
        }
        Err(e) => return Err(fail(Check::DoctorKeyEntry, e)),
    };
    Ok(StationProof {
        station_id,
        doctor_id: terms.doctor_id,
        doctor_fingerprint: fingerprint(&doctor_keys),
        doctor_key_index: st.doctor_key_entry.index,
        order_id: terms.order_id,
        order_index: st.order_entry.index,
        order_time_ms: order.time_ms(),
        expires_ms: terms.expires_ms,
    })
}

type CheckpointResult = (Option<String>, Vec<String>, Vec<String>);

/// The checkpoint must be this head, signed by the ledger key under its origin. Returns the
/// origin, the given witnesses that cosigned it, and the names on signature lines nobody here
/// can check.
fn checkpoint(
    text: &str,
    head: &SignedHead,
    trust: &Trust,
) -> Result<CheckpointResult, BundleError> {
    if text.is_empty() {
        return Ok((None, Vec::new(), Vec::new()));
    }
    let bad = |e: String| fail(Check::Checkpoint, e);
    let note = Note::parse(text).map_err(|e| bad(e.to_string()))?;
    let cp = Checkpoint::parse(&note.text).map_err(|e| bad(e.to_string()))?;
    if cp.size != head.tree_size || cp.root != head.root {
        return Err(bad("it is not the signed head's size and root".into()));
    }
    let log = VerifierKey::new(&cp.origin, SIG_ED25519, trust.ledger_key.0)
        .map_err(|e| bad(e.to_string()))?;
    note.verify_ed25519(&log).map_err(|e| bad(e.to_string()))?;
    let by = cosigned_by(&note, &trust.witnesses);
    let unchecked = note
        .signatures
        .iter()
        .filter(|s| !(s.name == log.name && s.id == log.id()))
        .filter(|s| {
            !trust
                .witnesses
                .iter()
                .any(|w| w.name == s.name && w.id() == s.id && by.contains(&w.name))
        })
        .map(|s| s.name.clone())
        .collect();
    Ok((Some(cp.origin), by, unchecked))
}

/// Opens every chunk in order: chunk ids chain to the manifest's head, AES-GCM with index and
/// last flag, lengths and the total (`ReportOpener`).
fn open_chunks(
    dek: &Dek,
    manifest: &Manifest,
    chunks: &[Vec<u8>],
    keep: bool,
) -> Result<Zeroizing<Vec<u8>>, BundleError> {
    let c = |e: crate::seal::SealError| fail(Check::Chunks, e);
    let mut opener = ReportOpener::new(dek, manifest).map_err(c)?;
    if chunks.len() != manifest.n_chunks as usize {
        return Err(fail(
            Check::Chunks,
            format!(
                "the bundle holds {} chunks, the manifest says {}",
                chunks.len(),
                manifest.n_chunks
            ),
        ));
    }
    // Each chunk is its plaintext plus a tag: a signed length beyond what the file holds is
    // refused before anything is allocated for it.
    let held: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    if manifest.plaintext_len > held {
        return Err(fail(
            Check::Chunks,
            format!(
                "the chunks hold {held} bytes, fewer than the manifest's {}",
                manifest.plaintext_len
            ),
        ));
    }
    let cap = usize::try_from(manifest.plaintext_len).unwrap_or(0);
    // Sized once from the signed length, so it never reallocates (leaving an unwiped copy).
    let mut out = Zeroizing::new(Vec::with_capacity(if keep { cap } else { 0 }));
    let mut total = 0usize;
    for chunk in chunks {
        let mut plain = opener.open_next(chunk.clone()).map_err(c)?;
        total += plain.len();
        if total > cap {
            plain.zeroize();
            return Err(fail(
                Check::Chunks,
                "the chunks hold more than the manifest's length",
            ));
        }
        if keep {
            out.extend_from_slice(&plain);
        }
        plain.zeroize();
    }
    opener.finish().map_err(c)?;
    Ok(out)
}
