//! The HTTP API client (DESIGN.md §8) and the account flows that need keys: registration and
//! login derive keys here, so the password never leaves this process. Never imports `server/`.

pub mod account;
pub mod audit;
pub mod download;
pub mod emergency;
pub mod grants;
pub mod ledger;
pub mod output;
pub mod read;
pub mod recovery;
pub mod reports;
pub mod session;
pub mod station;
pub mod totp;
pub mod trail;
pub mod upload;

use std::net::IpAddr;
use std::time::Duration;

use chrono::NaiveDate;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::api::{
    Availability, AvailabilityResponse, BookRequest, Booking, BookingList, Doctor, Done,
    Enrollment, ErrorBody, Health, InviteInfo, InviteInfoRequest, InviteRequest, InviteResponse,
    LoginRequest, LoginResponse, Page, PatientSummary, PreloginRequest, PreloginResponse,
    RegisterRequest, RegisterResponse, RekeyRequest, SessionKeys, SlotsResponse, UserInfo,
    VerifyEmailRequest, VerifyEmailResponse,
};
use crate::seal::{
    KdfParams, PasswordProblem, SealError, UserSecrets, check_password, derive_master_key,
    open_bundle, random_array,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server: {0}")]
    Network(String),
    /// The server's own error answer.
    #[error("{message} ({code})")]
    Server {
        status: u16,
        code: String,
        message: String,
        retry_after: Option<u64>,
    },
    #[error("unexpected answer from the server ({status}): {why}")]
    Decode { status: u16, why: String },
    #[error(transparent)]
    Password(#[from] PasswordProblem),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(
        "refusing plain http:// to {0}: use https://, or set allow_insecure_http = true in [client]"
    )]
    InsecureUrl(String),
    #[error("server URL {0:?}: {1}")]
    Url(String, String),
    #[error("not logged in: run `clinvault login` first")]
    NotLoggedIn,
    #[error("session file: {0}")]
    Session(#[from] std::io::Error),
    /// A ledger check failed: the server's log is not what this client verified before, or
    /// does not hold what the server claims. Nothing further should be trusted.
    #[error("LEDGER CHECK FAILED: {0}")]
    Ledger(String),
    /// A report failed a check (signature, key commitment, chunk, chain).
    #[error("report check failed: {0}")]
    Integrity(String),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// The ledger shows a key for this account other than the one its password unlocks
    /// (issue 11): `entry` is that key entry's index.
    #[error(
        "the ledger shows a different key for your account (entry {entry}): someone may be impersonating you — tell your clinic's administrator"
    )]
    Impersonation { entry: u64 },
    /// A user's key differs from the one this client verified before, or the ledger shows
    /// more than one key for them (v1 has no key changes).
    #[error("KEY CHANGED: {0}")]
    KeyChanged(String),
    /// A user's keys were replaced by a key rotation in the ledger (issue 15) since this
    /// client saw them: nothing is shared with them until the user compares fingerprints and
    /// accepts the change.
    #[error("KEY ROTATED: {0}")]
    KeyRotated(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Refused(String),
    /// The server says this account's keys use the old, unbound salt (issue 17.9): refused
    /// unless the user opts in, because a dishonest server could say so to anyone.
    #[error(
        "the server says the keys of {0} still use the old password salt, which lets a dishonest \
         server attack many passwords at once. If your account is older than this clinvault \
         version, move it to the new salt once: `clinvault login --legacy-salt --email {0}` \
         (in the terminal app: confirm the prompt), or set a new password with your recovery \
         kit (`clinvault recover --email {0}`). If your account is newer, do not: tell your \
         clinic's administrator"
    )]
    LegacySalt(String),
}

impl ClientError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Most bytes of a JSON answer: a hostile server must not exhaust the client (issue 17).
pub const JSON_LIMIT: usize = 4 << 20;
/// Most bytes of one page of ledger entries: 1000 entries of at most 130 bytes, hex-encoded
/// in JSON, fit many times over.
pub const LEDGER_PAGE_LIMIT: usize = 16 << 20;
/// Most bytes of an error answer read to show its message.
const ERROR_LIMIT: usize = 64 << 10;

