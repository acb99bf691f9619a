//! The client's side of the ledger (DESIGN.md §6): the server's key pinned per server URL,
//! the last verified signed head kept in the state folder, a consistency proof on every sync,
//! and an inclusion proof for every entry the client relies on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ApiClient, ClientError};
use crate::api::{LedgerEntries, LedgerEntryOut, LedgerHead, LedgerProof, Role, UserKeys};
use crate::ledger::{
    Entry, LedgerKey, SignedHead, leaf_hash, verify_consistency, verify_inclusion,
};
use crate::seal::PublicKeys;

/// What this client saw of other users' keys, per server (like ssh's known_hosts): a key
/// that later differs is refused (issue 11).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
struct KnownKey {
    name: String,
    fingerprint: String,
    x25519: String,
    ed25519: String,
    entry: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct KnownKeys {
    server: String,
    users: std::collections::BTreeMap<Uuid, KnownKey>,
}

/// One stretch of a user's key history: the keys from ledger entry `index` on.
#[derive(Debug, Clone)]
struct KeyEpoch {
    index: u64,
    keys: PublicKeys,
    /// `None` for the registration (kind 1); the rotation (kind 10) otherwise.
    rotation: Option<Rotation>,
}

/// A verified key rotation (kind 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub index: u64,
    pub time_ms: i64,
    pub by: crate::ledger::RotationBy,
    pub authoriser: Uuid,
}

impl Rotation {
    /// "the clinic administrator (user …)" or "their own verified email".
    pub fn by_text(&self) -> String {
        match self.by {
            crate::ledger::RotationBy::Admin => {
                format!("the clinic administrator (user {})", self.authoriser)
            }
            crate::ledger::RotationBy::VerifiedEmail => "their own verified email".into(),
        }
    }
}

/// What [`Ledger::accept_key_change`] accepted.
#[derive(Debug, Clone)]
pub struct KeyChange {
    pub name: String,
    pub before: String,
    pub now: String,
    pub rotations: Vec<Rotation>,
}

