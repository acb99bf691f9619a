//! Configuration: built-in defaults < file < `CLINVAULT_*` environment < command-line flags.
//!
//! Environment keys use `__` between levels: `CLINVAULT_SERVER__LISTEN=0.0.0.0:8440`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::seal::KdfParams;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or a variable could not be read or parsed (the message names which).
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration: {0}")]
    UnknownKey(String),
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> Self {
        // Its Display already carries the cause; keeping it as a source would print it twice.
        ConfigError::Load(e.to_string())
    }
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
    /// Break-glass (issue 16): minutes between a team member's request and the release of the
    /// escrowed keys, during which the patient may veto. 0: released at once.
    pub emergency_wait_minutes: u32,
    /// Code entries and mailings per account (and per request) per minute.
    pub otp_per_minute: u32,
    /// Chunks of a report left open and untouched this long are removed.
    pub open_report_ttl_secs: u64,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client;
    /// from anyone else the header is ignored and the socket's peer is the client.
    pub trusted_proxies: Vec<String>,
    /// How far ahead a visit may be booked.
    pub booking_horizon_days: u32,
    /// Future visits a patient may hold at once when booking themselves (reception and
    /// admins may book beyond it).
    pub max_future_bookings_per_patient: u32,
    /// The origin line of the ledger's C2SP checkpoints (issue 11), naming this deployment;
    /// empty: `clinvault/` and the first 8 bytes of the ledger key in hex.
    pub ledger_origin: String,
    /// Witnesses every new signed head is submitted to (c2sp.org/tlog-witness).
    pub witnesses: Vec<WitnessEndpoint>,
    /// Staff roles that must log in with a TOTP code (issue 15); others may enrol if they
    /// wish. An account of a listed role without TOTP is led to enrol at its next login.
    pub require_totp_for: Vec<crate::api::Role>,
}

/// A witness the server submits checkpoints to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WitnessEndpoint {
    /// Submission prefix, e.g. `https://witness.example/` (`add-checkpoint` is appended).
    pub url: String,
    /// The witness's verifier key, `name+id+base64` (type 0x04).
    pub vkey: String,
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
            emergency_wait_minutes: 0,
            otp_per_minute: 10,
            open_report_ttl_secs: 24 * 3600,
            trusted_proxies: Vec::new(),
            booking_horizon_days: 180,
            max_future_bookings_per_patient: 4,
            ledger_origin: String::new(),
            witnesses: Vec::new(),
            require_totp_for: Vec::new(),
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
    /// Witness verifier keys (`name+id+base64`, type 0x04) whose cosignatures count.
    pub witnesses: Vec<String>,
    /// Signed heads need this many valid cosignatures from `witnesses` (0: none needed).
    pub witness_quorum: usize,
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
            transfers: 8,
            idle_lock_minutes: 10,
            mouse: false,
            witnesses: Vec::new(),
            witness_quorum: 0,
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
///
/// Unknown keys in the file or in `CLINVAULT_SECTION__KEY` variables are refused (a misspelled
/// key would otherwise silently keep its default); `~` in paths is expanded.
pub fn load(file: Option<&Path>, overrides: &[(&str, String)]) -> Result<Config, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigError::Invalid(format!("cannot read config file {}: {e}", file.display()))
        })?;
        check_file_keys(&text)
            .map_err(|e| ConfigError::UnknownKey(format!("{}: {e}", file.display())))?;
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }
    check_env_keys(std::env::vars())?;
    builder = builder.add_source(
        config::Environment::with_prefix("CLINVAULT")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true),
    );
    for (key, value) in overrides {
        builder = builder.set_override(*key, value.clone())?;
    }
    let mut cfg: Config = builder.build()?.try_deserialize()?;
    cfg.expand_home();
    cfg.validate()?;
    Ok(cfg)
}

/// Every key the configuration knows, as TOML: the defaults with every optional part filled in.
fn schema() -> toml::Value {
    use crate::server::chunk_store::BucketConfig;
    let cfg = Config {
        mail: Some(MailConfig::default()),
        server: ServerConfig {
            buckets: vec![
                BucketConfig::Local {
                    name: String::new(),
                    path: PathBuf::new(),
                },
                BucketConfig::S3 {
                    name: String::new(),
                    bucket: String::new(),
                    endpoint: Some(String::new()),
                    region: String::new(),
                    access_key_id: Some(String::new()),
                    secret_access_key: Some(String::new()),
                    path_style: true,
                    allow_http: false,
                },
            ],
            ..ServerConfig::default()
        },
        ..Config::default()
    };
    toml::Value::try_from(&cfg).unwrap_or(toml::Value::Table(Default::default()))
}

