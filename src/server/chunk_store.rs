//! Ciphertext chunks in two or more buckets (DESIGN.md §7).
//!
//! Each chunk goes to `replicas` buckets: the first reachable ones in rendezvous-hash order of
//! its id. A put succeeds only when that many copies are durable (local buckets fsync the file
//! and its folder). Reads verify SHA-256 and fall back to the next replica, reporting bad ones.
//! Object keys fan out (`chunks/ab/cd/abcd…`): a flat folder of thousands of files slows writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where one bucket lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BucketConfig {
    /// A folder on this machine (relative paths are under the data folder).
    Local {
        name: String,
        path: std::path::PathBuf,
    },
    /// Any S3-compatible service (AWS S3, MinIO, Ceph, Garage).
    S3 {
        name: String,
        bucket: String,
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default = "default_region")]
        region: String,
        #[serde(default)]
        access_key_id: Option<String>,
        #[serde(default)]
        secret_access_key: Option<String>,
        /// Path-style requests (MinIO, moto, most self-hosted services).
        #[serde(default = "yes")]
        path_style: bool,
        /// Allow plain HTTP to the endpoint (loopback tests only).
        #[serde(default)]
        allow_http: bool,
    },
}

fn default_region() -> String {
    "us-east-1".into()
}

fn yes() -> bool {
    true
}

impl BucketConfig {
    pub fn name(&self) -> &str {
        match self {
            BucketConfig::Local { name, .. } | BucketConfig::S3 { name, .. } => name,
        }
    }

