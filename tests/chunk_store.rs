//! The replicated chunk store on real folders (and on a real S3 server when one is given).

use bytes::Bytes;
use clinvault::server::chunk_store::{
    BucketConfig, ChunkStore, ChunkStoreError, ReplicaState, object_key,
};
use sha2::{Digest, Sha256};

fn chunk(seed: u8, len: usize) -> ([u8; 32], Bytes) {
    let body: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    (Sha256::digest(&body).into(), Bytes::from(body))
}

fn local(dir: &std::path::Path, names: &[&str]) -> Vec<BucketConfig> {
    names
        .iter()
        .map(|n| BucketConfig::Local {
            name: n.to_string(),
            path: dir.join(n),
        })
        .collect()
}

fn file_of(dir: &std::path::Path, bucket: &str, id: &[u8; 32]) -> std::path::PathBuf {
    dir.join(bucket).join(object_key(id))
}

#[tokio::test]
async fn put_writes_two_durable_fanned_out_replicas_and_get_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(&BucketConfig::default_local(dir.path()), 2).unwrap();
    let (id, body) = chunk(1, 5000);
    let placed = store.put(&id, body.clone()).await.unwrap();
    assert_eq!(placed.len(), 2);
    let hex = hex::encode(id);
    for b in ["a", "b"] {
        let path = dir
            .path()
            .join("buckets")
            .join(b)
            .join("chunks")
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(&hex);
        assert_eq!(std::fs::read(&path).unwrap(), body, "{}", path.display());
    }
    let (got, bad) = store.get(&id, &placed).await.unwrap();
    assert_eq!(got, body);
    assert!(bad.is_empty());
    // Idempotent.
    assert_eq!(store.put(&id, body).await.unwrap(), placed);
}

#[tokio::test]
async fn a_body_that_does_not_hash_to_its_id_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(&local(dir.path(), &["a", "b"]), 2).unwrap();
    let (id, _) = chunk(1, 100);
    let (_, other) = chunk(2, 100);
    let err = store.put(&id, other).await.unwrap_err();
    assert!(matches!(err, ChunkStoreError::HashMismatch { .. }), "{err}");
    for b in ["a", "b"] {
        assert!(!file_of(dir.path(), b, &id).exists());
    }
}

#[tokio::test]
async fn a_corrupt_replica_falls_back_and_is_reported_then_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(&local(dir.path(), &["a", "b"]), 2).unwrap();
    let (id, body) = chunk(3, 4096);
    let placed = store.put(&id, body.clone()).await.unwrap();
    let first = placed[0].clone();
    let path = file_of(dir.path(), &first, &id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    let (got, bad) = store.get(&id, &placed).await.unwrap();
    assert_eq!(got, body);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].bucket, first);
    assert_eq!(bad[0].state, ReplicaState::Corrupt);
    assert_eq!(
        store.check_replica(&id, &first).await,
        ReplicaState::Corrupt
    );

    store.write_replica(&id, &first, got).await.unwrap();
    assert_eq!(store.check_replica(&id, &first).await, ReplicaState::Intact);
    // A repair with the wrong bytes is refused.
    let (_, wrong) = chunk(4, 4096);
    assert!(store.write_replica(&id, &first, wrong).await.is_err());
}

#[tokio::test]
async fn both_replicas_bad_names_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(&local(dir.path(), &["a", "b"]), 2).unwrap();
    let (id, body) = chunk(5, 64);
    let placed = store.put(&id, body).await.unwrap();
    std::fs::write(file_of(dir.path(), &placed[0], &id), b"garbage").unwrap();
    std::fs::remove_file(file_of(dir.path(), &placed[1], &id)).unwrap();
    let err = store.get(&id, &placed).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&hex::encode(id)), "{text}");
    assert_eq!(
        store.check_replica(&id, &placed[1]).await,
        ReplicaState::Missing
    );
}