/// A second registration (kind 1) for one user: keys change only by a rotation entry, so
/// this is an impersonation attempt (issue 11).
fn second_registration(keys: &UserKeys) -> Result<(), ClientError> {
    let registrations: Vec<u64> = keys
        .key_entries
        .iter()
        .filter(|e| {
            matches!(
                Entry::from_bytes(&e.entry),
                Ok(Entry::UserRegistered { .. })
            )
        })
        .map(|e| e.index)
        .collect();
    match registrations.as_slice() {
        [first, later @ ..] if !later.is_empty() => Err(ClientError::KeyChanged(format!(
            "the ledger shows more than one key for {} (user {}; entries {first} and {}): keys \
             change only by a rotation entry, so someone may be impersonating them — refusing; \
             tell your clinic's administrator",
            keys.name,
            keys.user_id,
            later
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        _ => Ok(()),
    }
}

fn known_key(keys: &UserKeys) -> KnownKey {
    KnownKey {
        name: keys.name.clone(),
        fingerprint: crate::seal::fingerprint(&keys.public_keys),
        x25519: hex::encode(keys.public_keys.x25519),
        ed25519: hex::encode(keys.public_keys.ed25519),
        entry: keys.key_index,
    }
}

fn same_keys(a: &KnownKey, b: &KnownKey) -> bool {
    a.x25519 == b.x25519 && a.ed25519 == b.ed25519
}

fn matches_known(k: &KnownKey, keys: &PublicKeys) -> bool {
    k.x25519 == hex::encode(keys.x25519) && k.ed25519 == hex::encode(keys.ed25519)
}

fn substituted(before: &KnownKey, now: &KnownKey, keys: &UserKeys) -> ClientError {
    ClientError::KeyChanged(format!(
        "the key of {} (user {}) is not the one this client verified before: fingerprint \
         {} (entry {}) then, {} (entry {}) now, and no key rotation in the ledger leads from \
         one to the other, so someone may be impersonating them — refusing; tell your \
         clinic's administrator",
        keys.name, keys.user_id, before.fingerprint, before.entry, now.fingerprint, now.entry
    ))
}

/// A user's key history from their key entries (index order): the first registration, then
/// each rotation, which must name the keys before it by [`crate::ledger::keys_hash`]. A
/// second registration is left out here; callers refuse it.
fn chain(user: Uuid, entries: &[(u64, Entry)]) -> Result<Vec<KeyEpoch>, String> {
    let mut out: Vec<KeyEpoch> = Vec::new();
    let mut last_index = None;
    for (index, e) in entries {
        if last_index.is_some_and(|l| *index <= l) {
            return Err(format!(
                "the key entries for user {user} are not in ledger order"
            ));
        }
        last_index = Some(*index);
        match e {
            Entry::UserRegistered {
                x25519_public,
                ed25519_public,
                ..
            } if out.is_empty() => out.push(KeyEpoch {
                index: *index,
                keys: PublicKeys {
                    x25519: *x25519_public,
                    ed25519: *ed25519_public,
                },
                rotation: None,
            }),
            Entry::UserRegistered { .. } => {}
            Entry::KeyRotated {
                time_ms,
                old_keys_hash,
                x25519_public,
                ed25519_public,
                by,
                authoriser_id,
                ..
            } => {
                let Some(prev) = out.last() else {
                    return Err(format!(
                        "entry {index}: a key rotation for user {user} before any key entry"
                    ));
                };
                if crate::ledger::keys_hash(&prev.keys.x25519, &prev.keys.ed25519) != *old_keys_hash
                {
                    return Err(format!(
                        "entry {index}: a key rotation for user {user} that does not replace \
                         the keys the ledger held for them — refusing"
                    ));
                }
                out.push(KeyEpoch {
                    index: *index,
                    keys: PublicKeys {
                        x25519: *x25519_public,
                        ed25519: *ed25519_public,
                    },
                    rotation: Some(Rotation {
                        index: *index,
                        time_ms: *time_ms,
                        by: *by,
                        authoriser: Uuid::from_bytes(*authoriser_id),
                    }),
                });
            }
            _ => return Err(format!("entry {index} is not a key entry for user {user}")),
        }
    }
    Ok(out)
}

fn known_keys_file(state_dir: &Path, server: &str) -> PathBuf {
    let tag = hex::encode(&Sha256::digest(server.as_bytes())[..12]);
    state_dir.join("known_keys").join(format!("{tag}.json"))
}

/// What is kept per server: the pinned key and the whole last verified head.
#[derive(Serialize, Deserialize)]
struct Saved {
    server: String,
    ledger_key: String,
    signed_head: String,
}

/// Unix milliseconds as a UTC time, for messages.
fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
    )
}

fn ledger_error(what: impl std::fmt::Display) -> ClientError {
    ClientError::Ledger(what.to_string())
}

/// A ledger view whose head this client verified: signature, age, and consistency with every
/// head it saw before from this server.
pub struct Ledger {
    client: ApiClient,
    key: LedgerKey,
    head: SignedHead,
    path: PathBuf,
    max_age_secs: u64,
    /// Set when this sync pinned the key on first use (the caller may want to say so).
    pub pinned_now: bool,
    /// Set when the server's head is dated before the head this client saw earlier (same or
    /// larger tree, so not refused, but a monitor reports it): (seen before, now), unix ms.
    pub older_head: Option<(i64, i64)>,
    known_keys: PathBuf,
    server: String,
    /// The configured witnesses that validly cosigned this head's checkpoint.
    pub cosigned_by: Vec<String>,
    policy: WitnessPolicy,
}

/// Which witnesses' cosignatures count, and how many a head needs (`[client] witnesses`,
/// `witness_quorum`).
#[derive(Debug, Clone, Default)]
pub struct WitnessPolicy {
    pub witnesses: Vec<crate::witness::note::VerifierKey>,
    pub quorum: usize,
}

impl WitnessPolicy {
    /// From the config's vkey strings; refuses a quorum larger than the witnesses.
    pub fn from_config(vkeys: &[String], quorum: usize) -> Result<Self, ClientError> {
        let mut witnesses = Vec::new();
        for v in vkeys {
            let k = crate::witness::note::VerifierKey::parse(v)
                .map_err(|e| ledger_error(format!("[client] witnesses: {v:?}: {e}")))?;
            if k.sig_type != crate::witness::note::SIG_COSIGNATURE_V1 {
                return Err(ledger_error(format!(
                    "[client] witnesses: {v:?} is not a cosignature key (type 0x04)"
                )));
            }
            witnesses.push(k);
        }
        if quorum > witnesses.len() {
            return Err(ledger_error(format!(
                "[client] witness_quorum = {quorum} but only {} witnesses are configured",
                witnesses.len()
            )));
        }
        Ok(WitnessPolicy { witnesses, quorum })
    }
}

/// Which configured witnesses cosigned the checkpoint of `head`; the checkpoint must be that
/// head (size and root) and signed by the ledger key under its origin.
fn check_checkpoint(
    text: &str,
    head: &SignedHead,
    key: &LedgerKey,
    policy: &WitnessPolicy,
) -> Result<Vec<String>, ClientError> {
    use crate::witness::note::{Checkpoint, Note, SIG_ED25519, VerifierKey, cosigned_by};
    if text.is_empty() && policy.quorum == 0 {
        return Ok(Vec::new());
    }
    let bad = |e: String| ledger_error(format!("the head's checkpoint: {e}"));
    let note = Note::parse(text).map_err(|e| bad(e.to_string()))?;
    let cp = Checkpoint::parse(&note.text).map_err(|e| bad(e.to_string()))?;
    if cp.size != head.tree_size || cp.root != head.root {
        return Err(bad("it is not the signed head's size and root".into()));
    }
    let log = VerifierKey::new(&cp.origin, SIG_ED25519, key.0).map_err(|e| bad(e.to_string()))?;
    note.verify_ed25519(&log).map_err(|e| bad(e.to_string()))?;
    let by = cosigned_by(&note, &policy.witnesses);
    if by.len() < policy.quorum {
        return Err(ledger_error(format!(
            "the ledger head carries {} valid witness cosignatures, fewer than the {} required \
             (witness_quorum); refusing it",
            by.len(),
            policy.quorum
        )));
    }
    Ok(by)
}

fn state_file(state_dir: &Path, server: &str) -> PathBuf {
    let tag = hex::encode(&Sha256::digest(server.as_bytes())[..12]);
    state_dir.join("ledger").join(format!("{tag}.json"))
}

fn load(path: &Path) -> Result<Option<Saved>, ClientError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ledger_error(format!(
                "the saved ledger state {} is unreadable ({e}); it must not be edited by hand",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::Session(e)),
    }
}

