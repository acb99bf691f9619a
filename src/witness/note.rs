//! C2SP signed notes (c2sp.org/signed-note), checkpoints (c2sp.org/tlog-checkpoint) and
//! Ed25519 cosignatures (c2sp.org/tlog-cosignature, `cosignature/v1`). Formats only: the
//! signatures are ed25519-dalek's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::ledger::Hash;

/// Signature type of a plain Ed25519 note signature (the log's).
pub const SIG_ED25519: u8 = 0x01;
/// Signature type of a timestamped Ed25519 cosignature (a witness's).
pub const SIG_COSIGNATURE_V1: u8 = 0x04;
/// Most signature lines read from one note.
pub const MAX_SIGNATURES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("signed note: {0}")]
    Malformed(&'static str),
    #[error("verifier key: {0}")]
    BadKey(&'static str),
    #[error("checkpoint: {0}")]
    Checkpoint(&'static str),
    #[error("no valid signature from {0}")]
    NotSigned(String),
    #[error("a signature from {0} does not verify")]
    BadSignature(String),
}

/// `SHA-256(name ‖ "\n" ‖ type ‖ public key)[:4]`.
pub fn key_id(name: &str, sig_type: u8, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([sig_type]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A verifier key: name, signature type and Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub sig_type: u8,
    pub public: [u8; 32],
}

impl VerifierKey {
    pub fn new(name: &str, sig_type: u8, public: [u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(
                "the name must be non-empty, without spaces or '+'",
            ));
        }
        Ok(VerifierKey {
            name: name.to_string(),
            sig_type,
            public,
        })
    }

    pub fn id(&self) -> [u8; 4] {
        key_id(&self.name, self.sig_type, &self.public)
    }

    /// `name+hex(id)+base64(type ‖ public key)`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.split('+');
        let (Some(name), Some(id), Some(key), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadKey("expected name+id+key"));
        };
        let bytes = STANDARD
            .decode(key)
            .map_err(|_| NoteError::BadKey("the key part is not base64"))?;
        let (&sig_type, public) = bytes
            .split_first()
            .ok_or(NoteError::BadKey("empty key part"))?;
        if sig_type != SIG_ED25519 && sig_type != SIG_COSIGNATURE_V1 {
            return Err(NoteError::BadKey("only Ed25519 keys (types 0x01 and 0x04)"));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 key is 32 bytes"))?;
        VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::BadKey("not an Ed25519 public key"))?;
        let k = VerifierKey::new(name, sig_type, public)?;
        if id != hex::encode(k.id()) {
            return Err(NoteError::BadKey(
                "the key id does not match the name and key",
            ));
        }
        Ok(k)
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = vec![self.sig_type];
        body.extend_from_slice(&self.public);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id()),
            STANDARD.encode(body)
        )
    }
}

/// One signature line: `— name base64(id ‖ signature)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub id: [u8; 4],
    pub bytes: Vec<u8>,
}

impl NoteSignature {
    pub fn line(&self) -> String {
        let mut b = self.id.to_vec();
        b.extend_from_slice(&self.bytes);
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(b))
    }

    /// Parses one line (without its newline).
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
            "a signature line starts with an em dash",
        ))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "a signature line is '— name signature'",
        ))?;
        if !valid_name(name) {
            return Err(NoteError::Malformed("bad key name"));
        }
        let b = STANDARD
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if b.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        Ok(NoteSignature {
            name: name.to_string(),
            id: [b[0], b[1], b[2], b[3]],
            bytes: b[4..].to_vec(),
        })
    }
}

/// A note: its text (ending in a newline) and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Splits at the last blank line; refuses control characters other than newline.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("control characters"));
        }
        let at = s
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&s[..=at], &s[at + 2..]);
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the last signature line must end in a newline",
            ));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signature"));
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    pub fn to_text(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }

    /// Verifies the plain Ed25519 signature of `key` (type 0x01) over the text. Unknown
    /// signatures are ignored; a known one that fails is an error.
    pub fn verify_ed25519(&self, key: &VerifierKey) -> Result<(), NoteError> {
        let id = key.id();
        let vk = VerifyingKey::from_bytes(&key.public)
            .map_err(|_| NoteError::BadKey("not an Ed25519 public key"))?;
        let mut ok = false;
        for s in self
            .signatures
            .iter()
            .filter(|s| s.name == key.name && s.id == id)
        {
            let sig = Signature::from_slice(&s.bytes)
                .map_err(|_| NoteError::BadSignature(key.name.clone()))?;
            vk.verify_strict(self.text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(key.name.clone()))?;
            ok = true;
        }
        if ok {
            Ok(())
        } else {
            Err(NoteError::NotSigned(key.name.clone()))
        }
    }
}