    /// The default: two local buckets `buckets/a` and `buckets/b` under the data folder.
    pub fn default_local(data_dir: &std::path::Path) -> Vec<BucketConfig> {
        ["a", "b"]
            .into_iter()
            .map(|n| BucketConfig::Local {
                name: n.to_string(),
                path: data_dir.join("buckets").join(n),
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkStoreError {
    #[error("bucket configuration: {0}")]
    Config(String),
    #[error("chunk body does not match its id {expected}: its SHA-256 is {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("only {durable} of {wanted} replicas of chunk {chunk} could be written: {cause}")]
    NotDurable {
        chunk: String,
        durable: usize,
        wanted: usize,
        cause: String,
    },
    #[error("chunk {chunk}: no replica could be read intact ({cause})")]
    Unreadable { chunk: String, cause: String },
    #[error("unknown bucket {0}")]
    UnknownBucket(String),
}

/// What a replica looks like when checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaState {
    Intact,
    Missing,
    /// Present, but its SHA-256 is not the chunk id.
    Corrupt,
    /// The bucket did not answer.
    Unreachable(String),
}

/// A replica that failed while reading, for the caller to report (and the auditor to repair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadReplica {
    pub bucket: String,
    pub state: ReplicaState,
}

struct Bucket {
    name: String,
    store: Arc<dyn ObjectStore>,
    /// Why the bucket is not written to: its identity marker is gone (a vanished or replaced
    /// folder, another bucket mounted in its place). Cleared when the marker is back.
    lost: std::sync::Mutex<Option<String>>,
    /// Whether the bucket's identity was claimed (`claim_identities`): only then is a missing
    /// marker a lost bucket.
    claimed: std::sync::atomic::AtomicBool,
    /// A local bucket's folder: where interrupted writes leave staging files.
    local: Option<std::path::PathBuf>,
    /// Set when an operation failed or timed out: until then the bucket is tried last, so
    /// one stopped bucket does not make every request wait for its timeout.
    down_until: std::sync::Mutex<Option<Instant>>,
}

impl Bucket {
    /// Stores a chunk durably: a local bucket writes it with `O_DIRECT` on the blocking pool
    /// ([`direct_io`]), an S3 bucket through object_store.
    async fn put(&self, key: &ObjectPath, body: Bytes) -> Result<(), String> {
        match &self.local {
            Some(root) => {
                let (root, key) = (root.clone(), key.to_string());
                tokio::task::spawn_blocking(move || {
                    crate::direct_io::write_durable(&root, &key, &body)
                })
                .await
                .map_err(|e| format!("write task: {e}"))?
                .map_err(|e| e.to_string())
            }
            None => self
                .store
                .put(key, body.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// Reads a chunk whole (unchecked); a local bucket reads with `O_DIRECT`.
    async fn get(&self, key: &ObjectPath) -> Result<Bytes, object_store::Error> {
        let Some(root) = &self.local else {
            return match self.store.get(key).await {
                Ok(g) => g.bytes().await,
                Err(e) => Err(e),
            };
        };
        let (root, key) = (root.clone(), key.to_string());
        let max = u64::from(crate::seal::MAX_CHUNK_SIZE) + crate::seal::TAG_LEN as u64;
        let read = tokio::task::spawn_blocking({
            let key = key.clone();
            move || crate::direct_io::read(&root, &key, max)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match read {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(object_store::Error::NotFound {
                path: key,
                source: "no such chunk file".into(),
            }),
            Err(e) => Err(object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            }),
        }
    }
}

/// How long a bucket that failed is tried last.
const DOWN_FOR: Duration = Duration::from_secs(15);

pub struct ChunkStore {
    /// Staging files of interrupted writes removed since the process started.
    staging_swept: std::sync::atomic::AtomicU64,
    buckets: Vec<Bucket>,
    replicas: usize,
    /// Longest wait for one bucket operation, retries included.
    op_timeout: Duration,
}

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore")
            .field("buckets", &self.bucket_names())
            .field("replicas", &self.replicas)
            .finish()
    }
}

/// The object naming a bucket's identity, written at its first use.
pub const MARKER_KEY: &str = "clinvault-bucket-id";

/// Object key of a chunk: `chunks/ab/cd/abcd…` from its lowercase hex id.
pub fn object_key(chunk_id: &[u8; 32]) -> String {
    let hex = hex::encode(chunk_id);
    format!("chunks/{}/{}/{}", &hex[..2], &hex[2..4], hex)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    // Optimised even in a debug build (clinvault-hot): every stored and served byte is hashed.
    clinvault_hot::sha256(&[bytes])
}

/// [`sha256`] on the blocking pool: a 16 MiB chunk is milliseconds of CPU that would stall the
/// other requests of the async worker it ran on.
pub async fn sha256_blocking(bytes: &Bytes) -> [u8; 32] {
    let b = bytes.clone();
    match tokio::task::spawn_blocking(move || sha256(&b)).await {
        Ok(h) => h,
        // Only if the runtime is shutting down: hash here then.
        Err(_) => sha256(bytes),
    }
}

impl ChunkStore {
    /// Opens the configured buckets. Local folders are created; S3 buckets must exist.
    pub fn open(configs: &[BucketConfig], replicas: usize) -> Result<Self, ChunkStoreError> {
        for cfg in configs {
            if let BucketConfig::Local { name, path } = cfg {
                std::fs::create_dir_all(path).map_err(|e| {
                    ChunkStoreError::Config(format!("bucket {name}: {}: {e}", path.display()))
                })?;
            }
        }
        Self::open_existing(configs, replicas)
    }

    /// Opens the configured buckets without making any folder: the server's way, which then
    /// calls `claim_identities` (a first use makes the folder, a vanished one stays gone).
    pub fn open_existing(
        configs: &[BucketConfig],
        replicas: usize,
    ) -> Result<Self, ChunkStoreError> {
        if replicas == 0 {
            return Err(ChunkStoreError::Config(
                "replicas must be at least 1".into(),
            ));
        }
        if configs.len() < replicas {
            return Err(ChunkStoreError::Config(format!(
                "{replicas} replicas need at least {replicas} buckets; {} configured",
                configs.len()
            )));
        }
        crate::install_tls_provider();
        let mut buckets = Vec::with_capacity(configs.len());
        for cfg in configs {
            let name = cfg.name().to_string();
            if name.is_empty() || buckets.iter().any(|b: &Bucket| b.name == name) {
                return Err(ChunkStoreError::Config(format!(
                    "bucket names must be unique and non-empty (got {name:?})"
                )));
            }
            let store: Arc<dyn ObjectStore> = match cfg {
                // The folder is not made here: at first use the identity marker makes it, and
                // a folder that vanished later is never made again (`claim_identities`).
                BucketConfig::Local { path, .. } if !path.exists() => {
                    let abs = std::path::absolute(path).map_err(|e| {
                        ChunkStoreError::Config(format!("bucket {name}: {}: {e}", path.display()))
                    })?;
                    let Some(abs) = abs.to_str() else {
                        return Err(ChunkStoreError::Config(format!(
                            "bucket {name}: the path is not UTF-8"
                        )));
                    };
                    let prefix = ObjectPath::from(abs);
                    Arc::new(object_store::prefix::PrefixStore::new(
                        LocalFileSystem::new().with_fsync(true),
                        prefix,
                    ))
                }
                BucketConfig::Local { path, .. } => Arc::new(
                    LocalFileSystem::new_with_prefix(path)
                        .map_err(|e| ChunkStoreError::Config(format!("bucket {name}: {e}")))?
                        .with_fsync(true),
                ),
                BucketConfig::S3 {
                    bucket,
                    endpoint,
                    region,
                    access_key_id,
                    secret_access_key,
                    path_style,
                    allow_http,
                    ..
                } => {
                    // Short timeouts and few retries: a bucket that is down must not stall
                    // writes that the other buckets can take.
                    let mut b = AmazonS3Builder::new()
                        .with_bucket_name(bucket)
                        .with_region(region)
                        .with_virtual_hosted_style_request(!path_style)
                        .with_allow_http(*allow_http)
                        .with_client_options(
                            ClientOptions::new()
                                .with_allow_http(*allow_http)
                                .with_timeout(Duration::from_secs(10))
                                .with_connect_timeout(Duration::from_secs(3)),
                        )
                        .with_retry(RetryConfig {
                            max_retries: 2,
                            retry_timeout: Duration::from_secs(15),
                            ..RetryConfig::default()
                        });
                    if let Some(e) = endpoint {
                        b = b.with_endpoint(e);
                    }
                    if let Some(k) = access_key_id {
                        b = b.with_access_key_id(k);
                    }
                    if let Some(s) = secret_access_key {
                        b = b.with_secret_access_key(s);
                    }
                    Arc::new(
                        b.build()
                            .map_err(|e| ChunkStoreError::Config(format!("bucket {name}: {e}")))?,
                    )
                }
            };
            let local = match cfg {
                BucketConfig::Local { path, .. } => Some(path.clone()),
                BucketConfig::S3 { .. } => None,
            };
            buckets.push(Bucket {
                name,
                store,
                local,
                lost: std::sync::Mutex::new(None),
                claimed: std::sync::atomic::AtomicBool::new(false),
                down_until: std::sync::Mutex::new(None),
            });
        }
        Ok(ChunkStore {
            staging_swept: std::sync::atomic::AtomicU64::new(0),
            buckets,
            replicas,
            op_timeout: Duration::from_secs(20),
        })
    }

    /// Whether bucket `i` may be written: unclaimed buckets (a store used without
    /// `claim_identities`) always; claimed ones while their marker is there.
    async fn writable(&self, i: usize) -> Result<bool, String> {
        if !self.buckets[i]
            .claimed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(true);
        }
        self.check_marker(i).await
    }

    /// Whether bucket `i` still holds its identity marker: `Ok(false)` marks it lost.
    async fn check_marker(&self, i: usize) -> Result<bool, String> {
        let b = &self.buckets[i];
        let r = tokio::time::timeout(self.op_timeout, b.store.head(&ObjectPath::from(MARKER_KEY)))
            .await
            .map_err(|_| format!("no answer in {:?}", self.op_timeout))?;
        let present = match r {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(e.to_string()),
        };
        if let Ok(mut l) = b.lost.lock() {
            *l = (!present).then(|| {
                format!(
                    "bucket {} lost its identity marker ({MARKER_KEY}): replaced, emptied or \
                     unmounted; not writing to it",
                    b.name
                )
            });
        }
        Ok(present)
    }

    /// At start: a bucket without a marker gets one (its first use; the folder of a local
    /// bucket is made then) unless the database records chunks in it and a sample of them is
    /// gone: then it vanished, and it is marked lost, not recreated. `used` maps bucket names
    /// to one chunk recorded there. Returns the names of lost buckets.
    pub async fn claim_identities(
        &self,
        used: &std::collections::HashMap<String, [u8; 32]>,
    ) -> Vec<String> {
        let mut lost = Vec::new();
        for i in 0..self.buckets.len() {
            let b = &self.buckets[i];
            let r = self.check_marker(i).await;
            if r.is_ok() {
                b.claimed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            match r {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(bucket = %b.name, error = %e, "bucket identity not checked");
                    continue;
                }
            }
            if let Some(sample) = used.get(&b.name) {
                let there = b
                    .store
                    .head(&ObjectPath::from(object_key(sample)))
                    .await
                    .is_ok();
                if !there {
                    tracing::error!(bucket = %b.name, "bucket holds recorded chunks but neither them nor its identity marker: not recreating it");
                    lost.push(b.name.clone());
                    continue;
                }
            }
            let body = format!(
                "clinvault bucket\nname = {}\nid = {}\n",
                b.name,
                uuid::Uuid::new_v4()
            );
            match b
                .store
                .put(&ObjectPath::from(MARKER_KEY), Bytes::from(body).into())
                .await
            {
                Ok(_) => {
                    let _ = self.check_marker(i).await;
                }
                Err(e) => {
                    tracing::warn!(bucket = %b.name, error = %e, "could not write the bucket's identity marker")
                }
            }
        }
        lost
    }

    /// The operator's answer to a lost bucket (emptied, replaced by a new disk or a new S3
    /// bucket): writes a new identity marker, so servers write to it again and an audit
    /// repair can bring its replicas back. Refused while the bucket still has its marker.
    pub async fn adopt(&self, name: &str) -> Result<(), ChunkStoreError> {
        let Some(i) = self.buckets.iter().position(|b| b.name == name) else {
            return Err(ChunkStoreError::Config(format!(
                "no bucket named {name:?}; the configured ones are {}",
                self.bucket_names().join(", ")
            )));
        };
        let b = &self.buckets[i];
        match self.check_marker(i).await {
            Ok(true) => {
                return Err(ChunkStoreError::Config(format!(
                    "bucket {name} still has its identity marker; nothing to adopt"
                )));
            }
            Ok(false) => {}
            Err(e) => {
                return Err(ChunkStoreError::Config(format!(
                    "bucket {name} does not answer: {e}"
                )));
            }
        }
        if let Some(path) = &b.local {
            std::fs::create_dir_all(path).map_err(|e| {
                ChunkStoreError::Config(format!("bucket {name}: {}: {e}", path.display()))
            })?;
        }
        let body = format!(
            "clinvault bucket\nname = {}\nid = {}\nadopted = true\n",
            b.name,
            uuid::Uuid::new_v4()
        );
        b.store
            .put(&ObjectPath::from(MARKER_KEY), Bytes::from(body).into())
            .await
            .map_err(|e| ChunkStoreError::Config(format!("bucket {name}: {e}")))?;
        self.check_marker(i)
            .await
            .map_err(|e| ChunkStoreError::Config(format!("bucket {name}: {e}")))?;
        Ok(())
    }

    /// Removes the staging files (`chunks/ab/cd/<id>#N`) that a write killed mid-way leaves in
    /// local buckets, once older than `min_age` (a write in flight is younger). Returns how
    /// many went; [`ChunkStore::staging_swept`] counts them all.
    pub fn sweep_staging(&self, min_age: Duration) -> u64 {
        let mut n = 0;
        for b in &self.buckets {
            let Some(root) = &b.local else { continue };
            let mut dirs = vec![root.join("chunks")];
            while let Some(d) = dirs.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd.flatten() {
                    let Ok(t) = e.file_type() else { continue };
                    if t.is_dir() {
                        dirs.push(e.path());
                        continue;
                    }
                    let name = e.file_name();
                    let staging = t.is_file() && name.to_str().is_some_and(|s| s.contains('#'));
                    let old = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|a| a >= min_age);
                    if staging && old && std::fs::remove_file(e.path()).is_ok() {
                        tracing::info!(bucket = %b.name, file = %e.path().display(), "removed the staging file of an interrupted write");
                        n += 1;
                    }
                }
            }
        }
        self.staging_swept
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        n
    }

    pub fn staging_swept(&self) -> u64 {
        self.staging_swept
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lost buckets (no identity marker), with why, as of their last check.
    pub fn lost(&self) -> Vec<String> {
        self.buckets
            .iter()
            .filter_map(|b| b.lost.lock().ok().and_then(|l| l.clone()))
            .collect()
    }

    /// Caps each bucket operation (the S3 client's own retries included).
    pub fn with_op_timeout(mut self, limit: Duration) -> Self {
        self.op_timeout = limit.max(Duration::from_millis(100));
        self
    }

    fn is_down(&self, i: usize) -> bool {
        self.buckets[i]
            .down_until
            .lock()
            .map(|d| d.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false)
    }

    fn mark(&self, i: usize, ok: bool) {
        if let Ok(mut d) = self.buckets[i].down_until.lock() {
            *d = if ok {
                None
            } else {
                Some(Instant::now() + DOWN_FOR)
            };
        }
    }

    /// `order` with buckets known to be down moved to the end (order otherwise kept).
    fn up_first(&self, order: Vec<usize>) -> Vec<usize> {
        let (up, down): (Vec<usize>, Vec<usize>) =
            order.into_iter().partition(|&i| !self.is_down(i));
        up.into_iter().chain(down).collect()
    }

    pub fn replicas(&self) -> usize {
        self.replicas
    }

    pub fn bucket_names(&self) -> Vec<String> {
        self.buckets.iter().map(|b| b.name.clone()).collect()
    }

    /// Bucket indexes in rendezvous (highest random weight) order for this chunk: adding or
    /// removing a bucket moves only the chunks that hash to it.
    pub fn placement(&self, chunk_id: &[u8; 32]) -> Vec<usize> {
        let mut scored: Vec<([u8; 32], usize)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut h = Sha256::new();
                h.update(b"clinvault/placement/v1");
                h.update((b.name.len() as u32).to_be_bytes());
                h.update(b.name.as_bytes());
                h.update(chunk_id);
                (h.finalize().into(), i)
            })
            .collect();
        scored.sort_by_key(|s| std::cmp::Reverse(s.0));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    fn bucket(&self, name: &str) -> Result<&Bucket, ChunkStoreError> {
        self.buckets
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| ChunkStoreError::UnknownBucket(name.to_string()))
    }