/// The ledger key this client pinned (or was configured with) for `server`, as remembered in
/// its state folder: what `verify-bundle` checks a bundle against when given no key.
pub fn pinned_key(state_dir: &Path, server: &str) -> Result<Option<LedgerKey>, ClientError> {
    match load(&state_file(state_dir, server))? {
        Some(s) => LedgerKey::parse(&s.ledger_key)
            .map(Some)
            .map_err(|e| ledger_error(format!("the saved ledger key: {e}"))),
        None => Ok(None),
    }
}

/// Write to a temporary file, fsync, rename: the saved head is never half-written.
fn save(path: &Path, saved: &Saved) -> Result<(), ClientError> {
    write_private_json(path, saved)
}

fn write_private_json(path: &Path, saved: &impl Serialize) -> Result<(), ClientError> {
    let bytes = serde_json::to_vec_pretty(saved).map_err(|e| ledger_error(e.to_string()))?;
    crate::fsutil::write_private_atomic(path, &bytes)?;
    Ok(())
}

impl Ledger {
    /// Fetches the latest signed head and checks it against the pinned key (from the config,
    /// else the saved one, else pinned now on first use), its age, and — when a head was
    /// verified before — a consistency proof from that head. Saves the new head.
    pub async fn sync(
        client: &ApiClient,
        state_dir: &Path,
        configured_key: Option<&LedgerKey>,
        max_age_secs: u64,
    ) -> Result<Ledger, ClientError> {
        Self::sync_with(
            client,
            state_dir,
            configured_key,
            max_age_secs,
            &WitnessPolicy::default(),
        )
        .await
    }

