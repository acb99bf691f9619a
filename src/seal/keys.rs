//! Key material: the report data key and what HKDF derives from it, and the password keys.

use hkdf::Hkdf;
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{Id, SealError, ct_eq};

const INFO_CHUNK: &[u8] = b"clinvault/chunk/v1";
const INFO_META: &[u8] = b"clinvault/meta/v1";
const INFO_COMMIT: &[u8] = b"clinvault/commit/v1";
const INFO_AUTH: &[u8] = b"clinvault/auth/v1";
const INFO_WRAP: &[u8] = b"clinvault/wrap/v1";

/// `N` bytes from the operating system's CSPRNG.
pub fn random_array<const N: usize>() -> Result<[u8; N], SealError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| SealError::Random)?;
    Ok(out)
}

fn hkdf_sha256(ikm: &[u8], salt: Option<&[u8]>, info: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 255 × 32 limit, so expand cannot fail.
    let _ = Hkdf::<Sha256>::new(salt, ikm).expand(info, &mut okm);
    okm
}

/// A report's 32-byte data key. It encrypts nothing itself; see [`ReportKeys`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Dek([u8; 32]);

impl Dek {
    /// A fresh random data key.
    pub fn generate() -> Result<Self, SealError> {
        Ok(Dek(random_array()?))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Dek(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Dek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dek(..)")
    }
}

/// The keys HKDF-SHA256 derives from a DEK for one report (ikm = DEK, salt = report_id).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ReportKeys {
    pub(crate) chunk_key: [u8; 32],
    pub(crate) meta_key: [u8; 32],
    key_commit: [u8; 32],
}

impl ReportKeys {
    pub fn derive(dek: &Dek, report_id: &Id) -> Self {
        let ikm = dek.as_bytes();
        ReportKeys {
            chunk_key: hkdf_sha256(ikm, Some(report_id), INFO_CHUNK),
            meta_key: hkdf_sha256(ikm, Some(report_id), INFO_META),
            key_commit: hkdf_sha256(ikm, Some(report_id), INFO_COMMIT),
        }
    }

    /// The public commitment to this key, recorded in the manifest.
    pub fn key_commit(&self) -> [u8; 32] {
        self.key_commit
    }

    /// Every reader checks this before opening anything (AES-GCM does not commit to its key).
    pub fn check_commit(&self, expected: &[u8; 32]) -> Result<(), SealError> {
        if ct_eq(&self.key_commit, expected) {
            Ok(())
        } else {
            Err(SealError::KeyCommitment)
        }
    }
}

/// Argon2id cost parameters, stored per account and sent by pre-login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Parallelism.
    pub p: u32,
}

impl Default for KdfParams {
    /// DESIGN.md §3: m = 64 MiB, t = 3, p = 1.
    fn default() -> Self {
        KdfParams {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

impl KdfParams {
    /// Refuses parameters below `floor` on any axis: a server cannot talk a client into a weak KDF.
    pub fn check_floor(&self, floor: &KdfParams) -> Result<(), SealError> {
        if self.m_kib < floor.m_kib || self.t < floor.t || self.p < floor.p {
            return Err(SealError::KdfParams(format!(
                "server asks for m={} KiB, t={}, p={}, below this client's floor m={} KiB, t={}, p={}",
                self.m_kib, self.t, self.p, floor.m_kib, floor.t, floor.p
            )));
        }
        // Upper bounds keep a hostile server from exhausting the client's memory or time.
        if self.m_kib > 4 * 1024 * 1024 || self.t > 64 || self.p > 64 {
            return Err(SealError::KdfParams(format!(
                "server asks for m={} KiB, t={}, p={}: above what a client will spend",
                self.m_kib, self.t, self.p
            )));
        }
        Ok(())
    }
}

/// Argon2id(NFKC(password), salt), 32 bytes. Never leaves the client.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

/// Sent to the server to log in; the server stores only an HMAC of it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AuthKey(pub [u8; 32]);

/// Seals the user's secret-key bundle (and resumable-upload state); never leaves the client.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct WrapKey(pub [u8; 32]);

pub fn derive_master_key(
    password: &str,
    salt: &[u8; 16],
    params: &KdfParams,
) -> Result<MasterKey, SealError> {
    let argon_params = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| SealError::KdfParams(e.to_string()))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let normalized: Zeroizing<String> = Zeroizing::new(password.nfkc().collect());
    let mut out = [0u8; 32];
    argon
        .hash_password_into(normalized.as_bytes(), salt, &mut out)
        .map_err(|e| SealError::KdfParams(e.to_string()))?;
    Ok(MasterKey(out))
}

impl MasterKey {
    pub fn auth_key(&self) -> AuthKey {
        AuthKey(hkdf_sha256(&self.0, None, INFO_AUTH))
    }

    pub fn wrap_key(&self) -> WrapKey {
        WrapKey(hkdf_sha256(&self.0, None, INFO_WRAP))
    }
}