    /// Stores a chunk after checking its body hashes to its id. Returns the buckets that now
    /// hold it durably, in placement order; fails unless `replicas` of them do.
    pub async fn put(
        &self,
        chunk_id: &[u8; 32],
        body: Bytes,
    ) -> Result<Vec<String>, ChunkStoreError> {
        let actual = sha256_blocking(&body).await;
        if &actual != chunk_id {
            return Err(ChunkStoreError::HashMismatch {
                expected: hex::encode(chunk_id),
                actual: hex::encode(actual),
            });
        }
        let key = ObjectPath::from(object_key(chunk_id));
        // Never into a bucket without its identity marker: writing would recreate a vanished
        // folder (checked on every write: a stat for a folder, a HEAD for S3).
        let marks = join_all((0..self.buckets.len()).map(|i| self.writable(i))).await;
        let mut last_error = String::from("no bucket tried");
        let order: Vec<usize> = self
            .up_first(self.placement(chunk_id))
            .into_iter()
            .filter(|&i| {
                let ok = !matches!(marks[i], Ok(false));
                if !ok {
                    last_error =
                        format!("bucket {}: identity marker missing", self.buckets[i].name);
                }
                ok
            })
            .collect();
        let mut durable: Vec<usize> = Vec::new();
        let mut next = 0;
        // Write to as many candidates at once as replicas are still missing, in placement
        // order, until enough are durable or the candidates run out.
        while durable.len() < self.replicas && next < order.len() {
            let want = (self.replicas - durable.len()).min(order.len() - next);
            let batch = &order[next..next + want];
            next += want;
            let results = join_all(batch.iter().map(|&i| {
                let key = key.clone();
                let body = body.clone();
                async move {
                    let r = tokio::time::timeout(self.op_timeout, self.buckets[i].put(&key, body))
                        .await
                        .map_err(|_| format!("no answer in {:?}", self.op_timeout))
                        .and_then(|r| r);
                    (i, r)
                }
            }))
            .await;
            for (i, r) in results {
                self.mark(i, r.is_ok());
                match r {
                    Ok(_) => durable.push(i),
                    Err(e) => {
                        tracing::warn!(bucket = %self.buckets[i].name, error = %e, "chunk write failed; trying the next bucket");
                        last_error = format!("bucket {}: {e}", self.buckets[i].name);
                    }
                }
            }
        }
        if durable.len() < self.replicas {
            return Err(ChunkStoreError::NotDurable {
                chunk: hex::encode(chunk_id),
                durable: durable.len(),
                wanted: self.replicas,
                cause: last_error,
            });
        }
        durable.sort_by_key(|i| order.iter().position(|o| o == i));
        Ok(durable
            .into_iter()
            .map(|i| self.buckets[i].name.clone())
            .collect())
    }