    /// [`Ledger::sync`], also requiring `policy.quorum` witness cosignatures on the head.
    pub async fn sync_with(
        client: &ApiClient,
        state_dir: &Path,
        configured_key: Option<&LedgerKey>,
        max_age_secs: u64,
        policy: &WitnessPolicy,
    ) -> Result<Ledger, ClientError> {
        let server = client.base_url().to_string();
        let path = state_file(state_dir, &server);
        let saved = load(&path)?;
        let answer: LedgerHead = client.get("/v1/ledger/head", &[]).await?;
        let mut pinned_now = false;
        let key = match (configured_key, &saved) {
            (Some(k), Some(s)) => {
                if s.ledger_key != k.to_string() {
                    return Err(ledger_error(format!(
                        "the configured ledger key differs from the one pinned earlier for {server}; \
                         if the clinic really changed it, remove {}",
                        path.display()
                    )));
                }
                *k
            }
            (Some(k), None) => *k,
            (None, Some(s)) => LedgerKey::parse(&s.ledger_key).map_err(ledger_error)?,
            (None, None) => {
                pinned_now = true;
                LedgerKey::parse(&answer.ledger_key).map_err(|e| {
                    ledger_error(format!("the server's ledger key is not valid: {e}"))
                })?
            }
        };
        let head = SignedHead::from_bytes(&answer.signed_head)
            .map_err(|e| ledger_error(format!("signed head: {e}")))?;
        let now = chrono::Utc::now().timestamp_millis();
        head.verify_fresh(key.as_bytes(), now, max_age_secs.saturating_mul(1000))
            .map_err(|e| ledger_error(format!("signed head: {e}")))?;
        let cosigned_by = check_checkpoint(&answer.checkpoint, &head, &key, policy)?;
        let mut older_head = None;
        if let Some(s) = &saved {
            let bytes = hex::decode(&s.signed_head).map_err(ledger_error)?;
            let old = SignedHead::from_bytes(&bytes).map_err(ledger_error)?;
            check_extends(client, &old, &head).await?;
            if head.time_ms < old.time_ms {
                // The same tree signed earlier than a head already seen: a replayed head that
                // could hide newer entries behind an old date (issue 17). Refused.
                if head.tree_size == old.tree_size {
                    return Err(ledger_error(format!(
                        "the server's signed head of {} entries is dated {}, before the head of \
                         the same size this client verified before ({}): heads must move \
                         forward in time; refusing it",
                        head.tree_size,
                        fmt_ms(head.time_ms),
                        fmt_ms(old.time_ms)
                    )));
                }
                // A larger tree dated earlier is not refused (server clocks may differ a
                // little), but reported by the audit.
                older_head = Some((old.time_ms, head.time_ms));
            }
        }
        save(
            &path,
            &Saved {
                server: server.clone(),
                ledger_key: key.to_string(),
                signed_head: hex::encode(head.to_bytes()),
            },
        )?;
        Ok(Ledger {
            client: client.clone(),
            key,
            head,
            path,
            max_age_secs,
            pinned_now,
            older_head,
            known_keys: known_keys_file(state_dir, &server),
            server,
            cosigned_by,
            policy: policy.clone(),
        })
    }

    /// Syncs again (after this client caused an append): new head, checked against this one.
    pub async fn refresh(&mut self) -> Result<(), ClientError> {
        let dir = self.state_dir();
        let fresh = Ledger::sync_with(
            &self.client,
            &dir,
            Some(&self.key),
            self.max_age_secs,
            &self.policy,
        )
        .await?;
        check_extends(&self.client, &self.head, &fresh.head).await?;
        self.head = fresh.head;
        self.cosigned_by = fresh.cosigned_by;
        Ok(())
    }

    pub fn head(&self) -> &SignedHead {
        &self.head
    }

    /// The witness policy this view was verified under.
    pub fn policy(&self) -> &WitnessPolicy {
        &self.policy
    }

    pub fn key(&self) -> &LedgerKey {
        &self.key
    }

    /// Checks that `entry` (bytes the caller has checked field by field) is leaf `index` of
    /// the verified tree.
    pub async fn check_included(&self, index: u64, entry: &[u8]) -> Result<(), ClientError> {
        if index >= self.head.tree_size {
            return Err(ledger_error(format!(
                "entry {index} is not in the verified tree of {} entries",
                self.head.tree_size
            )));
        }
        let proof: LedgerProof = self
            .client
            .get(
                "/v1/ledger/inclusion",
                &[
                    ("index", index.to_string()),
                    ("size", self.head.tree_size.to_string()),
                ],
            )
            .await?;
        verify_inclusion(
            index,
            self.head.tree_size,
            &leaf_hash(entry),
            &proof.hashes,
            &self.head.root,
        )
        .map_err(|e| ledger_error(format!("inclusion of entry {index}: {e}")))
    }

