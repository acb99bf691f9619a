//! Report metadata (title, file name, media type, note): one encrypted JSON blob.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

use super::{Id, ReportKeys, SealError, TAG_LEN, random_array, sha256};

const META_AAD_PREFIX: &[u8] = b"clinvault/meta/v1";
/// Larger blobs are refused before decryption: metadata is a few hundred bytes.
const MAX_META_BLOB: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMeta {
    pub title: String,
    #[serde(default)]
    pub file_name: String,
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub note: String,
}

fn aad(report_id: &Id) -> Vec<u8> {
    [META_AAD_PREFIX, report_id].concat()
}

/// `nonce (12 random bytes) ‖ AES-256-GCM(meta_key, nonce, json, AAD)`.
pub fn seal_meta(
    keys: &ReportKeys,
    report_id: &Id,
    meta: &ReportMeta,
) -> Result<Vec<u8>, SealError> {
    let json =
        serde_json::to_vec(meta).map_err(|e| SealError::malformed("metadata", e.to_string()))?;
    if json.len() + 12 + TAG_LEN > MAX_META_BLOB {
        return Err(SealError::malformed("metadata", "larger than 64 KiB"));
    }
    let nonce: [u8; 12] = random_array()?;
    let aead = Aes256Gcm::new(&keys.meta_key.into());
    let aad = aad(report_id);
    let ct = aead
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &json,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Metadata)?;
    Ok([&nonce[..], &ct].concat())
}

pub fn open_meta(keys: &ReportKeys, report_id: &Id, blob: &[u8]) -> Result<ReportMeta, SealError> {
    if blob.len() < 12 + TAG_LEN || blob.len() > MAX_META_BLOB {
        return Err(SealError::malformed(
            "metadata blob",
            format!("{} bytes", blob.len()),
        ));
    }
    let (nonce, ct) = blob.split_at(12);
    let mut n = [0u8; 12];
    n.copy_from_slice(nonce);
    let aead = Aes256Gcm::new(&keys.meta_key.into());
    let aad = aad(report_id);
    let json = aead
        .decrypt(&Nonce::from(n), Payload { msg: ct, aad: &aad })
        .map_err(|_| SealError::Metadata)?;
    serde_json::from_slice(&json).map_err(|e| SealError::malformed("metadata", e.to_string()))
}

/// `SHA-256(blob)`, recorded in the manifest.
pub fn meta_hash(blob: &[u8]) -> [u8; 32] {
    sha256(&[blob])
}
