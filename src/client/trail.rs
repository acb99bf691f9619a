//! The complete trail (issue 17 point 2): the client replays every ledger entry from where it
//! stopped last time (from its own registration entry the first time), recomputes the root
//! and compares it with the signed head, and keeps the entries about itself. A root that
//! matches proves no entry was left out, so "entries about me" no longer rest on the
//! server's unauthenticated subject index; entries that index left out are reported.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ClientError;
use super::ledger::Ledger;
use crate::ledger::{Entry, Hash, empty_root, leaf_hash, node_hash};

/// The roots of the perfect subtrees covering the leaves so far, largest first: enough to
/// add leaves and compute every later root (RFC 6962), in at most 64 hashes.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// From the compact range of the first `size` leaves (as `/v1/ledger/frontier` gives it).
    /// Unverified: only a root computed from it that matches a signed head vouches for it.
    pub fn from_hashes(size: u64, hashes: &[Vec<u8>]) -> Result<Frontier, ClientError> {
        let levels: Vec<u32> = (0..64u32)
            .rev()
            .filter(|l| size & (1u64 << l) != 0)
            .collect();
        if levels.len() != hashes.len() {
            return Err(ClientError::Ledger(format!(
                "the server's frontier at size {size} has {} hashes, not {}",
                hashes.len(),
                levels.len()
            )));
        }
        let mut nodes = Vec::with_capacity(levels.len());
        for (l, h) in levels.into_iter().zip(hashes) {
            let h: Hash = h
                .as_slice()
                .try_into()
                .map_err(|_| ClientError::Ledger("a frontier hash is not 32 bytes".into()))?;
            nodes.push((l, h));
        }
        Ok(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut hash = leaf;
        while let Some(&(l, left)) = self.nodes.last() {
            if l != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&left, &hash);
            level += 1;
        }
        self.nodes.push((level, hash));
        self.size += 1;
    }

    /// RFC 6962's root of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(&(_, mut root)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            root = node_hash(left, &root);
        }
        root
    }

    fn hashes_hex(&self) -> Vec<String> {
        self.nodes.iter().map(|(_, h)| hex::encode(h)).collect()
    }
}

/// What is kept per server and user between runs.
#[derive(Serialize, Deserialize, Default)]
struct TrailState {
    server: String,
    user: Uuid,
    size: u64,
    frontier: Vec<String>,
    /// Reports and grants found to be about this user (their later entries are too).
    reports: Vec<Uuid>,
    grants: Vec<Uuid>,
    /// Reports this user is the patient or the author of (a commit-time wrap names them),
    /// whose every entry the server must index for them.
    #[serde(default)]
    own_reports: Vec<Uuid>,
    /// The entries about this user so far, by index (hex bytes).
    entries: BTreeMap<u64, String>,
}

/// The words the CLI trail and the terminal client's Ledger pane both use for a key rotation
/// (kind 10) and an emergency-team change (kind 11), with `who` naming an id their own way;
/// `None` for the other kinds, which each describes in its own width.
pub fn shared_words(e: &Entry, who: &dyn Fn(&[u8; 16]) -> String) -> Option<String> {
    use crate::ledger::{RotationBy, TeamChange};
    Some(match e {
        Entry::KeyRotated {
            user_id,
            x25519_public,
            ed25519_public,
            by,
            authoriser_id,
            ..
        } => format!(
            "KEYS CHANGED for {} to {}, authorised by {}",
            who(user_id),
            crate::seal::fingerprint(&crate::seal::PublicKeys {
                x25519: *x25519_public,
                ed25519: *ed25519_public,
            }),
            match by {
                RotationBy::Admin => format!("administrator {}", who(authoriser_id)),
                RotationBy::VerifiedEmail => "the user's verified email".into(),
            }
        ),
        Entry::EmergencyTeam {
            member_id,
            change,
            admin_id,
            ..
        } => format!(
            "emergency team: {} {} by {}",
            who(member_id),
            match change {
                TeamChange::Added => "added",
                TeamChange::Removed => "removed",
            },
            who(admin_id)
        ),
        _ => return None,
    })
}

fn state_file(state_dir: &Path, server: &str, user: Uuid) -> PathBuf {
    let tag = hex::encode(&Sha256::digest(format!("{server} {user}").as_bytes())[..12]);
    state_dir.join("trail").join(format!("{tag}.json"))
}

/// The complete trail of one user.
pub struct Trail {
    /// Every entry about the user since their registration, ascending.
    pub entries: Vec<(u64, Entry)>,
    /// Entries about the user that the server's own answer ("entries about me") left out
    /// this time: its subject index was edited, or the server hides them.
    pub omitted_by_server: Vec<u64>,
    /// Entries replayed this time (all of them, not only the user's).
    pub replayed: u64,
}