    /// Reads one replica and checks it.
    pub async fn read_replica(
        &self,
        chunk_id: &[u8; 32],
        bucket: &str,
    ) -> Result<Bytes, ReplicaState> {
        let b = self
            .bucket(bucket)
            .map_err(|e| ReplicaState::Unreachable(e.to_string()))?;
        let key = ObjectPath::from(object_key(chunk_id));
        let i = self
            .buckets
            .iter()
            .position(|x| x.name == b.name)
            .unwrap_or(0);
        let got = tokio::time::timeout(self.op_timeout, b.get(&key)).await;
        let Ok(got) = got else {
            self.mark(i, false);
            return Err(ReplicaState::Unreachable(format!(
                "no answer in {:?}",
                self.op_timeout
            )));
        };
        self.mark(
            i,
            matches!(got, Ok(_) | Err(object_store::Error::NotFound { .. })),
        );
        match got {
            Ok(bytes) if &sha256_blocking(&bytes).await == chunk_id => Ok(bytes),
            Ok(_) => Err(ReplicaState::Corrupt),
            Err(object_store::Error::NotFound { .. }) => Err(ReplicaState::Missing),
            Err(e) => Err(ReplicaState::Unreachable(e.to_string())),
        }
    }

    /// One replica's bytes as stored, unchecked: for an auditor who checks them itself.
    pub async fn read_raw(&self, chunk_id: &[u8; 32], bucket: &str) -> Result<Bytes, ReplicaState> {
        let b = self
            .bucket(bucket)
            .map_err(|e| ReplicaState::Unreachable(e.to_string()))?;
        let key = ObjectPath::from(object_key(chunk_id));
        let got = match b.store.get(&key).await {
            Ok(g) => g.bytes().await,
            Err(e) => Err(e),
        };
        match got {
            Ok(bytes) => Ok(bytes),
            Err(object_store::Error::NotFound { .. }) => Err(ReplicaState::Missing),
            Err(e) => Err(ReplicaState::Unreachable(e.to_string())),
        }
    }

