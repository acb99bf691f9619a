//! The integrity audit (DESIGN.md §6), as an auditor, with no key: replay the ledger and
//! recompute its root, then check every committed report's manifest, signature, commit entry
//! and chain, and every replica of every chunk; optionally have the server repair replicas.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::ledger::Ledger;
use super::{ApiClient, ClientError};
use crate::api::{AuditPage, RepairRequest, RepairResponse};
use crate::ledger::{Entry, MerkleTree};
use crate::seal::{chain_head, verify_manifest};

impl ApiClient {
    pub async fn audit_reports(&self, page: u32) -> Result<AuditPage, ClientError> {
        self.get("/v1/audit/reports", &[("page", page.to_string())])
            .await
    }

    pub async fn audit_repair(&self, chunk_id: &str) -> Result<RepairResponse, ClientError> {
        self.post(
            "/v1/audit/repair",
            &RepairRequest {
                chunk_id: chunk_id.to_string(),
            },
        )
        .await
    }
}

/// One problem the audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A report's manifest, signature, commit entry or chain is wrong.
    Report { report: String, what: String },
    /// A replica is missing from a bucket that should hold it.
    Missing {
        chunk: String,
        bucket: String,
        report: String,
        index: usize,
    },
    /// A replica's bytes do not hash to the chunk id.
    Corrupt {
        chunk: String,
        bucket: String,
        report: String,
        index: usize,
    },
    /// A bucket did not answer.
    Unreachable { chunk: String, bucket: String },
    /// Fewer replicas recorded than the server keeps.
    UnderReplicated {
        chunk: String,
        have: usize,
        want: usize,
    },
    /// A second key entry (kind 1) for one user: v1 has no key changes (issue 11).
    SecondKey {
        user: String,
        first: u64,
        again: u64,
    },
    /// The server says this entry's append authenticator is missing or invalid: something
    /// other than the server wrote it. The auditor cannot check an HMAC itself.
    Unauthenticated { index: u64 },
    /// The server reported no authenticator status (an older server, or not an auditor).
    AuthenticatorUnknown { index: u64 },
    /// The server's head is dated before a head this client saw earlier.
    OlderHead { seen_ms: i64, now_ms: i64 },
    /// A key rotation (kind 10) that does not follow from the user's keys before it: no key
    /// entry for the user yet, or another `old_keys_hash` than theirs.
    BadRotation { user: String, index: u64 },
    /// A break-glass access (kind 12) by a reader the replayed team (kind 11) did not hold at
    /// that entry: never added by a ledger administrator, or removed since.
    EmergencyNotOnTeam { index: u64, reader: String },
    /// A kind-12 entry that cannot be honest for another reason (what says which).
    BadEmergency { index: u64, what: String },
    /// A kind-11 team change that does not follow from the ledger: by an account not
    /// registered as administrator, for a non-doctor, or adding a member twice / removing a
    /// non-member. It changes nobody's membership in the replay.
    BadTeamChange {
        index: u64,
        member: String,
        what: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Report { report, what } => write!(f, "report {report}: {what}"),
            Finding::Missing {
                chunk,
                bucket,
                report,
                index,
            } => {
                write!(
                    f,
                    "report {report} chunk {index} ({chunk}): MISSING in bucket {bucket}"
                )
            }
            Finding::Corrupt {
                chunk,
                bucket,
                report,
                index,
            } => {
                write!(
                    f,
                    "report {report} chunk {index} ({chunk}): CORRUPT in bucket {bucket}"
                )
            }
            Finding::Unreachable { chunk, bucket } => {
                write!(f, "chunk {chunk}: bucket {bucket} did not answer")
            }
            Finding::UnderReplicated { chunk, have, want } => {
                write!(f, "chunk {chunk}: {have} of {want} replicas recorded")
            }
            Finding::SecondKey { user, first, again } => write!(
                f,
                "ledger entry {again}: a SECOND KEY for user {user} (first at entry {first}); \
                 v1 has no key changes — someone may be impersonating them"
            ),
            Finding::Unauthenticated { index } => write!(
                f,
                "ledger entry {index}: the server reports its append authenticator missing or \
                 invalid (not appended by the server: database tampering?)"
            ),
            Finding::AuthenticatorUnknown { index } => write!(
                f,
                "ledger entry {index}: the server did not report its append authenticator"
            ),
            Finding::OlderHead { seen_ms, now_ms } => write!(
                f,
                "the server's signed head (time {now_ms}) is older than one this client saw \
                 before (time {seen_ms})"
            ),
            Finding::BadRotation { user, index } => write!(
                f,
                "ledger entry {index}: a KEY ROTATION for user {user} that does not replace the \
                 keys the ledger held for them"
            ),
            Finding::EmergencyNotOnTeam { index, reader } => write!(
                f,
                "ledger entry {index}: a BREAK-GLASS access by {reader}, who was not on the \
                 emergency team at that entry (no addition by a ledger administrator before it, \
                 or removed since)"
            ),
            Finding::BadEmergency { index, what } => {
                write!(f, "ledger entry {index}: a BREAK-GLASS access {what}")
            }
            Finding::BadTeamChange {
                index,
                member,
                what,
            } => write!(
                f,
                "ledger entry {index}: an emergency-team change for {member} {what}"
            ),
        }
    }
}