/// The ciphertext length of chunk `index` the manifest implies (plaintext part plus the
/// AEAD tag): the most a chunk download may read. 0 for an index past the manifest's chunks.
pub fn chunk_ciphertext_len(m: &crate::seal::Manifest, index: u32) -> usize {
    if index >= m.n_chunks {
        return 0;
    }
    let start = u64::from(index) * u64::from(m.chunk_size);
    let plain = m
        .plaintext_len
        .saturating_sub(start)
        .min(u64::from(m.chunk_size));
    usize::try_from(plain).unwrap_or(usize::MAX) + crate::seal::TAG_LEN
}

/// Reads a body of at most `limit` bytes: refused from its announced length before reading,
/// and cut off as soon as more arrives.
async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, ClientError> {
    let status = resp.status().as_u16();
    let too_big = || ClientError::Decode {
        status,
        why: format!("the answer is larger than the {limit} bytes this client accepts"),
    };
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    let mut buf =
        bytes::BytesMut::with_capacity(announced.map_or(0, |n| n as usize).min(limit).min(1 << 20));
    while let Some(piece) = resp.chunk().await.map_err(network)? {
        if buf.len() + piece.len() > limit {
            return Err(too_big());
        }
        buf.extend_from_slice(&piece);
    }
    Ok(buf.freeze())
}

/// The most a server may ask of the client's key derivation (issue 17): 1 GiB, 10 passes,
/// 8 lanes — well above the shipped 64 MiB / 3 / 1, well below minutes of work or an
/// out-of-memory kill.
pub const KDF_CEILING: KdfParams = KdfParams {
    m_kib: 1024 * 1024,
    t: 10,
    p: 8,
};

/// The client's floor, then [`KDF_CEILING`]: a server can talk the client neither into a
/// weak derivation nor into an exhausting one.
fn check_kdf(kdf: &KdfParams, floor: &KdfParams) -> Result<(), ClientError> {
    kdf.check_floor(floor)?;
    if kdf.m_kib > KDF_CEILING.m_kib || kdf.t > KDF_CEILING.t || kdf.p > KDF_CEILING.p {
        return Err(ClientError::Seal(SealError::KdfParams(format!(
            "server asks for m={} KiB, t={}, p={}: above this client's ceiling m={} KiB, t={}, p={}",
            kdf.m_kib, kdf.t, kdf.p, KDF_CEILING.m_kib, KDF_CEILING.t, KDF_CEILING.p
        ))));
    }
    Ok(())
}

/// Argon2id (a few hundred ms of CPU at the shipped parameters) on the blocking pool, so the
/// runtime's workers, which in the terminal client also serve the embedded server, stay free.
async fn derive_off_runtime(
    password: &str,
    salt: [u8; 16],
    kdf: KdfParams,
) -> Result<crate::seal::MasterKey, ClientError> {
    let password = zeroize::Zeroizing::new(password.to_string());
    tokio::task::spawn_blocking(move || derive_master_key(&password, &salt, &kdf))
        .await
        .map_err(|e| ClientError::Refused(format!("key derivation stopped: {e}")))?
        .map_err(ClientError::from)
}

/// A client for one server.
#[derive(Clone)]
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
    kdf_floor: KdfParams,
    /// The account's address as this client knows it (typed at login, or from the session
    /// file), normalized: the KDF salt is bound to it, never to what the server says.
    account_email: Option<String>,
    /// The user confirmed, for the next login only, an account on the old salt scheme.
    legacy_salt_opt_in: bool,
}

/// Is `url` safe to talk to: https, or http to this machine (or explicitly allowed)?
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<Url, ClientError> {
    let parsed = Url::parse(url).map_err(|e| ClientError::Url(url.into(), e.to_string()))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false);
            if !loopback && !allow_insecure_http {
                return Err(ClientError::InsecureUrl(host.to_string()));
            }
        }
        other => {
            return Err(ClientError::Url(
                url.into(),
                format!("scheme {other}: use https:// (or http:// on loopback)"),
            ));
        }
    }
    Ok(parsed)
}