    pub async fn check_replica(&self, chunk_id: &[u8; 32], bucket: &str) -> ReplicaState {
        match self.read_replica(chunk_id, bucket).await {
            Ok(_) => ReplicaState::Intact,
            Err(state) => state,
        }
    }

    /// Reads a chunk from the first intact replica among `locations` (then any other bucket),
    /// returning the bytes and the replicas found bad on the way.
    pub async fn get(
        &self,
        chunk_id: &[u8; 32],
        locations: &[String],
    ) -> Result<(Bytes, Vec<BadReplica>), ChunkStoreError> {
        let mut bad = Vec::new();
        let others = self
            .placement(chunk_id)
            .into_iter()
            .map(|i| self.buckets[i].name.clone())
            .filter(|n| !locations.contains(n));
        // Recorded replicas first, those in buckets known to be down last.
        let mut tries: Vec<String> = locations.iter().cloned().chain(others).collect();
        tries.sort_by_key(|n| {
            self.buckets
                .iter()
                .position(|b| &b.name == n)
                .is_some_and(|i| self.is_down(i))
        });
        for bucket in tries {
            match self.read_replica(chunk_id, &bucket).await {
                Ok(bytes) => return Ok((bytes, bad)),
                Err(ReplicaState::Missing) if !locations.contains(&bucket) => {}
                Err(state) => {
                    tracing::warn!(chunk = %hex::encode(chunk_id), %bucket, ?state, "bad replica; falling back");
                    bad.push(BadReplica { bucket, state });
                }
            }
        }
        Err(ChunkStoreError::Unreadable {
            chunk: hex::encode(chunk_id),
            cause: if bad.is_empty() {
                "no replica found".into()
            } else {
                bad.iter()
                    .map(|b| format!("{}: {:?}", b.bucket, b.state))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }

    /// Writes a verified copy into `bucket` (repair). The bytes are checked against the id first.
    pub async fn write_replica(
        &self,
        chunk_id: &[u8; 32],
        bucket: &str,
        body: Bytes,
    ) -> Result<(), ChunkStoreError> {
        let actual = sha256(&body);
        if &actual != chunk_id {
            return Err(ChunkStoreError::HashMismatch {
                expected: hex::encode(chunk_id),
                actual: hex::encode(actual),
            });
        }
        let b = self.bucket(bucket)?;
        let i = self
            .buckets
            .iter()
            .position(|x| x.name == b.name)
            .unwrap_or(0);
        if matches!(self.writable(i).await, Ok(false)) {
            return Err(ChunkStoreError::NotDurable {
                chunk: hex::encode(chunk_id),
                durable: 0,
                wanted: 1,
                cause: format!("bucket {bucket}: identity marker missing; not recreating it"),
            });
        }
        b.store
            .put(&ObjectPath::from(object_key(chunk_id)), body.into())
            .await
            .map_err(|e| ChunkStoreError::NotDurable {
                chunk: hex::encode(chunk_id),
                durable: 0,
                wanted: 1,
                cause: format!("bucket {bucket}: {e}"),
            })?;
        Ok(())
    }

    /// Removes a chunk from every bucket (the sweep of abandoned uploads). Missing is fine.
    pub async fn delete(&self, chunk_id: &[u8; 32]) -> Result<(), ChunkStoreError> {
        let key = ObjectPath::from(object_key(chunk_id));
        for b in &self.buckets {
            match b.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(ChunkStoreError::Unreadable {
                        chunk: hex::encode(chunk_id),
                        cause: format!("delete from bucket {}: {e}", b.name),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether each bucket answers (for `/v1/ready`): a listing of one key.
    pub async fn ready(&self) -> Vec<(String, bool)> {
        join_all(self.buckets.iter().map(|b| async move {
            let ok = b
                .store
                .list_with_delimiter(Some(&ObjectPath::from("chunks")))
                .await
                .is_ok();
            (b.name.clone(), ok)
        }))
        .await
    }

    /// [`ChunkStore::ready`], with a bucket that does not answer in time counted as down; a
    /// bucket without its identity marker is down too (see [`ChunkStore::lost`]).
    pub async fn ready_within(&self, limit: Duration) -> Vec<(String, bool)> {
        join_all(self.buckets.iter().enumerate().map(|(i, b)| async move {
            let ok = matches!(
                tokio::time::timeout(
                    limit,
                    b.store
                        .list_with_delimiter(Some(&ObjectPath::from("chunks")))
                )
                .await,
                Ok(Ok(_))
            ) && matches!(
                tokio::time::timeout(limit, self.writable(i)).await,
                Ok(Ok(true))
            );
            (b.name.clone(), ok)
        }))
        .await
    }

    /// Writes a small object (outside `chunks/`) to every writable bucket that answers in
    /// `limit`; returns the names of those that took it. For the ledger signer's memory. A
    /// bucket that lost its identity marker is skipped: writing would recreate its folder.
    pub async fn put_everywhere(&self, key: &str, body: Bytes, limit: Duration) -> Vec<String> {
        let key = ObjectPath::from(key);
        join_all(self.buckets.iter().enumerate().map(|(i, b)| {
            let key = key.clone();
            let body = body.clone();
            async move {
                if !matches!(self.writable(i).await, Ok(true)) {
                    return None;
                }
                let ok = matches!(
                    tokio::time::timeout(limit, b.store.put(&key, body.into())).await,
                    Ok(Ok(_))
                );
                ok.then(|| b.name.clone())
            }
        }))
        .await
        .into_iter()
        .flatten()
        .collect()
    }

    /// Reads a small object from every bucket that answers in `limit` and holds it.
    pub async fn get_everywhere(&self, key: &str, limit: Duration) -> Vec<(String, Bytes)> {
        let key = ObjectPath::from(key);
        join_all(self.buckets.iter().map(|b| {
            let key = key.clone();
            async move {
                let got = tokio::time::timeout(limit, async {
                    match b.store.get(&key).await {
                        Ok(g) => g.bytes().await,
                        Err(e) => Err(e),
                    }
                })
                .await;
                match got {
                    Ok(Ok(bytes)) => Some((b.name.clone(), bytes)),
                    _ => None,
                }
            }
        }))
        .await
        .into_iter()
        .flatten()
        .collect()
    }
}
