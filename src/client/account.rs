//! Account upkeep that needs keys (issue 15): a new password for the same keys, and the
//! administrator's reactivation of an account.

use uuid::Uuid;

use super::{ApiClient, ClientError, LoggedIn};
use crate::api::{LoginResponse, SessionKeys, StatusChanged};
use crate::seal::{check_password, open_bundle};

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
        let old = self.master_key(old_password, &k.salt, &k.kdf).await?;
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