#[tokio::test]
async fn writes_go_on_when_one_of_three_buckets_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(&local(dir.path(), &["a", "b", "c"]), 2).unwrap();
    // Take bucket "b" down: its folder becomes a plain file, so every write to it fails.
    std::fs::remove_dir_all(dir.path().join("b")).unwrap();
    std::fs::write(dir.path().join("b"), b"not a folder").unwrap();
    let mut used_b_first = 0;
    for seed in 0..20u8 {
        let (id, body) = chunk(seed, 256);
        let order = store.placement(&id);
        if store.bucket_names()[order[0]] == "b" || store.bucket_names()[order[1]] == "b" {
            used_b_first += 1;
        }
        let placed = store.put(&id, body.clone()).await.unwrap();
        assert_eq!(placed.len(), 2);
        assert!(!placed.contains(&"b".to_string()));
        assert_eq!(store.get(&id, &placed).await.unwrap().0, body);
    }
    assert!(
        used_b_first > 0,
        "placement should have picked the down bucket for some chunks"
    );
    // With two of three down, a 2-replica write cannot be durable and says so.
    std::fs::remove_dir_all(dir.path().join("c")).unwrap();
    std::fs::write(dir.path().join("c"), b"not a folder").unwrap();
    let (id, body) = chunk(99, 256);
    let err = store.put(&id, body).await.unwrap_err();
    assert!(
        matches!(
            err,
            ChunkStoreError::NotDurable {
                durable: 1,
                wanted: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn placement_is_stable_and_spreads_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(&local(dir.path(), &["a", "b", "c"]), 2).unwrap();
    let mut first = [0usize; 3];
    for seed in 0..=255u8 {
        let (id, _) = chunk(seed, 8);
        let order = store.placement(&id);
        assert_eq!(order, store.placement(&id));
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2]);
        first[order[0]] += 1;
    }
    assert!(first.iter().all(|&n| n > 40), "uneven spread {first:?}");
}

#[test]
fn bad_configurations_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let one = local(dir.path(), &["a"]);
    assert!(
        ChunkStore::open(&one, 2)
            .unwrap_err()
            .to_string()
            .contains("need at least 2 buckets")
    );
    assert!(ChunkStore::open(&local(dir.path(), &["a", "a"]), 1).is_err());
    assert!(ChunkStore::open(&one, 0).is_err());
}

/// Against a real S3 server (moto in `.ci/run`): set CLINVAULT_TEST_S3_ENDPOINT and create
/// buckets `cv-a` and `cv-b` first.
#[tokio::test]
#[ignore = "needs an S3 server: set CLINVAULT_TEST_S3_ENDPOINT"]
async fn s3_buckets_round_trip_and_fall_back() {
    let endpoint = std::env::var("CLINVAULT_TEST_S3_ENDPOINT").expect("CLINVAULT_TEST_S3_ENDPOINT");
    let cfg: Vec<BucketConfig> = ["cv-a", "cv-b"]
        .iter()
        .map(|b| BucketConfig::S3 {
            name: b.to_string(),
            bucket: b.to_string(),
            endpoint: Some(endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            path_style: true,
            allow_http: true,
        })
        .collect();
    let store = ChunkStore::open(&cfg, 2).unwrap();
    assert!(store.ready().await.iter().all(|(_, ok)| *ok));
    let (id, body) = chunk(42, 100_000);
    let placed = store.put(&id, body.clone()).await.unwrap();
    assert_eq!(placed.len(), 2);
    assert_eq!(store.get(&id, &placed).await.unwrap().0, body);
    // Overwrite one replica with garbage through S3 itself: reads fall back to the other.
    {
        use object_store::{ObjectStoreExt, aws::AmazonS3Builder, path::Path};
        let raw = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(&placed[0])
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        raw.put(
            &Path::from(object_key(&id)),
            Bytes::from_static(b"garbage").into(),
        )
        .await
        .unwrap();
    }
    let (got, bad) = store.get(&id, &placed).await.unwrap();
    assert_eq!(got, body);
    assert_eq!(bad[0].state, ReplicaState::Corrupt);
    store.write_replica(&id, &placed[0], got).await.unwrap();
    assert_eq!(
        store.check_replica(&id, &placed[0]).await,
        ReplicaState::Intact
    );
    store.delete(&id).await.unwrap();
    assert_eq!(
        store.check_replica(&id, &placed[0]).await,
        ReplicaState::Missing
    );
    assert!(store.get(&id, &placed).await.is_err());
}