    /// Decodes an entry the server handed over and checks its inclusion.
    pub async fn checked_entry(&self, index: u64, bytes: &[u8]) -> Result<Entry, ClientError> {
        let entry =
            Entry::from_bytes(bytes).map_err(|e| ledger_error(format!("entry {index}: {e}")))?;
        self.check_included(index, bytes).await?;
        Ok(entry)
    }

    /// A user's public keys, checked against their registration entry in the ledger, against
    /// every other key entry for them (a second registration is refused; key rotations, kind
    /// 10, must each replace the keys before them), and against the key this client saw for
    /// them before (recorded on first sight, per server). A rotation since then is refused
    /// with [`ClientError::KeyRotated`] until the user compares fingerprints and accepts it
    /// ([`Ledger::accept_key_change`]): this is what every wrap and consent check goes through.
    pub async fn user_keys(&self, user: Uuid, role: Option<Role>) -> Result<UserKeys, ClientError> {
        let (keys, history) = self.key_history(user, role).await?;
        second_registration(&keys)?;
        self.check_known(&keys, &history, false)?;
        Ok(keys)
    }

    /// The Ed25519 key `user` signed with at ledger index `at` (a report's commit entry): the
    /// newest of their key entries before it, with their current checked keys (their role)
    /// beside it. Checks the keys as [`Ledger::user_keys`], except that a rotation this client
    /// has not accepted yet does not stop reading.
    pub async fn signer_at(
        &self,
        user: Uuid,
        role: Option<Role>,
        at: u64,
    ) -> Result<(UserKeys, [u8; 32]), ClientError> {
        let (keys, history) = self.key_history(user, role).await?;
        second_registration(&keys)?;
        self.check_known(&keys, &history, true)?;
        let key = history
            .iter()
            .rev()
            .find(|k| k.index < at)
            .map(|k| k.keys.ed25519)
            .ok_or_else(|| {
                ledger_error(format!(
                    "user {user} had no key in the ledger before entry {at}"
                ))
            })?;
        Ok((keys, key))
    }

    /// The index of `user`'s registration (first key entry): nothing is about them before it.
    pub async fn registration_index(&self, user: Uuid) -> Result<u64, ClientError> {
        let (_, history) = self.key_history(user, None).await?;
        history
            .first()
            .map(|k| k.index)
            .ok_or_else(|| ledger_error(format!("user {user} has no key entry")))
    }

    /// After comparing fingerprints with the user (issue 15): records the keys the ledger's
    /// rotation entries lead to as the ones this client knows for `user`. Refused unless the
    /// keys known before are in the verified chain (a substitution is never accepted).
    pub async fn accept_key_change(&self, user: Uuid) -> Result<KeyChange, ClientError> {
        let (keys, history) = self.key_history(user, None).await?;
        second_registration(&keys)?;
        let mut known = self.read_known()?;
        let now = known_key(&keys);
        let change = match known.users.get(&keys.user_id) {
            Some(before) if same_keys(before, &now) => None,
            Some(before) => {
                let Some(from) = history.iter().position(|k| matches_known(before, &k.keys)) else {
                    return Err(substituted(before, &now, &keys));
                };
                Some(KeyChange {
                    name: keys.name.clone(),
                    before: before.fingerprint.clone(),
                    now: now.fingerprint.clone(),
                    rotations: history[from + 1..]
                        .iter()
                        .filter_map(|k| k.rotation.clone())
                        .collect(),
                })
            }
            None => None,
        };
        known.users.insert(keys.user_id, now);
        write_private_json(&self.known_keys, &known)?;
        Ok(change.unwrap_or(KeyChange {
            name: keys.name.clone(),
            before: crate::seal::fingerprint(&keys.public_keys),
            now: crate::seal::fingerprint(&keys.public_keys),
            rotations: Vec::new(),
        }))
    }

