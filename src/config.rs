//! Configuration: built-in defaults < file < `CLINVAULT_*` environment < command-line flags.
//!
//! Environment keys use `__` between levels: `CLINVAULT_SERVER__LISTEN=0.0.0.0:8440`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::seal::KdfParams;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub client: ClientConfig,
    /// SMTP; without it mail goes to `DATA/outbox/` as `.eml` files.
    pub mail: Option<MailConfig>,
    /// Terminal client key map: command name -> key or keys (defaults in `tui::keymap`).
    pub keys: std::collections::BTreeMap<String, KeyBinding>,
}

/// One key (`"q"`) or several (`["k", "Up"]`) for a command of the terminal client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyBinding {
    One(String),
    Many(Vec<String>),
}

impl KeyBinding {
    pub fn keys(&self) -> Vec<String> {
        match self {
            KeyBinding::One(k) => vec![k.clone()],
            KeyBinding::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub listen: String,
    pub data: PathBuf,
    /// Empty: SQLite at `DATA/meta.db`. `postgres://…` switches to PostgreSQL.
    pub database_url: String,
    /// Empty: `DATA/secrets.toml`. Point several processes at one file to share it.
    pub secrets_file: String,
    /// The clinic's IANA time zone; slots are derived in it.
    pub timezone: String,
    pub tls_cert: String,
    pub tls_key: String,
    /// KDF parameters given to new accounts.
    pub kdf: KdfParams,
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
    pub session_idle_secs: u64,
    pub session_absolute_secs: u64,
    /// Login, registration and enrollment attempts per client address per minute.
    pub auth_per_address_per_minute: u32,
    /// Failed logins per account before it backs off for `account_backoff_secs`.
    pub account_failures: u32,
    pub account_backoff_secs: u64,
    /// Demo mode (embedded server): the file outbox is expected, not warned about.
    pub demo: bool,
    /// Log lines as JSON objects (one per line) instead of text.
    pub log_json: bool,
    /// Answer `GET /v1/metrics` to any address, not only loopback (e.g. a scraper on the
    /// clinic's network). It holds no ids or names, but it does show traffic.
    pub metrics_public: bool,
    pub max_db_connections: u32,
    /// Chunk buckets; empty: two local folders, `DATA/buckets/a` and `DATA/buckets/b`.
    pub buckets: Vec<crate::server::chunk_store::BucketConfig>,
    /// Replicas of every chunk (at most the number of buckets).
    pub replicas: usize,
    /// Longest wait for one bucket operation; a bucket that fails is then tried last for a
    /// while, so writes and reads go on with the others.
    pub bucket_timeout_secs: u64,
    /// Mail the patient a code that must be entered before a new report is theirs to open.
    pub release_otp: bool,
    /// How long a grant to another doctor lasts.
    pub grant_days: u32,
    /// Code entries and mailings per account (and per request) per minute.
    pub otp_per_minute: u32,
    /// Chunks of a report left open and untouched this long are removed.
    pub open_report_ttl_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8440".into(),
            data: PathBuf::from("./clinvault-data"),
            database_url: String::new(),
            secrets_file: String::new(),
            timezone: "UTC".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            kdf: KdfParams::default(),
            max_body_bytes: 64 * 1024,
            request_timeout_secs: 30,
            session_idle_secs: 15 * 60,
            session_absolute_secs: 12 * 3600,
            auth_per_address_per_minute: 10,
            account_failures: 5,
            account_backoff_secs: 15 * 60,
            demo: false,
            log_json: false,
            metrics_public: false,
            max_db_connections: 16,
            buckets: Vec::new(),
            replicas: 2,
            bucket_timeout_secs: 20,
            release_otp: true,
            grant_days: 30,
            otp_per_minute: 10,
            open_report_ttl_secs: 24 * 3600,
        }
    }
}

