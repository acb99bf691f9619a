//! Issue 11: C2SP formats against the specs' own example and an independent Python script
//! (tests/vectors/c2sp), and a witness that cosigns consistent growth only — across restarts.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clinvault::ledger::MerkleTree;
use clinvault::witness::note::{
    Checkpoint, Note, NoteSignature, SIG_COSIGNATURE_V1, SIG_ED25519, VerifierKey, cosign,
    verify_cosignature,
};
use clinvault::witness::{Witness, spawn};
use ed25519_dalek::SigningKey;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/c2sp/vectors.json")).unwrap()
}

fn seed(v: &Value, field: &str) -> SigningKey {
    let mut s = [0u8; 32];
    hex::decode_to_slice(v[field].as_str().unwrap(), &mut s).unwrap();
    SigningKey::from_bytes(&s)
}

/// The example of c2sp.org/signed-note: its verifier key verifies its note.
#[test]
fn signed_note_spec_example() {
    let vkey =
        VerifierKey::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
            .unwrap();
    assert_eq!(vkey.sig_type, SIG_ED25519);
    let note = Note::parse(
        "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n",
    )
    .unwrap();
    note.verify_ed25519(&vkey).unwrap();
    assert_eq!(
        vkey.to_string(),
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    );
    // One changed byte of text: refused.
    let mut bad = note.clone();
    bad.text = "This is an example message!\n".into();
    assert!(bad.verify_ed25519(&vkey).is_err());
}

/// The tlog-checkpoint example parses (its signature needs a key the spec does not give).
#[test]
fn checkpoint_spec_example() {
    let text =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let cp = Checkpoint::parse(text).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(cp.body(), text);
    for bad in [
        "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n1\nCsUY\n",
        "o\n1\n",
        "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    ] {
        assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
    }
}