/// Keys made for a new account.
pub struct NewAccountKeys {
    pub request: RegisterRequest,
    pub secrets: UserSecrets,
}

/// A logged-in user with unsealed keys.
pub struct LoggedIn {
    pub login: LoginResponse,
    pub secrets: UserSecrets,
    /// Seals resumable-upload state; never leaves the client.
    pub wrap_key: crate::seal::WrapKey,
}

impl std::fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedIn")
            .field("user", &self.login.user)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn new(
        url: &str,
        allow_insecure_http: bool,
        kdf_floor: KdfParams,
    ) -> Result<Self, ClientError> {
        let base = check_url(url, allow_insecure_http)?;
        let http = Self::http_builder()
            .build()
            .map_err(|e| ClientError::Network(e.to_string()))?;
        Ok(ApiClient {
            base,
            http,
            token: None,
            kdf_floor,
            account_email: None,
            legacy_salt_opt_in: false,
        })
    }

    /// Trusts only the certificate authority (or self-signed certificate) in `pem` for this
    /// server: for a clinic's own CA, and a pin against any other.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self, ClientError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::Url("ca_file".into(), e.without_url().to_string()))?;
        if certs.is_empty() {
            return Err(ClientError::Url(
                "ca_file".into(),
                "no PEM certificate in it".into(),
            ));
        }
        self.http = Self::http_builder()
            .tls_certs_only(certs)
            .build()
            .map_err(|e| ClientError::Network(e.to_string()))?;
        Ok(self)
    }

    fn http_builder() -> reqwest::ClientBuilder {
        crate::install_tls_provider();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("clinvault/", env!("CARGO_PKG_VERSION")))
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call_limited(method, path, query, body, JSON_LIMIT)
            .await
    }

    /// [`ApiClient::call`] reading at most `limit` bytes of answer.
    async fn call_limited<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        limit: usize,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self
            .send(method, path, query, limit, |req| match body {
                Some(b) => req.json(b),
                None => req,
            })
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            status: status.as_u16(),
            why: e.to_string(),
        })
    }

    /// A request with a raw body and a raw answer (chunks), the answer at most the largest
    /// chunk any manifest allows.
    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<bytes::Bytes>,
    ) -> Result<bytes::Bytes, ClientError> {
        self.call_raw_limited(
            method,
            path,
            query,
            body,
            crate::seal::MAX_CHUNK_SIZE as usize + crate::seal::TAG_LEN,
        )
        .await
    }

    /// [`ApiClient::call_raw`] reading at most `limit` bytes of answer.
    async fn call_raw_limited(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<bytes::Bytes>,
        limit: usize,
    ) -> Result<bytes::Bytes, ClientError> {
        let (_, bytes) = self
            .send(method, path, query, limit, |req| match body {
                Some(b) => req
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(b),
                None => req,
            })
            .await?;
        Ok(bytes)
    }

    /// Sends with the session token; a success's status and body (at most `limit` bytes), or
    /// the server's error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        limit: usize,
        with_body: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, bytes::Bytes), ClientError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| ClientError::Url(path.into(), e.to_string()))?;
        let mut req = self.http.request(method, url);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = with_body(req).send().await.map_err(network)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if status.is_success() {
            return Ok((status, read_limited(resp, limit).await?));
        }
        let bytes = read_limited(resp, ERROR_LIMIT).await?;
        Err(error_answer(status, retry_after, &bytes))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, query, None).await
    }

    /// A GET whose answer may be larger than [`JSON_LIMIT`] (ledger pages).
    pub(crate) async fn get_limited<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        limit: usize,
    ) -> Result<T, ClientError> {
        self.call_limited::<(), T>(Method::GET, path, query, None, limit)
            .await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    /// Chunk `chunk_id` (from `replica`, auditors only), refused unread when the server
    /// announces or sends more than `max_len` bytes: pass [`chunk_ciphertext_len`] of its index.
    pub async fn chunk_limited(
        &self,
        chunk_id: &str,
        replica: Option<&str>,
        max_len: usize,
    ) -> Result<bytes::Bytes, ClientError> {
        let q: Vec<(&str, String)> = replica
            .map(|r| ("replica", r.to_string()))
            .into_iter()
            .collect();
        self.call_raw_limited(
            Method::GET,
            &format!("/v1/chunks/{chunk_id}"),
            &q,
            None,
            max_len,
        )
        .await
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/v1/health", &[]).await
    }

    pub async fn prelogin(&self, email: &str) -> Result<PreloginResponse, ClientError> {
        self.post(
            "/v1/auth/prelogin",
            &PreloginRequest {
                email: email.into(),
            },
        )
        .await
    }

    pub async fn verify_email(&self, email: &str) -> Result<VerifyEmailResponse, ClientError> {
        self.post(
            "/v1/auth/verify-email",
            &VerifyEmailRequest {
                email: email.into(),
            },
        )
        .await
    }

    pub async fn invite_info(&self, code: &str) -> Result<InviteInfo, ClientError> {
        self.post(
            "/v1/auth/invite-info",
            &InviteInfoRequest { code: code.into() },
        )
        .await
    }

    pub async fn register_raw(
        &self,
        req: &RegisterRequest,
    ) -> Result<RegisterResponse, ClientError> {
        self.post("/v1/auth/register", req).await
    }

    /// The password step alone; an account that needs a TOTP code answers `totp_required`.
    pub async fn login_raw(&self, req: &LoginRequest) -> Result<LoginResponse, ClientError> {
        match self.post("/v1/auth/login", req).await? {
            crate::api::LoginAnswer::Session(l) => Ok(*l),
            crate::api::LoginAnswer::Totp { .. } => Err(totp::totp_required_error()),
        }
    }

    pub async fn logout(&self) -> Result<Done, ClientError> {
        self.post("/v1/auth/logout", &serde_json::json!({})).await
    }

    pub async fn me(&self) -> Result<UserInfo, ClientError> {
        self.get("/v1/auth/me", &[]).await
    }

    pub async fn invite(&self, req: &InviteRequest) -> Result<InviteResponse, ClientError> {
        self.post("/v1/admin/invites", req).await
    }

    pub async fn users(&self, q: &str, page: u32) -> Result<Page<UserInfo>, ClientError> {
        self.get(
            "/v1/admin/users",
            &[("q", q.to_string()), ("page", page.to_string())],
        )
        .await
    }

    pub async fn deactivate(&self, id: Uuid) -> Result<Done, ClientError> {
        self.post(
            &format!("/v1/admin/users/{id}/deactivate"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn doctors(
        &self,
        q: &str,
        specialty: &str,
        page: u32,
    ) -> Result<Page<Doctor>, ClientError> {
        self.get(
            "/v1/doctors",
            &[
                ("q", q.to_string()),
                ("specialty", specialty.to_string()),
                ("page", page.to_string()),
            ],
        )
        .await
    }

    pub async fn doctor(&self, id: Uuid) -> Result<Doctor, ClientError> {
        self.get(&format!("/v1/doctors/{id}"), &[]).await
    }

    pub async fn slots(
        &self,
        doctor: Uuid,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<SlotsResponse, ClientError> {
        let mut q = Vec::new();
        if let Some(f) = from {
            q.push(("from", f.to_string()));
        }
        if let Some(t) = to {
            q.push(("to", t.to_string()));
        }
        self.get(&format!("/v1/doctors/{doctor}/slots"), &q).await
    }

    pub async fn availability(&self, doctor: Uuid) -> Result<AvailabilityResponse, ClientError> {
        self.get(&format!("/v1/doctors/{doctor}/availability"), &[])
            .await
    }

    pub async fn set_availability(
        &self,
        doctor: Uuid,
        a: &Availability,
    ) -> Result<AvailabilityResponse, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/doctors/{doctor}/availability"),
            &[],
            Some(a),
        )
        .await
    }

    pub async fn patients(&self, q: &str, page: u32) -> Result<Page<PatientSummary>, ClientError> {
        self.get(
            "/v1/patients",
            &[("q", q.to_string()), ("page", page.to_string())],
        )
        .await
    }

    pub async fn bookings(&self, query: &[(&str, String)]) -> Result<BookingList, ClientError> {
        self.get("/v1/bookings", query).await
    }

    pub async fn book(&self, req: &BookRequest) -> Result<Booking, ClientError> {
        self.post("/v1/bookings", req).await
    }

    pub async fn booking(&self, id: Uuid) -> Result<Booking, ClientError> {
        self.get(&format!("/v1/bookings/{id}"), &[]).await
    }

    /// `action`: `cancel`, `check-in`, `complete` or `no-show`.
    pub async fn booking_action(&self, id: Uuid, action: &str) -> Result<Booking, ClientError> {
        self.post(
            &format!("/v1/bookings/{id}/{action}"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Checks the password rules and the KDF floor, then makes the account's keys.
    /// `email` is the account's address (the salt is bound to it, §4.2).
    pub fn make_keys(
        &self,
        enrollment: Enrollment,
        email: &str,
        password: &str,
        identity: &[&str],
        kdf: KdfParams,
    ) -> Result<NewAccountKeys, ClientError> {
        check_password(password, identity)?;
        check_kdf(&kdf, &self.kdf_floor)?;
        let user_id = Uuid::new_v4();
        let salt: [u8; 16] = random_array()?;
        let master = derive_master_key(password, &account::kdf_salt(email, &salt)?, &kdf)?;
        let secrets = UserSecrets::generate()?;
        let bundle = secrets.seal_bundle(&master.wrap_key(), user_id.as_bytes())?;
        let request = RegisterRequest {
            enrollment,
            user_id,
            salt: salt.to_vec(),
            kdf,
            auth_key: master.auth_key().0.to_vec().into(),
            public_keys: secrets.public(),
            bundle,
        };
        Ok(NewAccountKeys { request, secrets })
    }

    /// [`Self::make_keys`] on the blocking pool: Argon2id is ~0.35 s of CPU that a runtime
    /// worker (in the TUI also serving the embedded server) must not spend.
    async fn make_keys_off_runtime(
        &self,
        enrollment: Enrollment,
        email: &str,
        password: &str,
        identity: &[&str],
        kdf: KdfParams,
    ) -> Result<NewAccountKeys, ClientError> {
        let me = self.clone();
        let email = email.to_string();
        let password = zeroize::Zeroizing::new(password.to_string());
        let identity: Vec<String> = identity.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let identity: Vec<&str> = identity.iter().map(String::as_str).collect();
            me.make_keys(enrollment, &email, &password, &identity, kdf)
        })
        .await
        .map_err(|e| ClientError::Refused(format!("key generation stopped: {e}")))?
    }

    /// Patient registration, after `verify_email` mailed `code`.
    #[allow(clippy::too_many_arguments)]
    pub async fn register_patient(
        &self,
        verification: &VerifyEmailResponse,
        code: &str,
        email: &str,
        name: &str,
        phone: &str,
        password: &str,
    ) -> Result<RegisterResponse, ClientError> {
        let keys = self
            .make_keys_off_runtime(
                Enrollment::Patient {
                    verification_id: verification.verification_id,
                    code: code.into(),
                    email: email.into(),
                    name: name.into(),
                    phone: phone.into(),
                },
                email,
                password,
                &[email, name],
                verification.kdf,
            )
            .await?;
        self.register_raw(&keys.request).await
    }

    /// Completes an admin's invite.
    pub async fn register_invite(
        &self,
        code: &str,
        password: &str,
    ) -> Result<RegisterResponse, ClientError> {
        let info = self.invite_info(code).await?;
        let keys = self
            .make_keys_off_runtime(
                Enrollment::Invite { code: code.into() },
                &info.email,
                password,
                &[&info.email, &info.name],
                info.kdf,
            )
            .await?;
        self.register_raw(&keys.request).await
    }

    /// The first administrator, with the code `serve` printed. The server's KDF parameters
    /// come from pre-login (an unknown address gets the server's current ones).
    pub async fn register_admin(
        &self,
        code: &str,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<RegisterResponse, ClientError> {
        let pre = self.prelogin(email).await?;
        let keys = self
            .make_keys_off_runtime(
                Enrollment::Admin {
                    code: code.into(),
                    email: email.into(),
                    name: name.into(),
                },
                email,
                password,
                &[email, name],
                pre.kdf,
            )
            .await?;
        self.register_raw(&keys.request).await
    }

    /// The master key from the password under the salt and KDF parameters the server gave
    /// for this account (pre-login or the session's keys), refused below the client's floor.
    /// The salt is bound to `email` (§4.2); the server's raw salt (scheme 1) is used only
    /// with `allow_legacy`, the user's explicit opt-in.
    async fn master_key(
        &self,
        email: &str,
        password: &str,
        salt: &[u8],
        scheme: u8,
        kdf: &KdfParams,
        allow_legacy: bool,
    ) -> Result<crate::seal::MasterKey, ClientError> {
        check_kdf(kdf, &self.kdf_floor)?;
        let given: [u8; 16] = salt.try_into().map_err(|_| ClientError::Decode {
            status: 200,
            why: "salt is not 16 bytes".into(),
        })?;
        let salt = match scheme {
            crate::api::SALT_SCHEME_BOUND => account::kdf_salt(email, &given)?,
            crate::api::SALT_SCHEME_LEGACY if allow_legacy => given,
            crate::api::SALT_SCHEME_LEGACY => {
                return Err(ClientError::LegacySalt(account::normalize_email(email)));
            }
            other => {
                return Err(ClientError::Refused(format!(
                    "the server names salt scheme {other}, which this clinvault does not know: \
                     update clinvault"
                )));
            }
        };
        derive_off_runtime(password, salt, *kdf).await
    }

    /// This client's account address, for deriving from a session's keys: the one typed at
    /// login or saved with the session, never the one the server reports.
    fn session_email(&self) -> Result<String, ClientError> {
        self.account_email.clone().ok_or_else(|| {
            ClientError::Refused(
                "this client does not know its account's address: log in again".into(),
            )
        })
    }

    /// Names the account this client's session belongs to (the CLI's session file): the KDF
    /// salt is bound to this address.
    pub fn with_account_email(mut self, email: &str) -> Self {
        self.account_email = Some(account::normalize_email(email));
        self
    }

    /// Pre-login, key derivation, login, and the key bundle opened and checked against the
    /// public keys. Keeps the session token in this client. An account that needs a TOTP
    /// code answers `totp_required`: use [`ApiClient::login_start`] for those. An account
    /// still on the old salt scheme is refused ([`ClientError::LegacySalt`]); see
    /// [`ApiClient::login_legacy_salt`].
    pub async fn login(&mut self, email: &str, password: &str) -> Result<LoggedIn, ClientError> {
        match self.login_start(email, password).await? {
            totp::LoginStep::Done(logged) => Ok(*logged),
            totp::LoginStep::Totp(p) => Err(p.as_error()),
        }
    }

    /// The user's explicit opt-in (the terminal app's prompt, `login --legacy-salt`) for the
    /// next login only: as [`ApiClient::login_legacy_salt`].
    pub fn opt_in_legacy_salt(&mut self) {
        self.legacy_salt_opt_in = true;
    }

    /// The user's explicit opt-in for an account the server says is on the old salt scheme
    /// (issue 17.9): logs in once with the server's salt as it is, then at once seals the keys
    /// again under a fresh salt bound to the address. An account already on the new scheme
    /// logs in as with [`ApiClient::login`].
    pub async fn login_legacy_salt(
        &mut self,
        email: &str,
        password: &str,
    ) -> Result<LoggedIn, ClientError> {
        self.opt_in_legacy_salt();
        self.login(email, password).await
    }

    /// The session's keys: the bundle opened with the password's `wrap_key` and checked
    /// against the public keys, the token kept, and a re-key when the server asks for one
    /// (or at once, for an account that opted out of the old salt scheme).
    pub(crate) async fn finish_login(
        &mut self,
        login: LoginResponse,
        master: &crate::seal::MasterKey,
        password: &str,
        email: &str,
        pre: &PreloginResponse,
    ) -> Result<LoggedIn, ClientError> {
        let secrets = match open_bundle(
            &login.bundle,
            &master.wrap_key(),
            login.user.id.as_bytes(),
            &login.public_keys,
        ) {
            Ok(s) => s,
            Err(SealError::Bundle) => {
                return Err(self.why_bundle_fails(&login, &master.wrap_key()).await);
            }
            Err(e) => return Err(e.into()),
        };
        self.token = Some(login.token.clone());
        self.account_email = Some(account::normalize_email(email));
        let mut logged = LoggedIn {
            login,
            secrets,
            wrap_key: master.wrap_key(),
        };
        if pre.salt_scheme == crate::api::SALT_SCHEME_LEGACY {
            // Opted in: move to the bound salt now, not best effort.
            let kdf = logged.login.kdf_upgrade.unwrap_or(pre.kdf);
            self.rekey(&mut logged, password, master, kdf)
                .await
                .map_err(|e| {
                    ClientError::Refused(format!(
                        "logged in with the old salt, but moving the keys to the new salt \
                         failed: {e}. Log in again with --legacy-salt to retry"
                    ))
                })?;
            tracing::info!("moved the account's keys to the salt bound to its address");
        } else if let Some(kdf) = logged.login.kdf_upgrade {
            // Best effort: the login stands either way, and the next one tries again.
            match self.rekey(&mut logged, password, master, kdf).await {
                Ok(()) => tracing::info!("re-keyed to the server's current KDF parameters"),
                Err(e) => tracing::warn!("could not re-key to the current KDF parameters: {e}"),
            }
        }
        Ok(logged)
    }

    /// The same password under `kdf` and a fresh salt: a new auth key and the bundle sealed
    /// again, replacing the old ones on the server.
    async fn rekey(
        &self,
        logged: &mut LoggedIn,
        password: &str,
        old: &crate::seal::MasterKey,
        kdf: KdfParams,
    ) -> Result<(), ClientError> {
        let (bundle, wrap_key) = self
            .reseal(
                "/v1/auth/rekey",
                &logged.secrets,
                logged.login.user.id,
                password,
                old,
                kdf,
            )
            .await?;
        logged.login.bundle = bundle;
        logged.login.kdf_upgrade = None;
        logged.wrap_key = wrap_key;
        Ok(())
    }

    /// `secrets` sealed again under `password`, `kdf` and a fresh salt bound to this client's
    /// account address, and sent to `route` (re-key or password change) with the old auth key
    /// as proof. Returns the new bundle and `wrap_key`.
    pub(crate) async fn reseal(
        &self,
        route: &str,
        secrets: &UserSecrets,
        user_id: uuid::Uuid,
        password: &str,
        old: &crate::seal::MasterKey,
        kdf: KdfParams,
    ) -> Result<(Vec<u8>, crate::seal::WrapKey), ClientError> {
        check_kdf(&kdf, &self.kdf_floor)?;
        let email = self.session_email()?;
        let salt: [u8; 16] = random_array()?;
        let master = derive_off_runtime(password, account::kdf_salt(&email, &salt)?, kdf).await?;
        let bundle = secrets.seal_bundle(&master.wrap_key(), user_id.as_bytes())?;
        let _: Done = self
            .post(
                route,
                &RekeyRequest {
                    old_auth_key: old.auth_key().0.to_vec().into(),
                    salt: salt.to_vec(),
                    kdf,
                    auth_key: master.auth_key().0.to_vec().into(),
                    bundle: bundle.clone(),
                },
            )
            .await?;
        Ok((bundle, master.wrap_key()))
    }

    /// The master key of this client's session from `GET /v1/auth/keys`: bound to the
    /// address this client knows; an account on the old salt scheme is refused (log in with
    /// the opt-in instead).
    pub(crate) async fn session_master_key(
        &self,
        k: &SessionKeys,
        password: &str,
    ) -> Result<crate::seal::MasterKey, ClientError> {
        let email = self.session_email()?;
        self.master_key(&email, password, &k.salt, k.salt_scheme, &k.kdf, false)
            .await
    }

    /// Unseals the keys of this client's session with the password, without logging in
    /// again (`GET /v1/auth/keys`): no login is counted against the address.
    pub async fn unlock_session(&self, password: &str) -> Result<LoggedIn, ClientError> {
        let token = self
            .token
            .clone()
            .ok_or_else(|| ClientError::Refused("not signed in".into()))?;
        let k: SessionKeys = self.get("/v1/auth/keys", &[]).await?;
        let master = self.session_master_key(&k, password).await?;
        let secrets = open_bundle(
            &k.bundle,
            &master.wrap_key(),
            k.user.id.as_bytes(),
            &k.public_keys,
        )?;
        Ok(LoggedIn {
            login: LoginResponse {
                token,
                user: k.user,
                public_keys: k.public_keys,
                bundle: k.bundle,
                idle_timeout_secs: k.idle_timeout_secs,
                expires_at: k.expires_at,
                kdf_upgrade: None,
            },
            secrets,
            wrap_key: master.wrap_key(),
        })
    }
}

/// A transport failure with its causes: reqwest's own words ("error sending request") say
/// nothing of a refused certificate or a refused connection.
fn network(e: reqwest::Error) -> ClientError {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cause = c.source();
    }
    if msg.contains("CaUsedAsEndEntity") {
        msg.push_str(
            " (the server presents a CA certificate (CA:TRUE) as its own; it needs a server \
             certificate signed by that CA, and [client] ca_file names the CA)",
        );
    } else if msg.contains("UnknownIssuer") || msg.contains("invalid peer certificate") {
        msg.push_str(
            " (the server's certificate does not chain to the CA the client trusts: check \
             [client] ca_file)",
        );
    }
    ClientError::Network(msg)
}

impl ApiClient {
    /// The password was right (the server took its auth key) but the bundle does not open
    /// under the public keys the server names now. When it opens under the keys of an
    /// earlier key entry for this account, the server's keys were replaced (issue 11).
    async fn why_bundle_fails(
        &mut self,
        login: &LoginResponse,
        wrap_key: &crate::seal::WrapKey,
    ) -> ClientError {
        self.token = Some(login.token.clone());
        let keys: Result<crate::api::UserKeys, _> = self
            .get(&format!("/v1/users/{}/keys", login.user.id), &[])
            .await;
        self.token = None;
        let Ok(keys) = keys else {
            return SealError::Bundle.into();
        };
        for e in &keys.key_entries {
            if let Ok(crate::ledger::Entry::UserRegistered {
                x25519_public,
                ed25519_public,
                ..
            }) = crate::ledger::Entry::from_bytes(&e.entry)
            {
                let theirs = crate::seal::PublicKeys {
                    x25519: x25519_public,
                    ed25519: ed25519_public,
                };
                if theirs != login.public_keys
                    && open_bundle(&login.bundle, wrap_key, login.user.id.as_bytes(), &theirs)
                        .is_ok()
                {
                    return ClientError::Impersonation {
                        entry: keys.key_index,
                    };
                }
            }
        }
        SealError::Bundle.into()
    }
}

fn error_answer(status: StatusCode, retry_after: Option<u64>, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        // The server's words reach a terminal: shown escaped, never acted on.
        Ok(err) => ClientError::Server {
            status: status.as_u16(),
            code: crate::text::display(&err.error.code).into_owned(),
            message: crate::text::display(&err.error.message).into_owned(),
            retry_after,
        },
        Err(_) => ClientError::Server {
            status: status.as_u16(),
            code: status_code_name(status),
            message: format!("HTTP {status}"),
            retry_after,
        },
    }
}

fn status_code_name(status: StatusCode) -> String {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => crate::api::codes::BODY_TOO_LARGE.into(),
        StatusCode::REQUEST_TIMEOUT => crate::api::codes::TIMEOUT.into(),
        _ => format!("http_{}", status.as_u16()),
    }
}