    /// The keys the server gives, each key entry checked for inclusion and decoded, and the
    /// user's key history the entries make: the registration, then each rotation chained to
    /// the keys before it. The server's current keys must be the end of that chain.
    async fn key_history(
        &self,
        user: Uuid,
        role: Option<Role>,
    ) -> Result<(UserKeys, Vec<KeyEpoch>), ClientError> {
        let keys: UserKeys = self
            .client
            .get(&format!("/v1/users/{user}/keys"), &[])
            .await?;
        let entry = self.checked_entry(keys.key_index, &keys.key_entry).await?;
        let (uid, x, e) = match entry {
            Entry::UserRegistered {
                user_id,
                x25519_public,
                ed25519_public,
                ..
            }
            | Entry::KeyRotated {
                user_id,
                x25519_public,
                ed25519_public,
                ..
            } => (user_id, x25519_public, ed25519_public),
            _ => ([0; 16], [0; 32], [0; 32]),
        };
        if uid != *user.as_bytes()
            || keys.user_id != user
            || x != keys.public_keys.x25519
            || e != keys.public_keys.ed25519
        {
            return Err(ledger_error(format!(
                "the keys the server gave for user {user} are not the ones the ledger registered"
            )));
        }
        let mut checked = Vec::with_capacity(keys.key_entries.len());
        for k in &keys.key_entries {
            let entry = self.checked_entry(k.index, &k.entry).await?;
            match &entry {
                Entry::UserRegistered { user_id, .. } | Entry::KeyRotated { user_id, .. }
                    if *user_id == *user.as_bytes() => {}
                _ => {
                    return Err(ledger_error(format!(
                        "entry {} is not a key entry for user {user}",
                        k.index
                    )));
                }
            }
            checked.push((k.index, entry));
        }
        if checked.is_empty() {
            // Servers before issue 11 list no key entries: the one at key_index stands alone.
            checked.push((keys.key_index, entry));
        }
        let history = chain(user, &checked).map_err(ledger_error)?;
        let registered = checked.iter().find_map(|(_, e)| match e {
            Entry::UserRegistered { role, .. } => Some(*role as u8),
            _ => None,
        });
        let last = history.last().map(|k| (k.index, k.keys));
        let registrations = checked
            .iter()
            .filter(|(_, e)| matches!(e, Entry::UserRegistered { .. }))
            .count();
        // With a second registration the chain's end means nothing: callers refuse it
        // (impersonation), so it is not compared here.
        if registered != Some(keys.role.ledger_code())
            || role.is_some_and(|r| r != keys.role)
            || (registrations == 1 && last != Some((keys.key_index, keys.public_keys)))
        {
            return Err(ledger_error(format!(
                "the keys the server gave for user {user} are not the ones the ledger registered"
            )));
        }
        Ok((keys, history))
    }

    fn read_known(&self) -> Result<KnownKeys, ClientError> {
        match std::fs::read(&self.known_keys) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                ledger_error(format!(
                    "the known keys {} are unreadable ({e}); they must not be edited by hand",
                    self.known_keys.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KnownKeys {
                server: self.server.clone(),
                ..KnownKeys::default()
            }),
            Err(e) => Err(ClientError::Session(e)),
        }
    }

    /// The known-keys store: the first key seen for a user is kept; a different one later is
    /// a substitution (refused) unless the ledger's rotation entries lead from it to the new
    /// one: then it is a key change the user must see and accept before sharing (unless only
    /// reading, `reading`).
    fn check_known(
        &self,
        keys: &UserKeys,
        history: &[KeyEpoch],
        reading: bool,
    ) -> Result<(), ClientError> {
        let mut known = self.read_known()?;
        let now = known_key(keys);
        match known.users.get(&keys.user_id) {
            Some(before) if same_keys(before, &now) => Ok(()),
            Some(before) => {
                let Some(from) = history.iter().position(|k| matches_known(before, &k.keys)) else {
                    return Err(substituted(before, &now, keys));
                };
                if reading {
                    return Ok(());
                }
                let latest = history[from + 1..]
                    .iter()
                    .rev()
                    .find_map(|k| k.rotation.clone());
                let (when, by, entry) = latest
                    .map(|r| (fmt_ms(r.time_ms), r.by_text(), r.index))
                    .unwrap_or_default();
                Err(ClientError::KeyRotated(format!(
                    "{}'s key changed on {when}, authorised by {by} (ledger entry {entry}): compare \
                     fingerprints before sharing. Before: {}; now: {}. Ask {} for theirs (in \
                     person or by phone); if they match, accept with `clinvault accept-key \
                     --user {}`",
                    keys.name, before.fingerprint, now.fingerprint, keys.name, keys.user_id
                )))
            }
            None => {
                known.users.insert(keys.user_id, now);
                write_private_json(&self.known_keys, &known)
            }
        }
    }

