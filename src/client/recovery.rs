//! The recovery kit (issue 15), client side. A recovery code is 20 random bytes (160 bits)
//! written as 32 base32 letters plus a 4-letter checksum, in groups of four. Two keys come
//! from it by HKDF-SHA256: one seals a second copy of the key bundle, the other (sent as
//! `recovery_auth`) proves the code to the server. The code itself never leaves the client;
//! with 160 bits no slow KDF is needed.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{ApiClient, ClientError, LoggedIn, check_kdf};
use crate::api::{
    Done, RecoverOpenRequest, RecoverOpenResponse, RecoverResetRequest, RecoveryKitRequest,
    SessionKeys,
};
use crate::seal::{WrapKey, check_password, open_bundle, random_array};

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const CODE_BYTES: usize = 20;
const CHECK_LETTERS: usize = 4;

/// Why a typed recovery code was refused before anything was sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    #[error("a recovery code has 36 letters and digits (groups of four); this one has {0}")]
    Length(usize),
    #[error("{0:?} is not in a recovery code (letters A–Z and digits 2–7)")]
    Letter(char),
    #[error("the recovery code's checksum does not match: a letter is mistyped")]
    Checksum,
}

/// A recovery code, zeroized on drop.
pub struct RecoveryCode(Zeroizing<[u8; CODE_BYTES]>);

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

fn checksum(bytes: &[u8; CODE_BYTES]) -> [u8; CHECK_LETTERS] {
    let h = Sha256::new()
        .chain_update(b"clinvault/recovery-code/v1")
        .chain_update(bytes)
        .finalize();
    let bits = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let mut out = [0u8; CHECK_LETTERS];
    for (i, o) in out.iter_mut().enumerate() {
        *o = ALPHABET[((bits >> (27 - 5 * i)) & 31) as usize];
    }
    out
}

impl RecoveryCode {
    pub fn generate() -> Result<Self, ClientError> {
        Ok(RecoveryCode(Zeroizing::new(random_array()?)))
    }

    /// `ABCD-EFGH-…`: nine groups of four, the last one the checksum.
    pub fn display(&self) -> Zeroizing<String> {
        let mut letters = Zeroizing::new(Vec::with_capacity(36));
        // 20 bytes = 160 bits = 32 letters of 5 bits.
        for chunk in self.0.chunks(5) {
            let mut n = 0u64;
            for b in chunk {
                n = (n << 8) | u64::from(*b);
            }
            for i in 0..8 {
                letters.push(ALPHABET[((n >> (35 - 5 * i)) & 31) as usize]);
            }
        }
        letters.extend_from_slice(&checksum(&self.0));
        let mut s = Zeroizing::new(String::with_capacity(44));
        for (i, c) in letters.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                s.push('-');
            }
            s.push(char::from(*c));
        }
        s
    }

    /// What a user types back: case, spaces and dashes do not matter; 0, 1 and 8 are read as
    /// O, I and B. The checksum catches a mistyped letter before anything is sent.
    pub fn parse(typed: &str) -> Result<Self, CodeError> {
        let mut vals = Zeroizing::new(Vec::with_capacity(36));
        for c in typed.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let c = match c.to_ascii_uppercase() {
                '0' => 'O',
                '1' => 'I',
                '8' => 'B',
                c => c,
            };
            let v = ALPHABET
                .iter()
                .position(|a| char::from(*a) == c)
                .ok_or(CodeError::Letter(c))?;
            vals.push(v as u8);
            if vals.len() > 36 {
                return Err(CodeError::Length(vals.len()));
            }
        }
        if vals.len() != 36 {
            return Err(CodeError::Length(vals.len()));
        }
        let mut bytes = Zeroizing::new([0u8; CODE_BYTES]);
        for (g, group) in vals[..32].chunks(8).enumerate() {
            let mut n = 0u64;
            for v in group {
                n = (n << 5) | u64::from(*v);
            }
            for i in 0..5 {
                bytes[g * 5 + i] = (n >> (32 - 8 * i)) as u8;
            }
        }
        let want: Vec<u8> = checksum(&bytes)
            .iter()
            .map(|c| ALPHABET.iter().position(|a| a == c).unwrap_or(0) as u8)
            .collect();
        if vals[32..] != want[..] {
            return Err(CodeError::Checksum);
        }
        Ok(RecoveryCode(bytes))
    }

    fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, &self.0[..]).expand(info, &mut okm[..]);
        okm
    }

    /// Proves the code to the server (stored there only as an HMAC).
    pub fn auth(&self) -> Zeroizing<[u8; 32]> {
        self.derive(b"clinvault/recovery/auth/v1")
    }

    /// Seals the second copy of the key bundle.
    pub fn wrap_key(&self) -> WrapKey {
        WrapKey(*self.derive(b"clinvault/recovery/wrap/v1"))
    }
}