/// The Python script's bytes, reproduced exactly.
#[test]
fn python_vectors_match() {
    let v = vectors();
    let (log, wit) = (seed(&v, "log_seed_hex"), seed(&v, "witness_seed_hex"));
    let origin = v["origin"].as_str().unwrap();
    let name = v["witness"].as_str().unwrap();
    let log_vkey = VerifierKey::new(origin, SIG_ED25519, log.verifying_key().to_bytes()).unwrap();
    let wit_vkey =
        VerifierKey::new(name, SIG_COSIGNATURE_V1, wit.verifying_key().to_bytes()).unwrap();
    assert_eq!(log_vkey.to_string(), v["log_vkey"].as_str().unwrap());
    assert_eq!(wit_vkey.to_string(), v["witness_vkey"].as_str().unwrap());
    let mut tree = MerkleTree::new();
    for l in v["leaves_utf8"].as_array().unwrap() {
        tree.push_entry(l.as_str().unwrap().as_bytes());
    }
    for c in v["checkpoints"].as_array().unwrap() {
        let size = c["size"].as_u64().unwrap();
        let cp = Checkpoint {
            origin: origin.into(),
            size,
            root: tree.root_at(size).unwrap(),
        };
        let note = cp.sign(&log);
        assert_eq!(note.to_text(), c["note"].as_str().unwrap());
        let t = c["cosignature_time"].as_u64().unwrap();
        let line = cosign(&note.text, t, name, &wit).line();
        assert_eq!(line, c["cosignature_line"].as_str().unwrap());
        let parsed = NoteSignature::parse_line(line.trim_end_matches('\n')).unwrap();
        assert_eq!(verify_cosignature(&note.text, &parsed, &wit_vkey), Ok(t));
        // Parsing the Python note and verifying it with the log key.
        Note::parse(c["note"].as_str().unwrap())
            .unwrap()
            .verify_ed25519(&log_vkey)
            .unwrap();
    }
    let proof = tree.consistency_proof(3, 7).unwrap();
    let mut body = "old 3\n".to_string();
    for h in &proof {
        body.push_str(&STANDARD.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(
        &Checkpoint {
            origin: origin.into(),
            size: 7,
            root: tree.root(),
        }
        .sign(&log)
        .to_text(),
    );
    assert_eq!(body, v["add_checkpoint_body_3_to_7"].as_str().unwrap());
}

struct Log {
    key: SigningKey,
    origin: String,
    tree: MerkleTree,
}

impl Log {
    fn new(origin: &str, seed: u8) -> Log {
        Log {
            key: SigningKey::from_bytes(&[seed; 32]),
            origin: origin.into(),
            tree: MerkleTree::new(),
        }
    }
    fn vkey(&self) -> VerifierKey {
        VerifierKey::new(
            &self.origin,
            SIG_ED25519,
            self.key.verifying_key().to_bytes(),
        )
        .unwrap()
    }
    fn grow(&mut self, n: usize, tag: &str) {
        for i in 0..n {
            self.tree.push_entry(format!("{tag} {i}").as_bytes());
        }
    }
    /// The add-checkpoint body from `old` to the current size.
    fn body(&self, old: u64) -> String {
        let size = self.tree.size();
        let mut b = format!("old {old}\n");
        if old > 0 && old < size {
            for h in self.tree.consistency_proof(old, size).unwrap() {
                b.push_str(&STANDARD.encode(h));
                b.push('\n');
            }
        }
        b.push('\n');
        b.push_str(
            &Checkpoint {
                origin: self.origin.clone(),
                size,
                root: self.tree.root(),
            }
            .sign(&self.key)
            .to_text(),
        );
        b
    }
}

fn open(dir: &std::path::Path, logs: Vec<VerifierKey>) -> Witness {
    Witness::open(
        "witness.test/w1",
        SigningKey::from_bytes(&[9; 32]),
        &dir.join("witness-state.json"),
        logs,
    )
    .unwrap()
}

#[tokio::test]
async fn witness_cosigns_growth_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new("clinic.test/ledger", 1);
    let w = open(dir.path(), vec![log.vkey()]);
    let wkey = w.vkey();
    log.grow(3, "a");
    let line = w.add_checkpoint(&log.body(0), 1_700_000_000).await.unwrap();
    let note = Note {
        text: Checkpoint {
            origin: log.origin.clone(),
            size: 3,
            root: log.tree.root(),
        }
        .body(),
        signatures: vec![NoteSignature::parse_line(line.trim_end_matches('\n')).unwrap()],
    };
    assert_eq!(
        clinvault::witness::note::cosigned_by(&note, std::slice::from_ref(&wkey)),
        vec!["witness.test/w1"]
    );
    log.grow(4, "b");
    w.add_checkpoint(&log.body(3), 1_700_000_001).await.unwrap();
    // Same size again (a re-signed head): cosigned again.
    w.add_checkpoint(&log.body(7), 1_700_000_002).await.unwrap();

    // A stale old size: 409 with the size it holds.
    let r = w.add_checkpoint(&log.body(3), 1).await.unwrap_err();
    assert_eq!((r.status, r.body.as_str()), (409, "7\n"));
    // A smaller tree after the larger one.
    let mut small = Log::new("clinic.test/ledger", 1);
    small.grow(3, "a");
    let r = w.add_checkpoint(&small.body(7), 1).await.unwrap_err();
    assert_eq!(r.status, 400, "{}", r.body);
    // A fork: same origin and key, other entries, proof from the fork's own 7.
    let mut fork = Log::new("clinic.test/ledger", 1);
    fork.grow(3, "a");
    fork.grow(5, "x");
    let r = w.add_checkpoint(&fork.body(7), 1).await.unwrap_err();
    assert_eq!(r.status, 422, "{}", r.body);
    // Same size, other root.
    let mut same = Log::new("clinic.test/ledger", 1);
    same.grow(7, "z");
    let r = w.add_checkpoint(&same.body(7), 1).await.unwrap_err();
    assert_eq!(r.status, 422, "{}", r.body);
    // A bad proof: one hash changed.
    log.grow(2, "c");
    let body = log.body(7);
    let first_proof = body.lines().nth(1).unwrap().to_string();
    let mut h = STANDARD.decode(&first_proof).unwrap();
    h[0] ^= 1;
    let r = w
        .add_checkpoint(&body.replacen(&first_proof, &STANDARD.encode(h), 1), 1)
        .await
        .unwrap_err();
    assert_eq!(r.status, 422, "{}", r.body);
    // Signed by another key under the log's name: 403. An unknown origin: 404.
    let mut other_key = Log::new("clinic.test/ledger", 2);
    other_key.grow(9, "a");
    assert_eq!(
        w.add_checkpoint(&other_key.body(7), 1)
            .await
            .unwrap_err()
            .status,
        403
    );
    let mut unknown = Log::new("other.test/log", 1);
    unknown.grow(1, "a");
    assert_eq!(
        w.add_checkpoint(&unknown.body(0), 1)
            .await
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        w.add_checkpoint("old x\n\n", 1).await.unwrap_err().status,
        400
    );

    // Restart: the state file holds size 7; the fork and the small tree are still refused,
    // the honest growth still cosigned.
    drop(w);
    let w = open(dir.path(), vec![log.vkey()]);
    assert_eq!(
        w.add_checkpoint(&fork.body(7), 1).await.unwrap_err().status,
        422
    );
    assert_eq!(
        w.add_checkpoint(&small.body(0), 1)
            .await
            .unwrap_err()
            .status,
        409
    );
    w.add_checkpoint(&log.body(7), 1).await.unwrap();
    assert_eq!(
        w.add_checkpoint(&log.body(7), 1).await.unwrap_err().body,
        "9\n"
    );
}

/// The HTTP interface: status codes and content types of tlog-witness.
#[tokio::test]
async fn witness_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::new("clinic.test/ledger", 1);
    let w = Arc::new(open(dir.path(), vec![log.vkey()]));
    let (addr, _task) = spawn(w.clone(), "127.0.0.1:0").await.unwrap();
    let url = format!("http://{addr}/add-checkpoint");
    log.grow(5, "a");
    let c = reqwest::Client::new();
    let r = c.post(&url).body(log.body(0)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let line = r.text().await.unwrap();
    assert!(line.starts_with("\u{2014} witness.test/w1 ") && line.ends_with('\n'));
    let r = c.post(&url).body(log.body(0)).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/x.tlog.size"
    );
    assert_eq!(r.text().await.unwrap(), "5\n");
}