/// Whether `e` is about `me`, given the reports and grants already known to be; learns new
/// ones from entries that name `me`.
fn about(
    e: &Entry,
    me: &[u8; 16],
    reports: &mut HashSet<[u8; 16]>,
    grants: &mut HashSet<[u8; 16]>,
) -> bool {
    type Id<'a> = &'a [u8; 16];
    let (ids, report, grant): (Vec<Id>, Option<Id>, Option<Id>) = match e {
        Entry::UserRegistered { user_id, .. } => (vec![user_id], None, None),
        Entry::ReportCommitted { report_id, .. } => (vec![], Some(report_id), None),
        Entry::GrantApproved {
            grant_id,
            report_id,
            reader_id,
            ..
        } => (vec![reader_id], Some(report_id), Some(grant_id)),
        Entry::KeyWrapped {
            grant_id,
            report_id,
            reader_id,
            wrapper_id,
            ..
        } => (vec![reader_id, wrapper_id], Some(report_id), Some(grant_id)),
        Entry::GrantRevoked { grant_id, .. } => (vec![], None, Some(grant_id)),
        Entry::ReportAccess {
            report_id,
            reader_id,
            ..
        } => (vec![reader_id], Some(report_id), None),
        Entry::OtpVerified { user_id, .. } => (vec![user_id], None, None),
        Entry::AccountStatus { user_id, .. } => (vec![user_id], None, None),
        Entry::StationOrder {
            station_id,
            patient_id,
            doctor_id,
            ..
        } => (vec![station_id, patient_id, doctor_id], None, None),
        Entry::EmergencyTeam { .. } | Entry::EmergencyAccess { .. } => {
            (emergency_names(e), None, None)
        }
        Entry::KeyRotated {
            user_id,
            authoriser_id,
            ..
        } => (vec![user_id, authoriser_id], None, None),
    };
    let named = ids.contains(&me);
    let via =
        report.is_some_and(|r| reports.contains(r)) || grant.is_some_and(|g| grants.contains(g));
    if named {
        reports.extend(report.copied());
        grants.extend(grant.copied());
    }
    if via {
        grants.extend(grant.copied());
    }
    named || via
}

/// Whether the server's subject index must list `e`, already known to be about `me`, for
/// `me` (docs/protocol.md §6.3): entries naming `me`, and entries about a report `me` is the
/// patient or author of (`own`), except its release (kind 6, what = 1: the patient only).
/// Other entries about reports `me` reads by grant are in the replayed trail, but the server
/// indexes them for their own readers, so their absence from its answer is no gap.
fn indexed_for(e: &Entry, me: &[u8; 16], own: &HashSet<[u8; 16]>) -> bool {
    match e {
        Entry::UserRegistered { user_id, .. }
        | Entry::OtpVerified { user_id, .. }
        | Entry::AccountStatus { user_id, .. }
        | Entry::KeyRotated { user_id, .. } => user_id == me,
        Entry::StationOrder {
            station_id,
            patient_id,
            doctor_id,
            ..
        } => station_id == me || patient_id == me || doctor_id == me,
        Entry::ReportCommitted { report_id, .. } => own.contains(report_id),
        Entry::GrantApproved {
            report_id,
            reader_id,
            ..
        } => reader_id == me || own.contains(report_id),
        Entry::KeyWrapped {
            report_id,
            reader_id,
            wrapper_id,
            ..
        } => reader_id == me || wrapper_id == me || own.contains(report_id),
        Entry::ReportAccess {
            report_id,
            reader_id,
            what,
            ..
        } => {
            reader_id == me
                || (own.contains(report_id) && *what != crate::ledger::AccessWhat::ReleasedByOtp)
        }
        // Names only a grant; its report is not in the entry.
        Entry::GrantRevoked { .. } => false,
        Entry::EmergencyTeam { .. } | Entry::EmergencyAccess { .. } => {
            emergency_names(e).contains(&me)
        }
    }
}

/// Issue 16: the users a kind-11 or kind-12 entry is about, as the server indexes them: the
/// member and the administrator; the patient and the reader.
fn emergency_names(e: &Entry) -> Vec<&[u8; 16]> {
    match e {
        Entry::EmergencyTeam {
            member_id,
            admin_id,
            ..
        } => vec![member_id, admin_id],
        Entry::EmergencyAccess {
            patient_id,
            reader_id,
            ..
        } => vec![patient_id, reader_id],
        _ => vec![],
    }
}