    /// At login and unlock: the ledger's key chain for this account must end in the keys just
    /// unsealed, hold no second registration, and the server's record must be the same;
    /// otherwise someone may be impersonating this user.
    pub async fn check_self(&self, user: Uuid, mine: &PublicKeys) -> Result<(), ClientError> {
        let (keys, history) = self.key_history(user, None).await?;
        let mut other = None;
        let mut registrations = 0;
        for e in &keys.key_entries {
            if let Ok(Entry::UserRegistered {
                x25519_public,
                ed25519_public,
                ..
            }) = Entry::from_bytes(&e.entry)
            {
                registrations += 1;
                // Replaced keys are fine when a verified rotation follows them.
                let replaced = history
                    .iter()
                    .any(|k| k.index > e.index && k.rotation.is_some());
                if (x25519_public != mine.x25519 || ed25519_public != mine.ed25519) && !replaced
                    || registrations > 1
                {
                    other = Some(e.index);
                }
            }
        }
        if other.is_none() && history.last().is_some_and(|k| &k.keys != mine) {
            other = history.last().map(|k| k.index);
        }
        if other.is_none() && &keys.public_keys != mine {
            other = Some(keys.key_index);
        }
        match other {
            Some(entry) => Err(ClientError::Impersonation { entry }),
            None => Ok(()),
        }
    }

