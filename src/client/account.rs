//! Account upkeep that needs keys (issue 15): a new password for the same keys, and the
//! administrator's reactivation of an account. Also the KDF salt bound to the account's
//! address (issue 17.9).

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ApiClient, ClientError, LoggedIn};
use crate::api::{
    Done, KeyResetInfo, KeyResetInfoRequest, KeyResetRequest, LoginResponse, SessionKeys,
    StatusChanged,
};
use crate::seal::{UserSecrets, check_password, open_bundle, random_array};

/// The address as the server folds it (docs/protocol.md §7.2): trimmed, Unicode lower case.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The Argon2id salt of an account (docs/protocol.md §4.2, scheme 2): the first 16 bytes of
/// `SHA-256("clinvault/kdf-salt/v2" ‖ u16 len ‖ normalized email ‖ server_salt)`. Two
/// addresses never share a salt whatever the server hands out, so captured `auth_key`s must
/// be attacked one account at a time.
pub fn kdf_salt(email: &str, server_salt: &[u8; 16]) -> Result<[u8; 16], ClientError> {
    let email = normalize_email(email);
    let len = u16::try_from(email.len())
        .map_err(|_| ClientError::Refused("the email address is too long".into()))?;
    let d = Sha256::new()
        .chain_update(b"clinvault/kdf-salt/v2")
        .chain_update(len.to_be_bytes())
        .chain_update(email.as_bytes())
        .chain_update(server_salt)
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    Ok(out)
}

impl ApiClient {
    /// Changes the password of this client's session: the old password must open the bundle
    /// the server holds (checked here, before anything is sent), then the same keys are sealed
    /// again under a new salt and the server's current KDF parameters. The server swaps both
    /// and ends every other session. Returns the keys, unsealed, with the new `wrap_key`.
    pub async fn change_password(
        &self,
        old_password: &str,
        new_password: &str,
    ) -> Result<LoggedIn, ClientError> {
        let token = self.token.clone().ok_or(ClientError::NotLoggedIn)?;
        let k: SessionKeys = self.get("/v1/auth/keys", &[]).await?;
        let old = self.session_master_key(&k, old_password).await?;
        let secrets = open_bundle(
            &k.bundle,
            &old.wrap_key(),
            k.user.id.as_bytes(),
            &k.public_keys,
        )?;
        check_password(new_password, &[&k.user.email, &k.user.name])?;
        let kdf = k.kdf_upgrade.unwrap_or(k.kdf);
        let (bundle, wrap_key) = self
            .reseal(
                "/v1/auth/password",
                &secrets,
                k.user.id,
                new_password,
                &old,
                kdf,
            )
            .await?;
        Ok(LoggedIn {
            login: LoginResponse {
                token,
                user: k.user,
                public_keys: k.public_keys,
                bundle,
                idle_timeout_secs: k.idle_timeout_secs,
                expires_at: k.expires_at,
                kdf_upgrade: None,
            },
            secrets,
            wrap_key,
        })
    }

    /// Administrator (issue 15.3): mails a staff user who lost password and recovery kit a
    /// one-time code to make new keys with (`complete_key_reset`).
    pub async fn admin_key_reset(&self, id: Uuid) -> Result<Done, ClientError> {
        self.post(
            &format!("/v1/admin/users/{id}/key-reset"),
            &serde_json::json!({}),
        )
        .await
    }

    /// The user's side of an administrator's reset: new key pairs made here, sealed under
    /// `new_password` (salt bound to `email`), sent with the mailed code; the server records
    /// the rotation in the ledger (kind 10) and ends every session. Then logs in with the new
    /// password, the keys checked as at any login. Reports come back only when their authors
    /// wrap them again by hand.
    pub async fn complete_key_reset(
        &mut self,
        email: &str,
        code: &str,
        new_password: &str,
    ) -> Result<(LoggedIn, u64), ClientError> {
        let info: KeyResetInfo = self
            .post(
                "/v1/auth/key-reset/info",
                &KeyResetInfoRequest {
                    email: email.into(),
                    code: code.into(),
                },
            )
            .await?;
        check_password(new_password, &[email, &info.name])?;
        super::check_kdf(&info.kdf, &self.kdf_floor)?;
        let salt: [u8; 16] = random_array()?;
        let master =
            super::derive_off_runtime(new_password, kdf_salt(email, &salt)?, info.kdf).await?;
        let secrets = UserSecrets::generate()?;
        let bundle = secrets.seal_bundle(&master.wrap_key(), info.user_id.as_bytes())?;
        let done: StatusChanged = self
            .post(
                "/v1/auth/key-reset",
                &KeyResetRequest {
                    email: email.into(),
                    code: code.into(),
                    salt: salt.to_vec(),
                    kdf: info.kdf,
                    auth_key: master.auth_key().0.to_vec().into(),
                    public_keys: secrets.public(),
                    bundle,
                },
            )
            .await?;
        Ok((self.login(email, new_password).await?, done.ledger_index))
    }

    /// Administrator: lets a deactivated account log in again with its existing keys; the
    /// server records it in the ledger and answers with the entry's index.
    pub async fn reactivate(&self, id: Uuid) -> Result<StatusChanged, ClientError> {
        self.post(
            &format!("/v1/admin/users/{id}/reactivate"),
            &serde_json::json!({}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_is_bound_to_the_folded_address() {
        let server = [7u8; 16];
        let a = kdf_salt("ana@example.org", &server).unwrap();
        assert_eq!(a, kdf_salt("  ANA@Example.ORG ", &server).unwrap());
        assert_ne!(a, kdf_salt("bea@example.org", &server).unwrap());
        assert_ne!(a, kdf_salt("ana@example.org", &[8u8; 16]).unwrap());
        assert_ne!(a, server, "never the server's salt as it is");
        // Fixed vector (docs/protocol.md §4.2).
        assert_eq!(
            hex::encode(kdf_salt("ana@example.org", &[0u8; 16]).unwrap()),
            VECTOR
        );
    }

    const VECTOR: &str = "95bd40dfb6ef081461deb863f0e6f81f";
}
