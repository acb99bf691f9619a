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
#[serde(tag = "kind", rename_all = "lowercase")]
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
    /// Set when an operation failed or timed out: until then the bucket is tried last, so
    /// one stopped bucket does not make every request wait for its timeout.
    down_until: std::sync::Mutex<Option<Instant>>,
}

/// How long a bucket that failed is tried last.
const DOWN_FOR: Duration = Duration::from_secs(15);

pub struct ChunkStore {
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

/// Object key of a chunk: `chunks/ab/cd/abcd…` from its lowercase hex id.
pub fn object_key(chunk_id: &[u8; 32]) -> String {
    let hex = hex::encode(chunk_id);
    format!("chunks/{}/{}/{}", &hex[..2], &hex[2..4], hex)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl ChunkStore {
    /// Opens the configured buckets. Local folders are created; S3 buckets must exist.
    pub fn open(configs: &[BucketConfig], replicas: usize) -> Result<Self, ChunkStoreError> {
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
        let mut buckets = Vec::with_capacity(configs.len());
        for cfg in configs {
            let name = cfg.name().to_string();
            if name.is_empty() || buckets.iter().any(|b: &Bucket| b.name == name) {
                return Err(ChunkStoreError::Config(format!(
                    "bucket names must be unique and non-empty (got {name:?})"
                )));
            }
            let store: Arc<dyn ObjectStore> = match cfg {
                BucketConfig::Local { path, .. } => {
                    std::fs::create_dir_all(path).map_err(|e| {
                        ChunkStoreError::Config(format!("bucket {name}: {}: {e}", path.display()))
                    })?;
                    Arc::new(
                        LocalFileSystem::new_with_prefix(path)
                            .map_err(|e| ChunkStoreError::Config(format!("bucket {name}: {e}")))?
                            .with_fsync(true),
                    )
                }
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
            buckets.push(Bucket {
                name,
                store,
                down_until: std::sync::Mutex::new(None),
            });
        }
        Ok(ChunkStore {
            buckets,
            replicas,
            op_timeout: Duration::from_secs(20),
        })
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
        let actual = sha256(&body);
        if &actual != chunk_id {
            return Err(ChunkStoreError::HashMismatch {
                expected: hex::encode(chunk_id),
                actual: hex::encode(actual),
            });
        }
        let key = ObjectPath::from(object_key(chunk_id));
        let order = self.up_first(self.placement(chunk_id));
        let mut durable: Vec<usize> = Vec::new();
        let mut last_error = String::from("no bucket tried");
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
                    let r = tokio::time::timeout(
                        self.op_timeout,
                        self.buckets[i].store.put(&key, body.into()),
                    )
                    .await
                    .map_err(|_| format!("no answer in {:?}", self.op_timeout))
                    .and_then(|r| r.map_err(|e| e.to_string()));
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
        let got = tokio::time::timeout(self.op_timeout, async {
            match b.store.get(&key).await {
                Ok(g) => g.bytes().await,
                Err(e) => Err(e),
            }
        })
        .await;
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
            Ok(bytes) if &sha256(&bytes) == chunk_id => Ok(bytes),
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

    /// [`ChunkStore::ready`], with a bucket that does not answer in time counted as down.
    pub async fn ready_within(&self, limit: Duration) -> Vec<(String, bool)> {
        join_all(self.buckets.iter().map(|b| async move {
            let ok = matches!(
                tokio::time::timeout(
                    limit,
                    b.store
                        .list_with_delimiter(Some(&ObjectPath::from("chunks")))
                )
                .await,
                Ok(Ok(_))
            );
            (b.name.clone(), ok)
        }))
        .await
    }

    /// Writes a small object (outside `chunks/`) to every bucket that answers in `limit`;
    /// returns the names of those that took it. For the ledger signer's memory.
    pub async fn put_everywhere(&self, key: &str, body: Bytes, limit: Duration) -> Vec<String> {
        let key = ObjectPath::from(key);
        join_all(self.buckets.iter().map(|b| {
            let key = key.clone();
            let body = body.clone();
            async move {
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