impl ApiClient {
    /// Makes a new recovery kit for this session's account (replacing any earlier one): the
    /// password opens the keys, a fresh code seals a second copy. Returns the code, to be shown
    /// once.
    pub async fn make_recovery_kit(&self, password: &str) -> Result<RecoveryCode, ClientError> {
        let k: SessionKeys = self.get("/v1/auth/keys", &[]).await?;
        let master = self.session_master_key(&k, password).await?;
        let secrets = open_bundle(
            &k.bundle,
            &master.wrap_key(),
            k.user.id.as_bytes(),
            &k.public_keys,
        )?;
        let code = RecoveryCode::generate()?;
        let recovery_bundle = secrets.seal_bundle(&code.wrap_key(), k.user.id.as_bytes())?;
        let _: Done = self
            .post(
                "/v1/auth/recovery-kit",
                &RecoveryKitRequest {
                    auth_key: master.auth_key().0.to_vec().into(),
                    recovery_auth: code.auth().to_vec().into(),
                    recovery_bundle,
                },
            )
            .await?;
        Ok(code)
    }

    /// Lost password: the code opens the second copy of the keys, which are sealed again
    /// under `new_password` and a fresh salt; the server swaps them in and ends every
    /// session. Then logs in with the new password (the keys checked as at any login).
    pub async fn recover(
        &mut self,
        email: &str,
        code: &RecoveryCode,
        new_password: &str,
    ) -> Result<LoggedIn, ClientError> {
        let opened: RecoverOpenResponse = self
            .post(
                "/v1/auth/recover/open",
                &RecoverOpenRequest {
                    email: email.into(),
                    recovery_auth: code.auth().to_vec().into(),
                },
            )
            .await?;
        let user: Uuid = opened.user_id;
        let secrets = open_bundle(
            &opened.recovery_bundle,
            &code.wrap_key(),
            user.as_bytes(),
            &opened.public_keys,
        )?;
        check_password(new_password, &[email])?;
        check_kdf(&opened.kdf, &self.kdf_floor)?;
        let salt: [u8; 16] = random_array()?;
        // Bound to the address the user typed (§4.2), never one the server reports.
        let master = super::derive_off_runtime(
            new_password,
            super::account::kdf_salt(email, &salt)?,
            opened.kdf,
        )
        .await?;
        let bundle = secrets.seal_bundle(&master.wrap_key(), user.as_bytes())?;
        let _: Done = self
            .post(
                "/v1/auth/recover/reset",
                &RecoverResetRequest {
                    email: email.into(),
                    recovery_auth: code.auth().to_vec().into(),
                    salt: salt.to_vec(),
                    kdf: opened.kdf,
                    auth_key: master.auth_key().0.to_vec().into(),
                    bundle,
                },
            )
            .await?;
        self.login(email, new_password).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_catch_typos() {
        for _ in 0..50 {
            let c = RecoveryCode::generate().unwrap();
            let shown = c.display();
            assert_eq!(shown.len(), 44, "{}", &*shown);
            let back = RecoveryCode::parse(&shown).unwrap();
            assert_eq!(*back.0, *c.0);
            let loose = shown.replace('-', " ").to_lowercase();
            assert_eq!(*RecoveryCode::parse(&loose).unwrap().0, *c.0);
            // Every single-letter change is caught by the checksum or refused outright.
            let letters: Vec<char> = shown.chars().filter(|c| *c != '-').collect();
            let mut missed = 0;
            for i in 0..letters.len() {
                let mut t = letters.clone();
                t[i] = if t[i] == 'A' { 'B' } else { 'A' };
                let s: String = t.into_iter().collect();
                if RecoveryCode::parse(&s).is_ok() {
                    missed += 1;
                }
            }
            // A 20-bit checksum lets about one change in a million through.
            assert!(missed <= 1, "{missed} typos passed");
        }
        assert_eq!(
            RecoveryCode::parse("ABCD").unwrap_err(),
            CodeError::Length(4)
        );
        let bad = format!("{}9", "A".repeat(35));
        assert_eq!(
            RecoveryCode::parse(&bad).unwrap_err(),
            CodeError::Letter('9')
        );
    }

    #[test]
    fn the_two_keys_differ() {
        let c = RecoveryCode::generate().unwrap();
        assert_ne!(*c.auth(), c.wrap_key().0);
    }
}
