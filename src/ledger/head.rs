//! Signed tree heads and the ledger key (DESIGN.md §6):
//! `"clinvault/head/v1" ‖ tree_size (u64 BE) ‖ root (32) ‖ time (i64 BE, unix ms)`,
//! signed with Ed25519 by the ledger key.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::{Hash, LedgerError};

pub const HEAD_PREFIX: &[u8] = b"clinvault/head/v1";
/// Length of the signed message.
pub const HEAD_MESSAGE_LEN: usize = HEAD_PREFIX.len() + 8 + 32 + 8;
/// Length of [`SignedHead::to_bytes`]: the message, then the signature.
pub const SIGNED_HEAD_LEN: usize = HEAD_MESSAGE_LEN + 64;
/// How far in the future a head may be dated and still be taken (clocks drift). Without a
/// bound a server could sign far-future heads that never go stale.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// How the ledger key is shown and configured.
pub const LEDGER_KEY_PREFIX: &str = "clinvault-ledger:";

/// A tree head with the ledger key's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedHead {
    pub tree_size: u64,
    pub root: Hash,
    pub time_ms: i64,
    pub signature: [u8; 64],
}

impl SignedHead {
    /// The bytes the signature covers.
    pub fn message(tree_size: u64, root: &Hash, time_ms: i64) -> [u8; HEAD_MESSAGE_LEN] {
        let mut m = [0u8; HEAD_MESSAGE_LEN];
        let (prefix, rest) = m.split_at_mut(HEAD_PREFIX.len());
        prefix.copy_from_slice(HEAD_PREFIX);
        let (size, rest) = rest.split_at_mut(8);
        size.copy_from_slice(&tree_size.to_be_bytes());
        let (r, time) = rest.split_at_mut(32);
        r.copy_from_slice(root);
        time.copy_from_slice(&time_ms.to_be_bytes());
        m
    }

    pub fn sign(tree_size: u64, root: Hash, time_ms: i64, key: &SigningKey) -> SignedHead {
        let signature = key
            .sign(&Self::message(tree_size, &root, time_ms))
            .to_bytes();
        SignedHead {
            tree_size,
            root,
            time_ms,
            signature,
        }
    }

    /// Checks the signature with the pinned ledger key (`verify_strict`: no malleable or
    /// small-order signatures, no weak keys).
    pub fn verify(&self, ledger_public: &[u8; 32]) -> Result<(), LedgerError> {
        let key = VerifyingKey::from_bytes(ledger_public)
            .map_err(|_| LedgerError::LedgerKey("not a valid Ed25519 public key"))?;
        let message = Self::message(self.tree_size, &self.root, self.time_ms);
        key.verify_strict(&message, &Signature::from_bytes(&self.signature))
            .map_err(|_| LedgerError::HeadSignature)
    }

    /// Refuses a head more than `max_age_ms` older than `now_ms`, or dated more than
    /// [`MAX_CLOCK_SKEW_MS`] after it. The caller passes the time: this module reads no clock.
    pub fn check_age(&self, now_ms: i64, max_age_ms: u64) -> Result<(), LedgerError> {
        let age_ms = i128::from(now_ms) - i128::from(self.time_ms);
        if age_ms > i128::from(max_age_ms) {
            return Err(LedgerError::HeadStale { age_ms, max_age_ms });
        }
        if -age_ms > i128::from(MAX_CLOCK_SKEW_MS) {
            return Err(LedgerError::HeadFromFuture { ahead_ms: -age_ms });
        }
        Ok(())
    }

    /// [`verify`](Self::verify) then [`check_age`](Self::check_age).
    pub fn verify_fresh(
        &self,
        ledger_public: &[u8; 32],
        now_ms: i64,
        max_age_ms: u64,
    ) -> Result<(), LedgerError> {
        self.verify(ledger_public)?;
        self.check_age(now_ms, max_age_ms)
    }

    /// Message ‖ signature, for keeping the last verified head in the state folder.
    pub fn to_bytes(&self) -> [u8; SIGNED_HEAD_LEN] {
        let mut out = [0u8; SIGNED_HEAD_LEN];
        let (m, s) = out.split_at_mut(HEAD_MESSAGE_LEN);
        m.copy_from_slice(&Self::message(self.tree_size, &self.root, self.time_ms));
        s.copy_from_slice(&self.signature);
        out
    }