mod common;

use clinvault::client::ledger::{Ledger, WitnessPolicy};
use clinvault::config::WitnessEndpoint;
use common::Db;

fn policy(keys: &[VerifierKey], quorum: usize) -> WitnessPolicy {
    WitnessPolicy {
        witnesses: keys.to_vec(),
        quorum,
    }
}

/// The server submits every new head to its witness and serves the cosignature; a client
/// with quorum 1 takes heads cosigned by its witness only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_heads_are_cosigned_and_clients_need_the_quorum() {
    // The witness must know the log's key first: make the server's secrets file beforehand.
    let dir = tempfile::tempdir().unwrap();
    let secrets_path = dir.path().join("secrets.toml");
    let secrets = clinvault::server::secrets::ServerSecrets::load_or_create(&secrets_path).unwrap();
    let log_public = SigningKey::from_bytes(secrets.ledger_seed())
        .verifying_key()
        .to_bytes();
    let origin = "clinic.test/clinvault";
    let log_vkey = VerifierKey::new(origin, SIG_ED25519, log_public).unwrap();
    let state = dir.path().join("witness-state.json");
    let w = Arc::new(
        Witness::open(
            "witness.test/w1",
            SigningKey::from_bytes(&[5; 32]),
            &state,
            vec![log_vkey.clone()],
        )
        .unwrap(),
    );
    let (addr, _task) = spawn(w.clone(), "127.0.0.1:0").await.unwrap();
    let wkey = w.vkey();
    let ts = common::start_with(Db::Sqlite, |cfg| {
        cfg.server.secrets_file = secrets_path.display().to_string();
        cfg.server.ledger_origin = origin.into();
        cfg.server.witnesses = vec![WitnessEndpoint {
            url: format!("http://{addr}/"),
            vkey: wkey.to_string(),
        }];
    })
    .await;
    assert_eq!(ts.handle.ledger_vkey, log_vkey.to_string());
    let admin = ts.admin().await;
    let state_dir = tempfile::tempdir().unwrap();
    let l = Ledger::sync_with(
        &admin,
        state_dir.path(),
        None,
        3600,
        &policy(std::slice::from_ref(&wkey), 1),
    )
    .await
    .unwrap();
    assert_eq!(l.cosigned_by, vec!["witness.test/w1".to_string()]);
    let first = l.head().tree_size;

    // Growth: the next head is cosigned after a consistency proof from the last one.
    ts.patient("p1@clinic.test", "Pia One").await;
    let l = Ledger::sync_with(
        &admin,
        state_dir.path(),
        None,
        3600,
        &policy(std::slice::from_ref(&wkey), 1),
    )
    .await
    .unwrap();
    assert!(l.head().tree_size > first);
    assert_eq!(l.cosigned_by.len(), 1);
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["logs"][origin]["size"], l.head().tree_size);

    // The head as standard tooling reads it: a checkpoint note signed by the log's vkey.
    let head: clinvault::api::LedgerHead = reqwest::Client::new()
        .get(format!("{}/v1/ledger/head", ts.url))
        .bearer_auth(admin.token().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let note = Note::parse(&head.checkpoint).unwrap();
    note.verify_ed25519(&log_vkey).unwrap();
    assert!(note.text.starts_with("clinic.test/clinvault\n"));
    assert_eq!(note.signatures.len(), 2, "{}", head.checkpoint);

    // A witness this client does not know counts for nothing.
    let stranger = VerifierKey::new(
        "witness.test/other",
        SIG_COSIGNATURE_V1,
        SigningKey::from_bytes(&[6; 32]).verifying_key().to_bytes(),
    )
    .unwrap();
    let e = Ledger::sync_with(
        &admin,
        state_dir.path(),
        None,
        3600,
        &policy(&[stranger], 1),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("carries 0 valid witness cosignatures, fewer than the 1 required"),
        "{e}"
    );
}

/// A server without witnesses: a client that needs one cosignature refuses its heads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_refuses_heads_without_cosignatures() {
    let ts = common::start_server(Db::Sqlite).await;
    let admin = ts.admin().await;
    let state_dir = tempfile::tempdir().unwrap();
    let wkey = VerifierKey::new(
        "witness.test/w1",
        SIG_COSIGNATURE_V1,
        SigningKey::from_bytes(&[5; 32]).verifying_key().to_bytes(),
    )
    .unwrap();
    let e = Ledger::sync_with(
        &admin,
        state_dir.path(),
        None,
        3600,
        &policy(std::slice::from_ref(&wkey), 1),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("carries 0 valid witness cosignatures"),
        "{e}"
    );
    // Quorum 0 with the witness configured: taken, and nobody cosigned.
    let l = Ledger::sync_with(&admin, state_dir.path(), None, 3600, &policy(&[wkey], 0))
        .await
        .unwrap();
    assert!(l.cosigned_by.is_empty());
}
