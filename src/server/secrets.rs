//! The server's secrets file (DESIGN.md §7): the pepper and the ledger signing seed, mode 0600,
//! made at first start, never in the database.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("secrets file {path}: {why}")]
    Invalid { path: String, why: String },
    #[error("the operating system's random number generator failed")]
    Random,
}

#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct SecretsFile {
    /// HMAC key for auth keys, codes and decoy salts (hex, 32 bytes).
    pepper: String,
    /// Ed25519 seed of the ledger signing key (hex, 32 bytes).
    ledger_seed: String,
}

pub struct ServerSecrets {
    pepper: Zeroizing<[u8; 32]>,
    ledger_seed: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ServerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecrets(..)")
    }
}

impl ServerSecrets {
    /// Reads the file, or makes it (mode 0600) when it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        let name = path.display().to_string();
        let io = |source| SecretsError::Io {
            path: name.clone(),
            source,
        };
        if !path.exists() {
            let pepper = crate::seal::random_array::<32>().map_err(|_| SecretsError::Random)?;
            let seed = crate::seal::random_array::<32>().map_err(|_| SecretsError::Random)?;
            let text = Zeroizing::new(format!(
                "# clinvault server secrets. Keep this file private (mode 0600) and backed up:\n\
                 # without the pepper no one can log in, without the seed the ledger cannot be signed.\n\
                 pepper = \"{}\"\nledger_seed = \"{}\"\n",
                hex::encode(pepper),
                hex::encode(seed)
            ));
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::info!(path = %name, "created the server secrets file");
        }
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %name, "secrets file is readable by others; chmod 600 it");
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let parsed: SecretsFile = toml::from_str(&text).map_err(|e| SecretsError::Invalid {
            path: name.clone(),
            why: e.message().to_string(),
        })?;
        Ok(ServerSecrets {
            pepper: decode32(&parsed.pepper, "pepper", &name)?,
            ledger_seed: decode32(&parsed.ledger_seed, "ledger_seed", &name)?,
        })
    }

    /// HMAC-SHA256(pepper, domain ‖ 0x00 ‖ part₀ ‖ 0x00 ‖ part₁ …). The domain keeps the uses apart.
    pub fn mac(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.pepper[..])
            .expect("HMAC takes keys of any length");
        m.update(domain.as_bytes());
        for p in parts {
            m.update(&[0]);
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Seed of the ledger signing key (used by the ledger, issue 4).
    pub fn ledger_seed(&self) -> &[u8; 32] {
        &self.ledger_seed
    }

    /// Key of the ledger append authenticators (issue 11): HKDF-SHA256 of the pepper, so
    /// only a holder of this file can make one; a database writer cannot.
    pub fn append_key(&self) -> Zeroizing<[u8; 32]> {
        let mut okm = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(None, &self.pepper[..])
            .expand(b"clinvault/ledger-append-auth/v1", &mut okm[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        okm
    }

    /// Key sealing the staff's TOTP secrets in the database (issue 15): HKDF-SHA256 of the
    /// pepper, so a database reader alone cannot compute anyone's codes.
    pub fn totp_key(&self) -> Zeroizing<[u8; 32]> {
        let mut okm = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(None, &self.pepper[..])
            .expand(b"clinvault/totp-secret/v1", &mut okm[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        okm
    }
}

fn decode32(text: &str, field: &str, path: &str) -> Result<Zeroizing<[u8; 32]>, SecretsError> {
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut out[..]).map_err(|_| SecretsError::Invalid {
        path: path.to_string(),
        why: format!("{field} must be 64 hex digits"),
    })?;
    Ok(out)
}