    /// Every entry the server lets this user read (all of them for auditors and admins),
    /// each checked for inclusion.
    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Entry)>, ClientError> {
        let mut out = Vec::new();
        for e in self.pages(start, end).await? {
            out.push((e.index, self.checked_entry(e.index, &e.entry).await?));
        }
        Ok(out)
    }

    /// Raw entries `start..end` (auditors), for replaying the whole tree: none may be skipped.
    /// Each carries the server's word on its append authenticator.
    pub async fn raw_entries(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<LedgerEntryOut>, ClientError> {
        let mut out = Vec::new();
        for (expected, e) in (start..).zip(self.pages(start, end).await?) {
            if e.index != expected {
                return Err(ledger_error(format!(
                    "the server skipped ledger entry {expected} (sent {})",
                    e.index
                )));
            }
            out.push(e);
        }
        Ok(out)
    }

    /// The entries the server answers with for `start..end`, page after page, each page
    /// covering `from..next` as the server says; a page may be empty and not the last.
    async fn pages(&self, start: u64, end: u64) -> Result<Vec<LedgerEntryOut>, ClientError> {
        self.pages_of(start, end, false).await
    }

    /// [`Ledger::pages`]; with `all`, every entry rather than those about the caller.
    async fn pages_of(
        &self,
        start: u64,
        end: u64,
        all: bool,
    ) -> Result<Vec<LedgerEntryOut>, ClientError> {
        let mut out: Vec<LedgerEntryOut> = Vec::new();
        let mut from = start;
        while from < end {
            let page: LedgerEntries = self
                .client
                .get_limited(
                    "/v1/ledger/entries",
                    &[
                        ("start", from.to_string()),
                        ("end", end.to_string()),
                        ("all", all.to_string()),
                    ],
                    super::LEDGER_PAGE_LIMIT,
                )
                .await?;
            if page.next <= from || page.next > end {
                return Err(ledger_error(format!(
                    "the server's page of ledger entries from {from} ends at {}, not between {} and {end}",
                    page.next,
                    from + 1
                )));
            }
            let mut expect = from;
            for e in &page.entries {
                if e.index < expect || e.index >= page.next {
                    return Err(ledger_error("the server sent ledger entries out of order"));
                }
                expect = e.index + 1;
            }
            from = page.next;
            out.extend(page.entries);
        }
        Ok(out)
    }

    /// The state folder this view keeps its saved head in.
    pub fn state_dir(&self) -> PathBuf {
        self.path
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The client this view talks to.
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// The compact range of the first `size` leaves, as the server gives it (unverified).
    pub async fn frontier(&self, size: u64) -> Result<Vec<Vec<u8>>, ClientError> {
        let p: LedgerProof = self
            .client
            .get("/v1/ledger/frontier", &[("size", size.to_string())])
            .await?;
        Ok(p.hashes)
    }

    /// Every entry `start..end`, whoever it is about (any user may replay), none skipped.
    pub async fn every_entry(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<LedgerEntryOut>, ClientError> {
        let mut out = Vec::new();
        for (expected, e) in (start..).zip(self.pages_of(start, end, true).await?) {
            if e.index != expected {
                return Err(ledger_error(format!(
                    "the server skipped ledger entry {expected} (sent {})",
                    e.index
                )));
            }
            out.push(e);
        }
        if out.len() as u64 != end - start {
            return Err(ledger_error(format!(
                "the server sent {} of the ledger entries {start}..{end}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// The indexes the server's "entries about me" answer lists for `start..end`.
    pub async fn subject_indexes(&self, start: u64, end: u64) -> Result<Vec<u64>, ClientError> {
        Ok(self
            .pages(start, end)
            .await?
            .into_iter()
            .map(|e| e.index)
            .collect())
    }

    /// The newest `n` entries about this user from the whole ledger (every page read, so none
    /// is missed however far back), each checked for inclusion.
    pub async fn latest_entries(&self, n: usize) -> Result<Vec<(u64, Entry)>, ClientError> {
        let all = self.pages(0, self.head.tree_size).await?;
        let mut out = Vec::new();
        for e in &all[all.len().saturating_sub(n)..] {
            out.push((e.index, self.checked_entry(e.index, &e.entry).await?));
        }
        Ok(out)
    }
}

/// The new head must extend the old one: same or larger tree, consistent prefix.
async fn check_extends(
    client: &ApiClient,
    old: &SignedHead,
    new: &SignedHead,
) -> Result<(), ClientError> {
    if new.tree_size < old.tree_size {
        return Err(ledger_error(format!(
            "rollback: the server's ledger has {} entries, fewer than the {} this client verified before",
            new.tree_size, old.tree_size
        )));
    }
    if old.tree_size == 0 {
        return Ok(());
    }
    let proof: Vec<Vec<u8>> = if old.tree_size == new.tree_size {
        Vec::new()
    } else {
        let p: LedgerProof = client
            .get(
                "/v1/ledger/consistency",
                &[
                    ("from", old.tree_size.to_string()),
                    ("to", new.tree_size.to_string()),
                ],
            )
            .await?;
        p.hashes
    };
    verify_consistency(old.tree_size, new.tree_size, &old.root, &new.root, &proof).map_err(|e| {
        ledger_error(format!(
            "the ledger is not consistent with the head verified before ({} entries): {e}",
            old.tree_size
        ))
    })
}

/// The monitor every login and unlock runs (issue 11): syncs the ledger, then checks that the
/// ledger's key entries for this account are the keys just unsealed.
pub async fn monitor_self(
    client: &ApiClient,
    state_dir: &Path,
    configured_key: Option<&LedgerKey>,
    max_age_secs: u64,
    me: &super::LoggedIn,
) -> Result<Ledger, ClientError> {
    monitor_self_with(
        client,
        state_dir,
        configured_key,
        max_age_secs,
        &WitnessPolicy::default(),
        me,
    )
    .await
}

/// [`monitor_self`] under a witness policy.
pub async fn monitor_self_with(
    client: &ApiClient,
    state_dir: &Path,
    configured_key: Option<&LedgerKey>,
    max_age_secs: u64,
    policy: &WitnessPolicy,
    me: &super::LoggedIn,
) -> Result<Ledger, ClientError> {
    let ledger = Ledger::sync_with(client, state_dir, configured_key, max_age_secs, policy).await?;
    ledger
        .check_self(me.login.user.id, &me.secrets.public())
        .await?;
    Ok(ledger)
}