/// The keys allowed beside `path`'s last segment, for a suggestion.
fn known_keys_at(parent: &[&str]) -> Vec<String> {
    let mut level = vec![schema()];
    for seg in parent {
        let mut next = Vec::new();
        for v in &level {
            match v {
                toml::Value::Table(t) => next.extend(t.get(*seg).cloned()),
                // `buckets.0`: any entry's keys (local and S3 differ).
                toml::Value::Array(a) if seg.parse::<usize>().is_ok() => next.extend(a.clone()),
                _ => {}
            }
        }
        level = next;
    }
    let mut keys: Vec<String> = level
        .iter()
        .filter_map(|v| v.as_table())
        .flat_map(|t| t.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn unknown_key_message(path: &str) -> String {
    // serde_ignored shows an `Option`'s inside as `?`.
    let segs: Vec<&str> = path.split('.').filter(|s| *s != "?").collect();
    let (key, parent) = segs.split_last().map_or(("", &[][..]), |(k, p)| (*k, p));
    let place = if parent.is_empty() {
        "at the top level".to_string()
    } else if parent.len() >= 2 && parent[parent.len() - 1].parse::<usize>().is_ok() {
        format!(
            "in [[{}]] entry {}",
            parent[..parent.len() - 1].join("."),
            parent[parent.len() - 1]
        )
    } else {
        format!("in [{}]", parent.join("."))
    };
    let best = known_keys_at(parent)
        .into_iter()
        .map(|k| (strsim::jaro_winkler(key, &k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => format!("unknown key `{key}` {place}; did you mean `{k}`?"),
        None => {
            format!("unknown key `{key}` {place}; see config.example.toml for the keys there are")
        }
    }
}

/// Refuses keys `Config` does not have.
pub fn check_file_keys(text: &str) -> Result<(), String> {
    let value: toml::Value = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
    let mut unknown = Vec::new();
    let parsed: Result<Config, toml::de::Error> =
        serde_ignored::deserialize(value, |path| unknown.push(path.to_string()));
    if let Some(first) = unknown.first() {
        return Err(unknown_key_message(first));
    }
    // A bucket is an internally tagged enum: serde buffers it, so serde_ignored cannot see
    // inside; `deny_unknown_fields` on it reports the key instead.
    if let Err(e) = parsed {
        let msg = e.to_string();
        if let Some(field) = msg
            .split_once("unknown field `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(field, _)| field)
        {
            return Err(
                unknown_key_message(&format!("server.buckets.0.{field}")).replace(
                    "in [[server.buckets]] entry 0",
                    "in a [[server.buckets]] entry",
                ),
            );
        }
        // Wrong types are reported by the full load, with their location.
    }
    Ok(())
}

/// Refuses `CLINVAULT_SECTION__KEY` variables that name no key. Variables without `__`
/// (`CLINVAULT_CONFIG`, `CLINVAULT_PASSWORD`, `CLINVAULT_LOG`) are not settings.
fn check_env_keys(vars: impl Iterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (name, _) in vars {
        let Some(rest) = name.strip_prefix("CLINVAULT_") else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let (key, parent) = path.split_last().expect("split yields one part at least");
        let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
        // `[keys]` takes any command name; the terminal client checks them.
        if parent.first() == Some(&"keys") {
            continue;
        }
        if !known_keys_at(&parent).iter().any(|k| k == key) {
            return Err(ConfigError::UnknownKey(format!(
                "environment variable {name}: {}",
                unknown_key_message(&path.join("."))
            )));
        }
    }
    Ok(())
}

/// `~` or `~/…` at the start of a path: the user's home folder.
fn expand_home_str(s: &str) -> String {
    let home = match std::env::var("HOME") {
        Ok(h) if !h.is_empty() => h,
        _ => return s.to_string(),
    };
    if s == "~" {
        home
    } else if let Some(rest) = s.strip_prefix("~/") {
        format!("{}/{rest}", home.trim_end_matches('/'))
    } else {
        s.to_string()
    }
}

fn expand_home_path(p: &Path) -> PathBuf {
    match p.to_str() {
        Some(s) => PathBuf::from(expand_home_str(s)),
        None => p.to_path_buf(),
    }
}

impl Config {
    fn expand_home(&mut self) {
        use crate::server::chunk_store::BucketConfig;
        let sv = &mut self.server;
        sv.data = expand_home_path(&sv.data);
        for s in [&mut sv.secrets_file, &mut sv.tls_cert, &mut sv.tls_key] {
            *s = expand_home_str(s);
        }
        for b in &mut sv.buckets {
            if let BucketConfig::Local { path, .. } = b {
                *path = expand_home_path(path);
            }
        }
        let cl = &mut self.client;
        for s in [&mut cl.ca_file, &mut cl.state_dir] {
            *s = expand_home_str(s);
        }
    }

    /// The settings as TOML with passwords and secret keys replaced, for printing.
    pub fn redacted_toml(&self) -> Result<String, ConfigError> {
        use crate::server::chunk_store::BucketConfig;
        const HIDDEN: &str = "<redacted>";
        let mut c = self.clone();
        if let Some(m) = &mut c.mail
            && !m.password.is_empty()
        {
            m.password = HIDDEN.into();
        }
        for b in &mut c.server.buckets {
            if let BucketConfig::S3 {
                secret_access_key: Some(k),
                ..
            } = b
            {
                *k = HIDDEN.into();
            }
        }
        c.server.database_url = redact_url_password(&c.server.database_url);
        toml::to_string(&c).map_err(|e| ConfigError::Invalid(format!("printing: {e}")))
    }

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
        for p in &self.server.trusted_proxies {
            if crate::server::extract::parse_cidr(p).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "server.trusted_proxies: {p:?} is not an IP address or CIDR block (10.0.0.0/8)"
                )));
            }
        }
        if self.server.booking_horizon_days == 0 {
            return Err(ConfigError::Invalid(
                "server.booking_horizon_days must be at least 1".into(),
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
        if let Some(r) = self
            .server
            .require_totp_for
            .iter()
            .find(|r| !crate::server::routes::totp::STAFF.contains(r))
        {
            return Err(ConfigError::Invalid(format!(
                "server.require_totp_for: {r} accounts are not offered TOTP (patients are \
                 not); list only doctor, reception, admin, auditor"
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

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_string(),
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
    fn require_totp_for_takes_staff_roles_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[server]\nrequire_totp_for = [\"doctor\", \"admin\"]\n").unwrap();
        let cfg = load(Some(&f), &[]).unwrap();
        assert_eq!(
            cfg.server.require_totp_for,
            vec![crate::api::Role::Doctor, crate::api::Role::Admin]
        );
        std::fs::write(&f, "[server]\nrequire_totp_for = [\"patient\"]\n").unwrap();
        let e = load(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("patient accounts are not offered TOTP"), "{e}");
        std::fs::write(&f, "[server]\nrequire_totp_for = [\"nurse\"]\n").unwrap();
        assert!(load(Some(&f), &[]).is_err(), "an unknown role is refused");
    }

    #[test]
    fn misspelled_keys_are_refused_with_a_suggestion() {
        let e = check_file_keys("[client]\nsever = \"https://x\"\n").unwrap_err();
        assert_eq!(e, "unknown key `sever` in [client]; did you mean `server`?");
        let e = check_file_keys("[server.kdf]\nm_kb = 1\n").unwrap_err();
        assert!(
            e.contains("`m_kb` in [server.kdf]; did you mean `m_kib`?"),
            "{e}"
        );
        let e = check_file_keys(
            "[[server.buckets]]\nkind = \"s3\"\nname = \"a\"\nbucket = \"b\"\nendpont = \"x\"\n",
        )
        .unwrap_err();
        assert!(e.contains("did you mean `endpoint`?"), "{e}");
        let e = check_file_keys("[mail]\nsmtp_hots = \"x\"\n").unwrap_err();
        assert!(e.contains("did you mean `smtp_host`?"), "{e}");
        let e = check_file_keys("colour = true\n").unwrap_err();
        assert!(e.contains("`colour` at the top level"), "{e}");
        check_file_keys("[keys]\nquit = \"x\"\n").expect("[keys] takes command names");
    }

    #[test]
    fn unknown_environment_keys_are_refused() {
        let vars = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(check_env_keys(vars(&[("CLINVAULT_SERVER__LISTEN", "x")])).is_ok());
        assert!(check_env_keys(vars(&[("CLINVAULT_SERVER__KDF__M_KIB", "1")])).is_ok());
        assert!(check_env_keys(vars(&[("CLINVAULT_PASSWORD", "x")])).is_ok());
        let e = check_env_keys(vars(&[("CLINVAULT_SERVER__LISEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CLINVAULT_SERVER__LISEN") && e.contains("`listen`"),
            "{e}"
        );
    }

    #[test]
    fn home_is_expanded_and_secrets_are_redacted() {
        let mut cfg = Config::default();
        cfg.client.ca_file = "~/ca.pem".into();
        cfg.expand_home();
        if let Ok(home) = std::env::var("HOME") {
            assert_eq!(
                cfg.client.ca_file,
                format!("{}/ca.pem", home.trim_end_matches('/'))
            );
        }
        cfg.server.database_url = "postgres://cv:hunter2@db/cv".into();
        cfg.mail = Some(MailConfig {
            password: "smtp-secret".into(),
            ..MailConfig::default()
        });
        let shown = cfg.redacted_toml().unwrap();
        assert!(
            !shown.contains("hunter2") && !shown.contains("smtp-secret"),
            "{shown}"
        );
        assert!(shown.contains("postgres://cv:<redacted>@db/cv"), "{shown}");
    }

    #[test]
    fn bad_time_zone_is_refused() {
        let mut cfg = Config::default();
        cfg.server.timezone = "Mars/Olympus".into();
        assert!(cfg.validate().is_err());
    }
}