#[derive(Debug, Default)]
pub struct AuditSummary {
    pub tree_size: u64,
    pub root_hex: String,
    pub entries: u64,
    pub reports: u64,
    pub chunks: u64,
    pub replicas_checked: u64,
    pub missing: u64,
    pub corrupt: u64,
    pub findings: Vec<Finding>,
    /// Chunks the repair wrote a replica of.
    pub repaired: Vec<String>,
    /// Staging files of interrupted chunk writes the server removed from its buckets.
    pub staging_swept: u64,
    /// Chunks whose repair failed, with why.
    pub repair_failed: Vec<(String, String)>,
    /// Key rotations (kind 10) that follow from the keys before them: not problems, but
    /// every one is shown (entry index, user, who authorised it).
    pub rotations: Vec<(u64, String, String)>,
    /// Every break-glass access (kind 12) in the ledger, in ledger order: shown whether or
    /// not it is a problem (problems are in `findings` too).
    pub emergencies: Vec<EmergencySeen>,
}

/// One break-glass access (kind 12) the replay saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencySeen {
    pub index: u64,
    pub time_ms: i64,
    pub request: uuid::Uuid,
    pub patient: uuid::Uuid,
    pub reader: uuid::Uuid,
    pub release_ms: i64,
    pub reason_hash: [u8; 32],
    /// The reason, only when the server shows it to this account and it hashes to
    /// `reason_hash` (auditors are not shown reasons: docs/protocol.md §17.6).
    pub reason: Option<String>,
}