/// Signs `text` as a note with a plain Ed25519 key named `name`.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> NoteSignature {
    NoteSignature {
        name: name.to_string(),
        id: key_id(name, SIG_ED25519, &key.verifying_key().to_bytes()),
        bytes: key.sign(text.as_bytes()).to_bytes().to_vec(),
    }
}

/// A checkpoint's three lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a note text; extension lines are refused (this log writes none).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or(NoteError::Checkpoint("must end in a newline"))?
            .split('\n')
            .collect();
        let [origin, size, root] = lines[..] else {
            return Err(NoteError::Checkpoint("expected exactly three lines"));
        };
        if origin.is_empty() {
            return Err(NoteError::Checkpoint("empty origin"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(NoteError::Checkpoint(
                "the size must be decimal, no leading zeros",
            ));
        }
        let size = size
            .parse()
            .map_err(|_| NoteError::Checkpoint("size out of range"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::Checkpoint("the root must be base64 of 32 bytes"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// The signed note of this checkpoint, signed by the log key named after the origin.
    pub fn sign(&self, key: &SigningKey) -> Note {
        let text = self.body();
        let sig = sign_note(&text, &self.origin, key);
        Note {
            text,
            signatures: vec![sig],
        }
    }
}

/// The message a `cosignature/v1` signs: header, time line, then the checkpoint text.
pub fn cosignature_message(checkpoint_text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// A witness's cosignature over a checkpoint text at `timestamp` (seconds).
pub fn cosign(
    checkpoint_text: &str,
    timestamp: u64,
    name: &str,
    key: &SigningKey,
) -> NoteSignature {
    let sig = key.sign(cosignature_message(checkpoint_text, timestamp).as_bytes());
    let mut bytes = timestamp.to_be_bytes().to_vec();
    bytes.extend_from_slice(&sig.to_bytes());
    NoteSignature {
        name: name.to_string(),
        id: key_id(name, SIG_COSIGNATURE_V1, &key.verifying_key().to_bytes()),
        bytes,
    }
}

/// Checks a cosignature from `witness` (type 0x04) over `checkpoint_text`; returns its time.
pub fn verify_cosignature(
    checkpoint_text: &str,
    sig: &NoteSignature,
    witness: &VerifierKey,
) -> Result<u64, NoteError> {
    if sig.name != witness.name || sig.id != witness.id() || witness.sig_type != SIG_COSIGNATURE_V1
    {
        return Err(NoteError::NotSigned(witness.name.clone()));
    }
    let bad = || NoteError::BadSignature(witness.name.clone());
    let (time, s) = sig.bytes.split_first_chunk::<8>().ok_or_else(bad)?;
    let timestamp = u64::from_be_bytes(*time);
    if timestamp > i64::MAX as u64 {
        return Err(bad());
    }
    let s = Signature::from_slice(s).map_err(|_| bad())?;
    VerifyingKey::from_bytes(&witness.public)
        .map_err(|_| bad())?
        .verify_strict(
            cosignature_message(checkpoint_text, timestamp).as_bytes(),
            &s,
        )
        .map_err(|_| bad())?;
    Ok(timestamp)
}

/// The names of `witnesses` with a valid cosignature on `note` (each counted once).
pub fn cosigned_by(note: &Note, witnesses: &[VerifierKey]) -> Vec<String> {
    witnesses
        .iter()
        .filter(|w| {
            note.signatures
                .iter()
                .any(|s| verify_cosignature(&note.text, s, w).is_ok())
        })
        .map(|w| w.name.clone())
        .collect()
}