/// Replays the ledger from the saved point to the verified head and returns every entry
/// about `me` (see the module's note). Fails, trusting nothing, when the replay does not give
/// the signed root.
pub async fn complete_trail(
    ledger: &Ledger,
    state_dir: &Path,
    me: Uuid,
) -> Result<Trail, ClientError> {
    let server = ledger.client().base_url().to_string();
    let path = state_file(state_dir, &server, me);
    let head = ledger.head().clone();
    let saved: Option<TrailState> = match std::fs::read(&path) {
        Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| {
            ClientError::Ledger(format!(
                "the saved trail {} is unreadable ({e}); it must not be edited by hand",
                path.display()
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ClientError::Session(e)),
    };
    let mut st = match saved {
        Some(s) if s.size <= head.tree_size && s.user == me => s,
        _ => {
            // Nothing can be about an account before its key entry.
            let start = ledger.registration_index(me).await?;
            TrailState {
                server: server.clone(),
                user: me,
                size: start,
                frontier: ledger
                    .frontier(start)
                    .await?
                    .iter()
                    .map(hex::encode)
                    .collect(),
                ..TrailState::default()
            }
        }
    };
    let hashes: Vec<Vec<u8>> = st
        .frontier
        .iter()
        .map(hex::decode)
        .collect::<Result<_, _>>()
        .map_err(|e| ClientError::Ledger(format!("saved trail frontier: {e}")))?;
    let mut frontier = Frontier::from_hashes(st.size, &hashes)?;
    let from = st.size;
    let raw = ledger.every_entry(from, head.tree_size).await?;
    let mut reports: HashSet<[u8; 16]> = st.reports.iter().map(|u| *u.as_bytes()).collect();
    let mut grants: HashSet<[u8; 16]> = st.grants.iter().map(|u| *u.as_bytes()).collect();
    let mut decoded = Vec::with_capacity(raw.len());
    for e in &raw {
        frontier.push(leaf_hash(&e.entry));
        let entry = Entry::from_bytes(&e.entry)
            .map_err(|err| ClientError::Ledger(format!("entry {}: {err}", e.index)))?;
        decoded.push((e.index, entry));
    }
    if frontier.size() != head.tree_size || frontier.root() != head.root {
        return Err(ClientError::Ledger(format!(
            "replaying entries {from}..{} does not give the signed root: the server left \
             entries out or changed them",
            head.tree_size
        )));
    }
    // Two passes: a report's commit comes before the entries naming this user.
    let me_b = *me.as_bytes();
    for (_, e) in &decoded {
        about(e, &me_b, &mut reports, &mut grants);
    }
    let mut own: HashSet<[u8; 16]> = st.own_reports.iter().map(|u| *u.as_bytes()).collect();
    for (_, e) in &decoded {
        if let Entry::KeyWrapped {
            grant_id,
            report_id,
            reader_id,
            ..
        } = e
            && *grant_id == *crate::api::COMMIT_GRANT_ID.as_bytes()
            && reader_id == &me_b
        {
            own.insert(*report_id);
        }
    }
    let mut new_mine = Vec::new();
    for ((i, e), r) in decoded.iter().zip(&raw) {
        if about(e, &me_b, &mut reports, &mut grants) {
            if indexed_for(e, &me_b, &own) {
                new_mine.push(*i);
            }
            st.entries.insert(*i, hex::encode(&r.entry));
        }
    }
    // What the server's subject index answers for the same range, to report its gaps.
    let listed: HashSet<u64> = ledger
        .subject_indexes(from, head.tree_size)
        .await?
        .into_iter()
        .collect();
    // Only entries the server must index for this user (docs/protocol.md §6.3) can be missing.
    let omitted_by_server = new_mine
        .iter()
        .copied()
        .filter(|i| !listed.contains(i))
        .collect();
    st.size = head.tree_size;
    st.frontier = frontier.hashes_hex();
    st.reports = reports.iter().map(|b| Uuid::from_bytes(*b)).collect();
    st.reports.sort();
    st.grants = grants.iter().map(|b| Uuid::from_bytes(*b)).collect();
    st.grants.sort();
    st.own_reports = own.iter().map(|b| Uuid::from_bytes(*b)).collect();
    st.own_reports.sort();
    let bytes = serde_json::to_vec_pretty(&st).map_err(|e| ClientError::Ledger(e.to_string()))?;
    crate::fsutil::write_private_atomic(&path, &bytes)?;
    let mut entries = Vec::with_capacity(st.entries.len());
    for (i, h) in &st.entries {
        let b = hex::decode(h).map_err(|e| ClientError::Ledger(format!("saved trail: {e}")))?;
        let e = Entry::from_bytes(&b)
            .map_err(|e| ClientError::Ledger(format!("saved trail entry {i}: {e}")))?;
        entries.push((*i, e));
    }
    Ok(Trail {
        entries,
        omitted_by_server,
        replayed: raw.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::MerkleTree;

    #[test]
    fn frontier_roots_match_the_tree_at_every_size() {
        let mut tree = MerkleTree::new();
        let mut f = Frontier::default();
        assert_eq!(f.root(), tree.root());
        for i in 0..300u32 {
            let e = i.to_be_bytes();
            tree.push_entry(&e);
            f.push(leaf_hash(&e));
            assert_eq!(f.root(), tree.root(), "size {}", i + 1);
            // Restarting from the compact range gives the same roots.
            let again = Frontier::from_hashes(
                f.size(),
                &f.nodes.iter().map(|(_, h)| h.to_vec()).collect::<Vec<_>>(),
            )
            .unwrap();
            assert_eq!(again.root(), f.root());
        }
    }
}