    /// Parses [`to_bytes`](Self::to_bytes) output. Does not check the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedHead, LedgerError> {
        let bytes: &[u8; SIGNED_HEAD_LEN] =
            bytes.try_into().map_err(|_| LedgerError::HeadLength {
                want: SIGNED_HEAD_LEN,
                got: bytes.len(),
            })?;
        let rest = bytes
            .strip_prefix(HEAD_PREFIX)
            .ok_or(LedgerError::HeadPrefix)?;
        // Lengths are fixed by the array type above, so these splits cannot fail.
        let bad = || LedgerError::HeadLength {
            want: SIGNED_HEAD_LEN,
            got: bytes.len(),
        };
        let (size, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
        let (root, rest) = rest.split_first_chunk::<32>().ok_or_else(bad)?;
        let (time, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
        let signature: [u8; 64] = rest.try_into().map_err(|_| bad())?;
        Ok(SignedHead {
            tree_size: u64::from_be_bytes(*size),
            root: *root,
            time_ms: i64::from_be_bytes(*time),
            signature,
        })
    }
}

/// The ledger's public key, shown as `clinvault-ledger:` + standard base64 of its 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LedgerKey(pub [u8; 32]);

impl LedgerKey {
    pub fn from_signing_key(key: &SigningKey) -> LedgerKey {
        LedgerKey(key.verifying_key().to_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the displayed form exactly: the prefix, then canonical padded base64 of a
    /// valid, non-weak Ed25519 key. No whitespace, no other encoding.
    pub fn parse(s: &str) -> Result<LedgerKey, LedgerError> {
        let b64 = s
            .strip_prefix(LEDGER_KEY_PREFIX)
            .ok_or(LedgerError::LedgerKey(
                "it must start with \"clinvault-ledger:\"",
            ))?;
        let bytes = STANDARD.decode(b64).map_err(|_| {
            LedgerError::LedgerKey("the part after \"clinvault-ledger:\" is not standard base64")
        })?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| LedgerError::LedgerKey("it must encode exactly 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| LedgerError::LedgerKey("not a valid Ed25519 public key"))?;
        if key.is_weak() {
            return Err(LedgerError::LedgerKey("a weak (small-order) Ed25519 key"));
        }
        Ok(LedgerKey(bytes))
    }
}

impl fmt::Display for LedgerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{LEDGER_KEY_PREFIX}{}", STANDARD.encode(self.0))
    }
}

impl FromStr for LedgerKey {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LedgerKey::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    #[test]
    fn message_layout() {
        let m = SignedHead::message(0x0102, &[9; 32], -2);
        assert_eq!(&m[..17], b"clinvault/head/v1");
        assert_eq!(&m[17..25], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&m[25..57], &[9; 32]);
        assert_eq!(&m[57..], &(-2i64).to_be_bytes());
    }

    #[test]
    fn sign_verify_and_bytes() {
        let h = SignedHead::sign(5, [1; 32], 1_000, &key());
        let public = LedgerKey::from_signing_key(&key());
        h.verify(public.as_bytes()).unwrap();
        assert_eq!(SignedHead::from_bytes(&h.to_bytes()), Ok(h.clone()));
        assert!(SignedHead::from_bytes(&h.to_bytes()[1..]).is_err());
        let mut other_prefix = h.to_bytes();
        other_prefix[0] ^= 1;
        assert_eq!(
            SignedHead::from_bytes(&other_prefix),
            Err(LedgerError::HeadPrefix)
        );
    }

    #[test]
    fn ages() {
        let h = SignedHead::sign(1, [0; 32], 10_000_000, &key());
        let hour = 3_600_000;
        h.check_age(10_000_000, hour).unwrap();
        h.check_age(10_000_000 + hour as i64, hour).unwrap();
        assert!(matches!(
            h.check_age(10_000_001 + hour as i64, hour),
            Err(LedgerError::HeadStale { .. })
        ));
        h.check_age(10_000_000 - MAX_CLOCK_SKEW_MS as i64, hour)
            .unwrap();
        assert!(matches!(
            h.check_age(9_999_999 - MAX_CLOCK_SKEW_MS as i64, hour),
            Err(LedgerError::HeadFromFuture { .. })
        ));
        let old = SignedHead::sign(1, [0; 32], i64::MIN, &key());
        assert!(old.check_age(i64::MAX, u64::MAX - 1).is_err());
        old.check_age(i64::MAX, u64::MAX).unwrap();
        let future = SignedHead::sign(1, [0; 32], i64::MAX, &key());
        assert!(future.check_age(i64::MIN, u64::MAX).is_err());
    }

    #[test]
    fn ledger_key_text() {
        let k = LedgerKey::from_signing_key(&key());
        let text = k.to_string();
        assert!(text.starts_with("clinvault-ledger:"));
        assert_eq!(text.len(), 17 + 44);
        assert_eq!(text.parse::<LedgerKey>(), Ok(k));
        let b64 = &text[17..];
        for bad in [
            b64.to_string(),
            format!("clinvault-ledger: {b64}"),
            format!("{text}\n"),
            format!("Clinvault-ledger:{b64}"),
            format!("clinvault-ledger:{}", b64.trim_end_matches('=')),
            format!("clinvault-ledger:{}", hex::encode(k.0)),
            format!("clinvault-ledger:{}", STANDARD.encode([1u8; 31])),
            format!("clinvault-ledger:{}", STANDARD.encode([0u8; 32])), // small order
            "clinvault-ledger:".to_string(),
            String::new(),
        ] {
            assert!(LedgerKey::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
