//! A user's key pairs (X25519 to read, Ed25519 to sign) and their password-sealed bundle.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use super::{Id, SealError, TAG_LEN, WrapKey, random_array, sha256};

const BUNDLE_AAD_PREFIX: &[u8] = b"clinvault/bundle/v1";
const SECRETS_LEN: usize = 64;
/// Length of a sealed bundle: nonce ‖ 64 secret bytes ‖ tag.
pub const BUNDLE_LEN: usize = 12 + SECRETS_LEN + TAG_LEN;

/// The public half of a user's keys, as registered in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    #[serde(with = "hex32")]
    pub x25519: [u8; 32],
    #[serde(with = "hex32")]
    pub ed25519: [u8; 32],
}

/// A user's secret keys. Zeroized on drop (both dalek types zeroize themselves).
pub struct UserSecrets {
    x25519: StaticSecret,
    ed25519: SigningKey,
}

impl UserSecrets {
    pub fn generate() -> Result<Self, SealError> {
        let x: Zeroizing<[u8; 32]> = Zeroizing::new(random_array()?);
        let e: Zeroizing<[u8; 32]> = Zeroizing::new(random_array()?);
        Ok(UserSecrets {
            x25519: StaticSecret::from(*x),
            ed25519: SigningKey::from_bytes(&e),
        })
    }

    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            x25519: XPublic::from(&self.x25519).to_bytes(),
            ed25519: self.ed25519.verifying_key().to_bytes(),
        }
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.ed25519
    }

    pub(crate) fn x25519_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.x25519.to_bytes())
    }

    /// `nonce ‖ AES-256-GCM(wrap_key, x25519_sk ‖ ed25519_seed, AAD = prefix ‖ user_id ‖ publics)`.
    pub fn seal_bundle(&self, wrap_key: &WrapKey, user_id: &Id) -> Result<Vec<u8>, SealError> {
        let mut secrets = Zeroizing::new([0u8; SECRETS_LEN]);
        secrets[..32].copy_from_slice(&self.x25519.to_bytes());
        secrets[32..].copy_from_slice(&self.ed25519.to_bytes());
        let nonce: [u8; 12] = random_array()?;
        let aad = bundle_aad(user_id, &self.public());
        let ct = Aes256Gcm::new(&wrap_key.0.into())
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &secrets[..],
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Bundle)?;
        Ok([&nonce[..], &ct].concat())
    }
}

fn bundle_aad(user_id: &Id, public: &PublicKeys) -> Vec<u8> {
    [BUNDLE_AAD_PREFIX, user_id, &public.x25519, &public.ed25519].concat()
}

/// Opens a sealed bundle and checks the secrets belong to `public` (the keys the ledger holds).
pub fn open_bundle(
    bundle: &[u8],
    wrap_key: &WrapKey,
    user_id: &Id,
    public: &PublicKeys,
) -> Result<UserSecrets, SealError> {
    if bundle.len() != BUNDLE_LEN {
        return Err(SealError::malformed(
            "key bundle",
            format!("{} bytes, expected {BUNDLE_LEN}", bundle.len()),
        ));
    }
    let (nonce, ct) = bundle.split_at(12);
    let mut n = [0u8; 12];
    n.copy_from_slice(nonce);
    let aad = bundle_aad(user_id, public);
    let secrets = Zeroizing::new(
        Aes256Gcm::new(&wrap_key.0.into())
            .decrypt(&Nonce::from(n), Payload { msg: ct, aad: &aad })
            .map_err(|_| SealError::Bundle)?,
    );
    let mut x = Zeroizing::new([0u8; 32]);
    let mut e = Zeroizing::new([0u8; 32]);
    x.copy_from_slice(&secrets[..32]);
    e.copy_from_slice(&secrets[32..SECRETS_LEN]);
    let user = UserSecrets {
        x25519: StaticSecret::from(*x),
        ed25519: SigningKey::from_bytes(&e),
    };
    if &user.public() != public {
        return Err(SealError::Bundle);
    }
    Ok(user)
}

/// Short fingerprint of a user's public keys, shown beside a doctor's name:
/// the first 10 bytes of SHA-256 as five groups of four hex digits.
pub fn fingerprint(public: &PublicKeys) -> String {
    let digest = sha256(&[b"clinvault/fingerprint/v1", &public.x25519, &public.ed25519]);
    digest[..10]
        .chunks(2)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join(" ")
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}
