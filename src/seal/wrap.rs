//! HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) wrapping of
//! a report's DEK to one reader. Bound to report and reader through `info`; AAD is empty.

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use super::{Dek, Id, SealError, UserSecrets};

type KemT = X25519HkdfSha256;
const INFO_PREFIX: &[u8] = b"clinvault/dek/v1";
/// `enc (32) ‖ ciphertext (32 + 16)`.
pub const WRAPPED_DEK_LEN: usize = 80;

pub type WrappedDek = [u8; WRAPPED_DEK_LEN];

fn info(report_id: &Id, reader_id: &Id) -> Vec<u8> {
    [INFO_PREFIX, report_id, reader_id].concat()
}

/// Wraps `dek` to `reader_x25519` (a key whose ledger inclusion the caller has checked).
pub fn wrap_dek(
    dek: &Dek,
    report_id: &Id,
    reader_id: &Id,
    reader_x25519: &[u8; 32],
) -> Result<WrappedDek, SealError> {
    let pk = <KemT as Kem>::PublicKey::from_bytes(reader_x25519)
        .map_err(|_| SealError::PublicKey("reader's X25519 key is malformed"))?;
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, KemT>(
        &OpModeS::Base,
        &pk,
        &info(report_id, reader_id),
        dek.as_bytes(),
        b"",
    )
    .map_err(|_| SealError::Wrap)?;
    let mut out = [0u8; WRAPPED_DEK_LEN];
    let enc = enc.to_bytes();
    if enc.len() != 32 || ct.len() != WRAPPED_DEK_LEN - 32 {
        return Err(SealError::Wrap);
    }
    out[..32].copy_from_slice(&enc);
    out[32..].copy_from_slice(&ct);
    Ok(out)
}

/// Unwraps a DEK wrapped for `reader_id` on `report_id`. Any other reader, report or key fails.
pub fn unwrap_dek(
    wrapped: &[u8],
    report_id: &Id,
    reader_id: &Id,
    reader: &UserSecrets,
) -> Result<Dek, SealError> {
    if wrapped.len() != WRAPPED_DEK_LEN {
        return Err(SealError::malformed(
            "wrapped key",
            format!("{} bytes, expected {WRAPPED_DEK_LEN}", wrapped.len()),
        ));
    }
    let (enc, ct) = wrapped.split_at(32);
    let enc = <KemT as Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::Unwrap)?;
    let sk = <KemT as Kem>::PrivateKey::from_bytes(&reader.x25519_bytes()[..])
        .map_err(|_| SealError::Unwrap)?;
    let pt = Zeroizing::new(
        hpke::single_shot_open::<AesGcm256, HkdfSha256, KemT>(
            &OpModeR::Base,
            &sk,
            &enc,
            &info(report_id, reader_id),
            ct,
            b"",
        )
        .map_err(|_| SealError::Unwrap)?,
    );
    let bytes: [u8; 32] = pt.as_slice().try_into().map_err(|_| SealError::Unwrap)?;
    Ok(Dek::from_bytes(bytes))
}
