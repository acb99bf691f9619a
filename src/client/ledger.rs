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
    /// every other key entry for them (v1 has none), and against the key this client saw for
    /// them before (recorded on first sight, per server).
    pub async fn user_keys(&self, user: Uuid, role: Option<Role>) -> Result<UserKeys, ClientError> {
        let keys = self.registered_keys(user, role).await?;
        let later: Vec<u64> = keys
            .key_entries
            .iter()
            .map(|e| e.index)
            .filter(|&i| i != keys.key_index)
            .collect();
        if !later.is_empty() {
            return Err(ClientError::KeyChanged(format!(
                "the ledger shows more than one key for {} (user {user}; entries {} and {}): \
                 v1 has no key changes, so someone may be impersonating them — refusing; tell \
                 your clinic's administrator",
                keys.name,
                keys.key_index,
                later
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.check_known(&keys)?;
        Ok(keys)
    }

    /// The keys the server gives, each key entry checked for inclusion and decoded.
    async fn registered_keys(
        &self,
        user: Uuid,
        role: Option<Role>,
    ) -> Result<UserKeys, ClientError> {
        let keys: UserKeys = self
            .client
            .get(&format!("/v1/users/{user}/keys"), &[])
            .await?;
        let entry = self.checked_entry(keys.key_index, &keys.key_entry).await?;
        let ok = match entry {
            Entry::UserRegistered {
                user_id,
                role: entry_role,
                x25519_public,
                ed25519_public,
                ..
            } => {
                user_id == *user.as_bytes()
                    && keys.user_id == user
                    && x25519_public == keys.public_keys.x25519
                    && ed25519_public == keys.public_keys.ed25519
                    && keys.role.ledger_code() == entry_role as u8
                    && role.is_none_or(|r| r == keys.role)
            }
            _ => false,
        };
        if !ok {
            return Err(ledger_error(format!(
                "the keys the server gave for user {user} are not the ones the ledger registered"
            )));
        }
        for e in &keys.key_entries {
            match self.checked_entry(e.index, &e.entry).await? {
                Entry::UserRegistered { user_id, .. } if user_id == *user.as_bytes() => {}
                _ => {
                    return Err(ledger_error(format!(
                        "entry {} is not a key entry for user {user}",
                        e.index
                    )));
                }
            }
        }
        Ok(keys)
    }

    /// The known-keys store: the first key seen for a user is kept; a different one later is
    /// refused (v1 has no key changes, so a change means substitution).
    fn check_known(&self, keys: &UserKeys) -> Result<(), ClientError> {
        let mut known: KnownKeys = match std::fs::read(&self.known_keys) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                ledger_error(format!(
                    "the known keys {} are unreadable ({e}); they must not be edited by hand",
                    self.known_keys.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KnownKeys {
                server: self.server.clone(),
                ..KnownKeys::default()
            },
            Err(e) => return Err(ClientError::Session(e)),
        };
        let now = KnownKey {
            name: keys.name.clone(),
            fingerprint: crate::seal::fingerprint(&keys.public_keys),
            x25519: hex::encode(keys.public_keys.x25519),
            ed25519: hex::encode(keys.public_keys.ed25519),
            entry: keys.key_index,
        };
        match known.users.get(&keys.user_id) {
            Some(before) if before.x25519 == now.x25519 && before.ed25519 == now.ed25519 => Ok(()),
            Some(before) => Err(ClientError::KeyChanged(format!(
                "the key of {} (user {}) is not the one this client verified before: fingerprint \
                 {} (entry {}) then, {} (entry {}) now. v1 has no key changes, so someone may be \
                 impersonating them — refusing; tell your clinic's administrator",
                keys.name,
                keys.user_id,
                before.fingerprint,
                before.entry,
                now.fingerprint,
                now.entry
            ))),
            None => {
                known.users.insert(keys.user_id, now);
                write_private_json(&self.known_keys, &known)
            }
        }
    }

    /// At login and unlock: every key entry the ledger holds for this account must hold the
    /// keys just unsealed, and the server's record must be the same; otherwise someone may be
    /// impersonating this user.
    pub async fn check_self(&self, user: Uuid, mine: &PublicKeys) -> Result<(), ClientError> {
        let keys = self.registered_keys(user, None).await?;
        let mut other = None;
        for e in &keys.key_entries {
            if let Ok(Entry::UserRegistered {
                x25519_public,
                ed25519_public,
                ..
            }) = Entry::from_bytes(&e.entry)
                && (x25519_public != mine.x25519 || ed25519_public != mine.ed25519)
            {
                other = Some(e.index);
            }
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