impl AuditSummary {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// A user's keys from a ledger entry on: (entry index, X25519, Ed25519).
type KeysFrom = (u64, [u8; 32], [u8; 32]);

/// Why a kind-11 entry does not follow from the ledger before it, if it does not: the
/// server's team route refuses each of these, so only a forged or rogue append makes one.
fn team_change_problem(
    roles: &HashMap<[u8; 16], crate::ledger::Role>,
    team: &HashMap<[u8; 16], u64>,
    member: &[u8; 16],
    change: crate::ledger::TeamChange,
    admin: &[u8; 16],
) -> Option<String> {
    use crate::ledger::{Role, TeamChange};
    if roles.get(admin) != Some(&Role::Admin) {
        return Some(format!(
            "made by {}, whom the ledger does not register as an administrator",
            uuid::Uuid::from_bytes(*admin)
        ));
    }
    match change {
        TeamChange::Added if roles.get(member) != Some(&Role::Doctor) => {
            Some("adds an account the ledger does not register as a doctor".into())
        }
        TeamChange::Added if team.contains_key(member) => {
            Some("adds a member already on the team".into())
        }
        TeamChange::Removed if !team.contains_key(member) => {
            Some("removes an account that is not on the team".into())
        }
        _ => None,
    }
}

/// Runs the audit. With `repair`, every chunk with a bad, missing or absent replica is sent to
/// the server's repair, which copies a verified replica.
pub async fn audit(
    client: &ApiClient,
    ledger: &Ledger,
    repair: bool,
) -> Result<AuditSummary, ClientError> {
    let head = ledger.head().clone();
    let mut s = AuditSummary {
        tree_size: head.tree_size,
        root_hex: hex::encode(head.root),
        ..AuditSummary::default()
    };
    // Replay: every entry decodes, and together they give the signed root.
    let raw = ledger.raw_entries(0, head.tree_size).await?;
    let mut tree = MerkleTree::new();
    // Each user's keys over time: (from entry, X25519, Ed25519); a report's signature is
    // checked against the keys valid at its commit entry.
    let mut keys: HashMap<[u8; 16], Vec<KeysFrom>> = HashMap::new();
    let mut key_entry: HashMap<[u8; 16], u64> = HashMap::new();
    let mut commits: HashMap<u64, Entry> = HashMap::new();
    // Break-glass (§17.6): each account's role from its kind-1 entry, and the team as the
    // kind-11 entries build it: member -> entry that added them.
    let mut roles: HashMap<[u8; 16], crate::ledger::Role> = HashMap::new();
    let mut team: HashMap<[u8; 16], u64> = HashMap::new();
    let reasons = super::emergency::reasons(client).await;
    if let Some((seen_ms, now_ms)) = ledger.older_head {
        s.findings.push(Finding::OlderHead { seen_ms, now_ms });
    }
    for (i, out) in raw.iter().enumerate() {
        let bytes = &out.entry;
        let entry =
            Entry::from_bytes(bytes).map_err(|e| ClientError::Ledger(format!("entry {i}: {e}")))?;
        tree.push_entry(bytes);
        match out.authenticated {
            Some(true) => {}
            Some(false) => s
                .findings
                .push(Finding::Unauthenticated { index: i as u64 }),
            None => s
                .findings
                .push(Finding::AuthenticatorUnknown { index: i as u64 }),
        }
        match &entry {
            Entry::UserRegistered {
                user_id,
                role,
                x25519_public,
                ed25519_public,
                ..
            } => {
                // The first key stays the one reports are checked against.
                if let Some(first) = key_entry.get(user_id) {
                    s.findings.push(Finding::SecondKey {
                        user: uuid::Uuid::from_bytes(*user_id).to_string(),
                        first: *first,
                        again: i as u64,
                    });
                } else {
                    roles.insert(*user_id, *role);
                    key_entry.insert(*user_id, i as u64);
                    keys.insert(*user_id, vec![(i as u64, *x25519_public, *ed25519_public)]);
                }
            }
            Entry::KeyRotated {
                user_id,
                old_keys_hash,
                x25519_public,
                ed25519_public,
                by,
                authoriser_id,
                ..
            } => {
                let user = uuid::Uuid::from_bytes(*user_id).to_string();
                match keys.get_mut(user_id) {
                    Some(list)
                        if list.last().is_some_and(|(_, x, e)| {
                            crate::ledger::keys_hash(x, e) == *old_keys_hash
                        }) =>
                    {
                        list.push((i as u64, *x25519_public, *ed25519_public));
                        let who = match by {
                            crate::ledger::RotationBy::Admin => {
                                format!("administrator {}", uuid::Uuid::from_bytes(*authoriser_id))
                            }
                            crate::ledger::RotationBy::VerifiedEmail => {
                                "the user's verified email".into()
                            }
                        };
                        s.rotations.push((i as u64, user, who));
                    }
                    _ => s.findings.push(Finding::BadRotation {
                        user,
                        index: i as u64,
                    }),
                }
            }
            Entry::ReportCommitted { .. } => {
                commits.insert(i as u64, entry.clone());
            }
            Entry::EmergencyTeam {
                member_id,
                change,
                admin_id,
                ..
            } => {
                if let Some(what) = team_change_problem(&roles, &team, member_id, *change, admin_id)
                {
                    s.findings.push(Finding::BadTeamChange {
                        index: i as u64,
                        member: uuid::Uuid::from_bytes(*member_id).to_string(),
                        what,
                    });
                } else if *change == crate::ledger::TeamChange::Added {
                    team.insert(*member_id, i as u64);
                } else {
                    team.remove(member_id);
                }
            }
            Entry::EmergencyAccess {
                time_ms,
                request_id,
                patient_id,
                reader_id,
                reason_hash,
                release_ms,
                ..
            } => {
                let index = i as u64;
                let reader = uuid::Uuid::from_bytes(*reader_id);
                if !team.contains_key(reader_id) {
                    s.findings.push(Finding::EmergencyNotOnTeam {
                        index,
                        reader: reader.to_string(),
                    });
                }
                let mut bad = |what: String| s.findings.push(Finding::BadEmergency { index, what });
                if roles.get(patient_id) != Some(&crate::ledger::Role::Patient) {
                    bad("on an account the ledger does not register as a patient".into());
                }
                if *release_ms < *time_ms {
                    bad(format!(
                        "whose release time ({release_ms}) is before the request ({time_ms})"
                    ));
                }
                let reason = reasons
                    .get(request_id)
                    .filter(|r| <[u8; 32]>::from(Sha256::digest(r.as_bytes())) == *reason_hash)
                    .cloned();
                s.emergencies.push(EmergencySeen {
                    index,
                    time_ms: *time_ms,
                    request: uuid::Uuid::from_bytes(*request_id),
                    patient: uuid::Uuid::from_bytes(*patient_id),
                    reader,
                    release_ms: *release_ms,
                    reason_hash: *reason_hash,
                    reason,
                });
            }
            _ => {}
        }
    }
    if tree.size() != head.tree_size || tree.root() != head.root {
        return Err(ClientError::Ledger(format!(
            "replaying the {} entries does not give the signed root",
            head.tree_size
        )));
    }
    s.entries = tree.size();

    let mut listed: std::collections::HashSet<uuid::Uuid> = Default::default();
    let mut page = 1;
    loop {
        let p = client.audit_reports(page).await?;
        if page == 1 {
            s.staging_swept = p.staging_swept;
        }
        for r in &p.reports {
            s.reports += 1;
            listed.insert(r.id);
            let rid = r.id.to_string();
            let mut report_problem = |what: String| {
                s.findings.push(Finding::Report {
                    report: rid.clone(),
                    what,
                });
            };
            if let Some(p) = &r.problem {
                report_problem(format!("the server could not read its row: {p}"));
            }
            // Keyless checks of what the server stores beside the manifest.
            if let Ok(m) = crate::seal::Manifest::from_bytes(&r.manifest) {
                if crate::seal::meta_hash(&r.meta) != m.meta_hash {
                    report_problem(
                        "its stored metadata does not match the manifest's meta_hash".into(),
                    );
                }
                if r.author_id.map(|a| a.into_bytes()) != Some(m.author_id) {
                    report_problem(
                        "the server files it under another author than the manifest names".into(),
                    );
                }
            }
            for k in &r.wrapped_keys {
                let hash: [u8; 32] = Sha256::digest(&k.wrapped).into();
                let recorded = usize::try_from(k.ledger_index)
                    .ok()
                    .and_then(|i| raw.get(i))
                    .and_then(|b| Entry::from_bytes(&b.entry).ok());
                let ok = matches!(
                    recorded,
                    Some(Entry::KeyWrapped { report_id, reader_id, wrapped_key_hash, .. })
                        if report_id == r.id.into_bytes()
                            && reader_id == k.reader_id.into_bytes()
                            && wrapped_key_hash == hash
                );
                if !ok {
                    report_problem(format!(
                        "the wrapped key stored for reader {} does not match ledger entry {}",
                        k.reader_id, k.ledger_index
                    ));
                }
            }
            let committed = commits.get(&r.ledger_index);
            let manifest_hash: [u8; 32] = Sha256::digest(&r.manifest).into();
            let author = crate::seal::Manifest::from_bytes(&r.manifest).map(|m| m.author_id);
            match (committed, author) {
                (
                    Some(Entry::ReportCommitted {
                        report_id,
                        manifest_hash: h,
                        signature,
                        ..
                    }),
                    Ok(author),
                ) if *report_id == r.id.into_bytes()
                    && *h == manifest_hash
                    && signature.as_slice() == r.signature.as_slice() =>
                {
                    let at = r.ledger_index;
                    let valid = keys
                        .get(&author)
                        .and_then(|l| l.iter().rev().find(|(from, _, _)| *from < at))
                        .map(|(_, _, e)| *e);
                    match valid {
                        Some(k) => {
                            if let Err(e) = verify_manifest(&r.manifest, &r.signature, &k) {
                                report_problem(format!("manifest: {e}"));
                            }
                        }
                        None => report_problem("its author has no key in the ledger".into()),
                    }
                }
                _ => report_problem("its ledger commit entry does not match its manifest".into()),
            }
            let ids: Vec<[u8; 32]> = r
                .chunks
                .iter()
                .filter_map(|c| {
                    let mut b = [0u8; 32];
                    hex::decode_to_slice(&c.chunk_id, &mut b).ok().map(|_| b)
                })
                .collect();
            let manifest = crate::seal::Manifest::from_bytes(&r.manifest).ok();
            if let Some(m) = &manifest
                && (ids.len() != m.n_chunks as usize
                    || chain_head(&m.report_id, &ids) != Some(m.head))
            {
                s.findings.push(Finding::Report {
                    report: rid.clone(),
                    what: "its chunk list does not chain to the manifest's head".into(),
                });
            }
            for (index, c) in r.chunks.iter().enumerate() {
                s.chunks += 1;
                let mut bad = false;
                if c.replicas.len() < p.replicas as usize {
                    bad = true;
                    s.findings.push(Finding::UnderReplicated {
                        chunk: c.chunk_id.clone(),
                        have: c.replicas.len(),
                        want: p.replicas as usize,
                    });
                }
                // At most the length the manifest implies for this index.
                let max = manifest.as_ref().map_or(
                    crate::seal::MAX_CHUNK_SIZE as usize + crate::seal::TAG_LEN,
                    |m| super::chunk_ciphertext_len(m, u32::try_from(index).unwrap_or(u32::MAX)),
                );
                for bucket in &c.replicas {
                    s.replicas_checked += 1;
                    match client.chunk_limited(&c.chunk_id, Some(bucket), max).await {
                        Ok(bytes) => {
                            if hex::encode(Sha256::digest(&bytes)) != c.chunk_id {
                                bad = true;
                                s.corrupt += 1;
                                s.findings.push(Finding::Corrupt {
                                    chunk: c.chunk_id.clone(),
                                    bucket: bucket.clone(),
                                    report: rid.clone(),
                                    index,
                                });
                            }
                        }
                        Err(ClientError::Server { status: 404, .. }) => {
                            bad = true;
                            s.missing += 1;
                            s.findings.push(Finding::Missing {
                                chunk: c.chunk_id.clone(),
                                bucket: bucket.clone(),
                                report: rid.clone(),
                                index,
                            });
                        }
                        Err(ClientError::Server { status: 503, .. }) => {
                            bad = true;
                            s.findings.push(Finding::Unreachable {
                                chunk: c.chunk_id.clone(),
                                bucket: bucket.clone(),
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
                if bad && repair {
                    match client.audit_repair(&c.chunk_id).await {
                        Ok(_) => s.repaired.push(c.chunk_id.clone()),
                        Err(e) => {
                            tracing::warn!(chunk = %c.chunk_id, error = %e, "repair failed");
                            s.repair_failed.push((c.chunk_id.clone(), e.to_string()));
                        }
                    }
                }
            }
        }
        match p.next_page {
            Some(n) => page = n,
            None => break,
        }
    }
    // Every commit the ledger records must be a committed report the server lists: a report
    // whose row was edited back to "open" (or deleted) is hidden from the checks above.
    let mut unlisted: Vec<(u64, uuid::Uuid)> = commits
        .iter()
        .filter_map(|(i, e)| match e {
            Entry::ReportCommitted { report_id, .. } => {
                Some((*i, uuid::Uuid::from_bytes(*report_id)))
            }
            _ => None,
        })
        .filter(|(_, id)| !listed.contains(id))
        .collect();
    unlisted.sort();
    for (index, id) in unlisted {
        s.findings.push(Finding::Report {
            report: id.to_string(),
            what: format!(
                "ledger entry {index} records it committed, but the server does not list it \
                 as a committed report (its row edited or deleted?)"
            ),
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Role, TeamChange};

    #[test]
    fn a_team_change_counts_only_from_an_admin_for_a_doctor_in_order() {
        let (admin, doc, pat) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        let roles: HashMap<[u8; 16], Role> = [
            (admin, Role::Admin),
            (doc, Role::Doctor),
            (pat, Role::Patient),
        ]
        .into();
        let mut team = HashMap::new();
        let check = |team: &HashMap<[u8; 16], u64>, who, change, by| {
            team_change_problem(&roles, team, &who, change, &by)
        };
        assert_eq!(check(&team, doc, TeamChange::Added, admin), None);
        // A doctor cannot add themselves; an unregistered account is no admin either.
        assert!(
            check(&team, doc, TeamChange::Added, doc)
                .unwrap()
                .contains("does not register as an administrator")
        );
        assert!(check(&team, doc, TeamChange::Added, [9; 16]).is_some());
        assert!(
            check(&team, pat, TeamChange::Added, admin)
                .unwrap()
                .contains("not register as a doctor")
        );
        assert!(check(&team, doc, TeamChange::Removed, admin).is_some());
        team.insert(doc, 5);
        assert!(check(&team, doc, TeamChange::Added, admin).is_some());
        assert_eq!(check(&team, doc, TeamChange::Removed, admin), None);
    }
}