impl ServerConfig {
    pub fn secrets_path(&self) -> PathBuf {
        if self.secrets_file.is_empty() {
            self.data.join("secrets.toml")
        } else {
            PathBuf::from(&self.secrets_file)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// Server URL, e.g. `https://clinic.example:8440`.
    pub server: String,
    /// Allow `http://` to a host other than loopback (never for real use).
    pub allow_insecure_http: bool,
    /// The weakest KDF a server may ask this client to use.
    pub kdf_floor: KdfParams,
    /// PEM of the CA (or self-signed certificate) the server's certificate must chain to;
    /// when set, only it is trusted.
    pub ca_file: String,
    /// Where the session token lives; empty: `$XDG_STATE_HOME/clinvault` or `~/.local/state/clinvault`.
    pub state_dir: String,
    /// Chunk size for new reports, 4 KiB – 16 MiB.
    pub chunk_size: u32,
    /// The server's ledger key (`clinvault-ledger:…`); empty: pinned on first use.
    pub ledger_key: String,
    /// Signed heads older than this are refused.
    pub max_head_age_secs: u64,
    /// Chunk uploads and downloads in flight at once.
    pub transfers: usize,
    /// The terminal client locks itself (wiping keys and decrypted text) after this much idle time.
    pub idle_lock_minutes: u64,
    /// Mouse capture in the terminal client; off by default (SSH, copy and paste).
    pub mouse: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server: String::new(),
            allow_insecure_http: false,
            kdf_floor: KdfParams::default(),
            ca_file: String::new(),
            state_dir: String::new(),
            chunk_size: crate::seal::DEFAULT_CHUNK_SIZE,
            ledger_key: String::new(),
            max_head_age_secs: 3600,
            transfers: 4,
            idle_lock_minutes: 10,
            mouse: false,
        }
    }
}

impl ClientConfig {
    pub fn state_path(&self) -> PathBuf {
        if !self.state_dir.is_empty() {
            return PathBuf::from(&self.state_dir);
        }
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("clinvault");
        }
        match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".local/state/clinvault"),
            None => PathBuf::from(".clinvault-state"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `none` (loopback sinks only), `starttls` or `tls`.
    pub security: String,
    pub username: String,
    pub password: String,
    pub from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            smtp_host: String::new(),
            smtp_port: 587,
            security: "starttls".into(),
            username: String::new(),
            password: String::new(),
            from: "clinvault <noreply@clinvault.invalid>".into(),
        }
    }
}

/// Loads the configuration. `overrides` are flags as `("server.listen", value)` pairs.
pub fn load(file: Option<&Path>, overrides: &[(&str, String)]) -> Result<Config, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError::Invalid(format!(
                "config file {} does not exist",
                file.display()
            )));
        }
        builder = builder.add_source(config::File::from(file));
    }
    builder = builder.add_source(
        config::Environment::with_prefix("CLINVAULT")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true),
    );
    for (key, value) in overrides {
        builder = builder.set_override(*key, value.clone())?;
    }
    let cfg: Config = builder.build()?.try_deserialize()?;
    cfg.validate()?;
    Ok(cfg)
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "server.timezone {:?} is not an IANA time zone name (e.g. Europe/Berlin)",
                self.server.timezone
            )));
        }
        if self.server.tls_cert.is_empty() != self.server.tls_key.is_empty() {
            return Err(ConfigError::Invalid(
                "server.tls_cert and server.tls_key must be set together".into(),
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "server.max_body_bytes below 1024 leaves no room for a request".into(),
            ));
        }
        let buckets = if self.server.buckets.is_empty() {
            2
        } else {
            self.server.buckets.len()
        };
        if self.server.replicas == 0 || self.server.replicas > buckets {
            return Err(ConfigError::Invalid(format!(
                "server.replicas is {} but there are {buckets} buckets: use 1..={buckets}",
                self.server.replicas
            )));
        }
        if !(4096..=crate::seal::MAX_CHUNK_SIZE).contains(&self.client.chunk_size) {
            return Err(ConfigError::Invalid(format!(
                "client.chunk_size {} is outside 4096..=16777216 bytes",
                self.client.chunk_size
            )));
        }
        if self.client.transfers == 0 || self.client.transfers > 64 {
            return Err(ConfigError::Invalid(
                "client.transfers must be 1..=64".into(),
            ));
        }
        if !self.client.ledger_key.is_empty()
            && crate::ledger::LedgerKey::parse(&self.client.ledger_key).is_err()
        {
            return Err(ConfigError::Invalid(
                "client.ledger_key must look like clinvault-ledger:<base64 of 32 bytes> (see `clinvault serve`'s start-up log)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let cfg = load(Some(&path), &[("server.listen", "127.0.0.1:9999".into())]).unwrap();
        assert_eq!(
            cfg.server.listen, "127.0.0.1:9999",
            "flags win over the file"
        );
        assert_eq!(cfg.server.kdf, KdfParams::default());
        assert_eq!(cfg.client.kdf_floor, KdfParams::default());
        assert_eq!(cfg.server.timezone, "Europe/Berlin");
        assert!(cfg.mail.is_none());
    }

    #[test]
    fn bad_time_zone_is_refused() {
        let mut cfg = Config::default();
        cfg.server.timezone = "Mars/Olympus".into();
        assert!(cfg.validate().is_err());
    }
}
