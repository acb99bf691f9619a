//! The manifest: fixed-layout bytes that bind a report's ids, sizes, chain head, metadata and
//! key commitment, signed by the author with Ed25519.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::{Id, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, SealError, expected_chunks, sha256};

const PREFIX: &[u8] = b"clinvault/manifest/v1";
/// Length of a v1 manifest in bytes.
pub const MANIFEST_LEN: usize = PREFIX.len() + 16 * 3 + 8 + 8 + 4 + 4 + 32 * 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub report_id: Id,
    pub patient_id: Id,
    pub author_id: Id,
    pub created_at_ms: i64,
    pub plaintext_len: u64,
    pub chunk_size: u32,
    pub n_chunks: u32,
    pub head: [u8; 32],
    pub meta_hash: [u8; 32],
    pub key_commit: [u8; 32],
}

/// Reads fixed-size fields off the front of a slice whose length was checked up front.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        out
    }
}

impl Manifest {
    pub fn to_bytes(&self) -> [u8; MANIFEST_LEN] {
        let mut out = [0u8; MANIFEST_LEN];
        let mut at = 0;
        for part in [
            PREFIX,
            &self.report_id,
            &self.patient_id,
            &self.author_id,
            &self.created_at_ms.to_be_bytes(),
            &self.plaintext_len.to_be_bytes(),
            &self.chunk_size.to_be_bytes(),
            &self.n_chunks.to_be_bytes(),
            &self.head,
            &self.meta_hash,
            &self.key_commit,
        ] {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        out
    }

    /// Parses and checks the layout and the sizes' consistency. Does not check the signature:
    /// use [`verify_manifest`] for bytes that came from anywhere but this client.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != MANIFEST_LEN {
            return Err(SealError::malformed(
                "manifest",
                format!("{} bytes, expected {MANIFEST_LEN}", bytes.len()),
            ));
        }
        if !bytes.starts_with(PREFIX) {
            return Err(SealError::malformed(
                "manifest",
                "not a clinvault v1 manifest",
            ));
        }
        let mut f = Fields(&bytes[PREFIX.len()..]);
        let m = Manifest {
            report_id: f.take(),
            patient_id: f.take(),
            author_id: f.take(),
            created_at_ms: i64::from_be_bytes(f.take()),
            plaintext_len: u64::from_be_bytes(f.take()),
            chunk_size: u32::from_be_bytes(f.take()),
            n_chunks: u32::from_be_bytes(f.take()),
            head: f.take(),
            meta_hash: f.take(),
            key_commit: f.take(),
        };
        m.validate()?;
        Ok(m)
    }

    /// Checks the sizes agree: chunk size in the format's range, and the chunk count the one
    /// the length gives.
    pub fn validate(&self) -> Result<(), SealError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(SealError::ChunkSize(self.chunk_size.into()));
        }
        let expected = expected_chunks(self.plaintext_len, self.chunk_size)?;
        if self.n_chunks != expected {
            return Err(SealError::malformed(
                "manifest",
                format!(
                    "{} chunks for {} bytes at chunk size {}, expected {expected}",
                    self.n_chunks, self.plaintext_len, self.chunk_size
                ),
            ));
        }
        Ok(())
    }

    /// SHA-256 of the manifest bytes, as the ledger records it.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&[&self.to_bytes()])
    }

    pub fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(&self.to_bytes()).to_bytes()
    }
}

/// Parses manifest bytes and verifies the author's signature (`verify_strict`).
pub fn verify_manifest(
    bytes: &[u8],
    signature: &[u8],
    author_ed25519: &[u8; 32],
) -> Result<Manifest, SealError> {
    let manifest = Manifest::from_bytes(bytes)?;
    let key = VerifyingKey::from_bytes(author_ed25519)
        .map_err(|_| SealError::PublicKey("author's Ed25519 key is not a valid point"))?;
    let sig = Signature::from_slice(signature).map_err(|_| SealError::ManifestSignature)?;
    key.verify_strict(bytes, &sig)
        .map_err(|_| SealError::ManifestSignature)?;
    Ok(manifest)
}
