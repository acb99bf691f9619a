//! Report bundles with no server (issue 16): the committed test vector, every single-byte flip
//! of a small bundle refused naming the failing check, the wrong ledger key and witnesses, the
//! decoder's limits, and arbitrary bytes through the decoder without a panic.
//!
//! The vector (tests/vectors/bundle-v1.cvb and bundle-v1.json) is built by `make_vector` from
//! fixed keys; `CLINVAULT_WRITE_VECTORS=1 cargo test --test bundle_offline` rewrites it (only
//! when the format changes: the metadata's nonce is random, so each build differs).

use std::path::PathBuf;

use clinvault::bundle::{
    Bundle, BundleError, Check, FormatError, MAGIC, ProvenEntry, StationEvidence, Trust, VERSION,
    verify, verify_bytes,
};
use clinvault::ledger::{Entry, LedgerKey, MerkleTree, Role, SignedHead};
use clinvault::seal::{Dek, Manifest, ReportKeys, ReportMeta, ReportSealer, seal_meta};
use clinvault::witness::note::{Checkpoint, SIG_COSIGNATURE_V1, VerifierKey, cosign};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use serde_json::{Value, json};

const TIME: i64 = 1_796_000_000_000; // 2026-11-30
const REPORT: [u8; 16] = [0xb2; 16];
const PATIENT: [u8; 16] = [0xc3; 16];
const AUTHOR: [u8; 16] = [0xa1; 16];
const WITNESS: &str = "witness.example";
const ORIGIN: &str = "clinvault/vector";
const PLAINTEXT: &[u8] = b"Echocardiogram: normal LV function, EF 60 %. Review in 12 months.";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn ledger_signer() -> SigningKey {
    SigningKey::from_bytes(&[0x11; 32])
}

fn witness_signer() -> SigningKey {
    SigningKey::from_bytes(&[0x55; 32])
}

fn witness_key() -> VerifierKey {
    VerifierKey::new(
        WITNESS,
        SIG_COSIGNATURE_V1,
        witness_signer().verifying_key().to_bytes(),
    )
    .unwrap()
}

fn trust() -> Trust {
    Trust {
        ledger_key: LedgerKey::from_signing_key(&ledger_signer()),
        witnesses: vec![witness_key()],
        quorum: 1,
    }
}

/// A six-entry ledger (two registrations, a filler, the commit, its two wraps), a report of
/// five chunks of up to 16 bytes, a signed head and its checkpoint cosigned by one witness.
fn make_vector() -> Vec<u8> {
    make_bundle(None).to_bytes()
}

const DOCTOR: [u8; 16] = [0xd0; 16];
const PATIENT2: [u8; 16] = [0xc4; 16];
/// Where the station ledger holds the orders: the one the report was made under, another
/// patient's, an expired one, and one appended after the commit.
const ORDER_OK: u64 = 3;
const ORDER_OTHER_PATIENT: u64 = 4;
const ORDER_EXPIRED: u64 = 5;
const ORDER_LATER: u64 = 9;

/// The station vector: AUTHOR is a station (role 6), uploading for PATIENT under DOCTOR's
/// order at `ORDER_OK`; ten entries (see the `ORDER_*` indexes, commit at 6).
fn make_station_vector() -> Vec<u8> {
    make_bundle(Some((ORDER_OK, 2))).to_bytes()
}

fn order(at: i64, patient: [u8; 16], expires_ms: i64, id: u8) -> Entry {
    Entry::StationOrder {
        time_ms: at,
        order_id: [id; 16],
        station_id: AUTHOR,
        patient_id: patient,
        doctor_id: DOCTOR,
        expires_ms,
    }
}

/// `station`: `None` for a doctor's report (the committed v1 vector), else the indexes of the
/// order entry and of the "doctor's" key entry the bundle carries.
fn make_bundle(station: Option<(u64, u64)>) -> Bundle {
    let author = SigningKey::from_bytes(&[0x22; 32]);
    let author_x = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([0x23; 32]));
    let dek = Dek::from_bytes([0x44; 32]);
    let keys = ReportKeys::derive(&dek, &REPORT);
    let sealer = ReportSealer::new(&dek, REPORT, 16, PLAINTEXT).unwrap();
    let mut chunks = Vec::new();
    let mut sealer = sealer;
    while let Some(c) = sealer.next_chunk().unwrap() {
        chunks.push(c.ciphertext);
    }
    let s = sealer.finish().unwrap();
    let meta = seal_meta(
        &keys,
        &REPORT,
        &ReportMeta {
            title: "Echocardiogram (test vector)".into(),
            ..ReportMeta::default()
        },
    )
    .unwrap();
    let manifest = Manifest {
        report_id: REPORT,
        patient_id: PATIENT,
        author_id: AUTHOR,
        created_at_ms: TIME - 60_000,
        plaintext_len: s.plaintext_len,
        chunk_size: s.chunk_size,
        n_chunks: s.n_chunks,
        head: s.head,
        meta_hash: clinvault::seal::meta_hash(&meta),
        key_commit: s.key_commit,
    };
    let signature = manifest.sign(&author);
    let doctor_vector = [
        Entry::UserRegistered {
            time_ms: TIME - 3_000,
            user_id: PATIENT,
            role: Role::Patient,
            x25519_public: [9; 32],
            ed25519_public: SigningKey::from_bytes(&[0x33; 32])
                .verifying_key()
                .to_bytes(),
        },
        Entry::UserRegistered {
            time_ms: TIME - 2_000,
            user_id: AUTHOR,
            role: Role::Doctor,
            x25519_public: author_x.to_bytes(),
            ed25519_public: author.verifying_key().to_bytes(),
        },
        Entry::OtpVerified {
            time_ms: TIME - 1_000,
            request_id: [0xd4; 16],
            user_id: PATIENT,
        },
        Entry::ReportCommitted {
            time_ms: TIME,
            report_id: REPORT,
            manifest_hash: manifest.digest(),
            signature,
        },
        Entry::KeyWrapped {
            time_ms: TIME,
            grant_id: [0; 16],
            report_id: REPORT,
            reader_id: PATIENT,
            wrapper_id: AUTHOR,
            wrapped_key_hash: [0xe5; 32],
        },
        Entry::KeyWrapped {
            time_ms: TIME,
            grant_id: [0; 16],
            report_id: REPORT,
            reader_id: AUTHOR,
            wrapper_id: AUTHOR,
            wrapped_key_hash: [0xe6; 32],
        },
    ];
    let author_entry = Entry::UserRegistered {
        time_ms: TIME - 2_000,
        user_id: AUTHOR,
        role: Role::Station,
        x25519_public: author_x.to_bytes(),
        ed25519_public: author.verifying_key().to_bytes(),
    };
    let day = 86_400_000;
    let station_vector = [
        doctor_vector[0].clone(),
        author_entry,
        Entry::UserRegistered {
            time_ms: TIME - 1_900,
            user_id: DOCTOR,
            role: Role::Doctor,
            x25519_public: [0xd1; 32],
            ed25519_public: SigningKey::from_bytes(&[0xd2; 32])
                .verifying_key()
                .to_bytes(),
        },
        order(TIME - 1_500, PATIENT, TIME + day, 0x0d),
        order(TIME - 1_400, PATIENT2, TIME + day, 0x0e),
        order(TIME - 1_300, PATIENT, TIME - 500, 0x0f),
        doctor_vector[3].clone(),
        doctor_vector[4].clone(),
        Entry::KeyWrapped {
            time_ms: TIME,
            grant_id: [0; 16],
            report_id: REPORT,
            reader_id: DOCTOR,
            wrapper_id: AUTHOR,
            wrapped_key_hash: [0xe7; 32],
        },
        order(TIME + 1_000, PATIENT, TIME + day, 0x10),
    ];
    let entries: &[Entry] = if station.is_some() {
        &station_vector
    } else {
        &doctor_vector
    };
    let mut tree = MerkleTree::new();
    for e in entries {
        tree.push_entry(&e.to_bytes());
    }
    let size = tree.size();
    let head = SignedHead::sign(size, tree.root(), TIME + 1_000, &ledger_signer());
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: tree.root(),
    };
    let mut note = cp.sign(&ledger_signer());
    note.signatures.push(cosign(
        &note.text,
        (TIME / 1000 + 2) as u64,
        WITNESS,
        &witness_signer(),
    ));
    let proven = |i: u64| ProvenEntry {
        index: i,
        entry: entries[i as usize].to_bytes(),
        proof: tree.inclusion_proof(i, size).unwrap(),
    };
    Bundle {
        manifest: manifest.to_bytes().to_vec(),
        signature,
        meta,
        key_entry: proven(1),
        commit_entry: proven(if station.is_some() { 6 } else { 3 }),
        station: station.map(|(order, doctor)| StationEvidence {
            order_entry: proven(order),
            doctor_key_entry: proven(doctor),
        }),
        signed_head: head.to_bytes().to_vec(),
        checkpoint: note.to_text(),
        dek: *dek.as_bytes(),
        chunks,
    }
}

fn committed() -> (Vec<u8>, Value) {
    committed_file("bundle-v1")
}

fn committed_station() -> (Vec<u8>, Value) {
    committed_file("bundle-v1-station")
}

fn committed_file(name: &str) -> (Vec<u8>, Value) {
    let bytes = std::fs::read(dir().join(format!("{name}.cvb"))).expect(name);
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir().join(format!("{name}.json"))).unwrap())
            .unwrap();
    (bytes, json)
}

#[test]
fn generated_station_vector_verifies_and_is_written_on_request() {
    let bytes = make_station_vector();
    let v = verify_bytes(&bytes, &trust()).expect("a fresh station vector verifies");
    assert_eq!(&v.plaintext[..], PLAINTEXT);
    let st = v.station.expect("a station's report");
    assert_eq!(st.order_index, ORDER_OK);
    if std::env::var_os("CLINVAULT_WRITE_VECTORS").is_some() {
        std::fs::write(dir().join("bundle-v1-station.cvb"), &bytes).unwrap();
        let doc = json!({
            "description": "A report bundle, format v1 with the station group (docs/protocol.md §16), of a report submitted by an upload station under a doctor's order, built by make_station_vector in tests/bundle_offline.rs from the same fixed keys as bundle-v1 (the author, seed 22…22, is registered as a station). Verify it with ledger_key and, for a quorum of 1, the witness vkey.",
            "ledger_key": trust().ledger_key.to_string(),
            "witness_vkey": witness_key().to_string(),
            "report_id": hex::encode(REPORT),
            "patient_id": hex::encode(PATIENT),
            "station_id": hex::encode(AUTHOR),
            "doctor_id": hex::encode(DOCTOR),
            "order_id": hex::encode([0x0d; 16]),
            "key_index": 1,
            "doctor_key_index": 2,
            "order_index": ORDER_OK,
            "commit_index": 6,
            "tree_size": 10,
            "plaintext": hex::encode(PLAINTEXT),
        });
        std::fs::write(
            dir().join("bundle-v1-station.json"),
            serde_json::to_string_pretty(&doc).unwrap() + "\n",
        )
        .unwrap();
    }
}

#[test]
fn committed_station_vector_verifies_offline() {
    let (bytes, doc) = committed_station();
    let key = LedgerKey::parse(doc["ledger_key"].as_str().unwrap()).unwrap();
    let witness = VerifierKey::parse(doc["witness_vkey"].as_str().unwrap()).unwrap();
    let v = verify_bytes(
        &bytes,
        &Trust {
            ledger_key: key,
            witnesses: vec![witness],
            quorum: 1,
        },
    )
    .expect("the committed station vector verifies");
    assert_eq!(
        hex::encode(&v.plaintext[..]),
        doc["plaintext"].as_str().unwrap()
    );
    let st = v.station.as_ref().expect("the station group");
    assert_eq!(hex::encode(st.station_id.as_bytes()), doc["station_id"]);
    assert_eq!(hex::encode(st.doctor_id.as_bytes()), doc["doctor_id"]);
    assert_eq!(hex::encode(st.order_id.as_bytes()), doc["order_id"]);
    assert_eq!(st.order_index, doc["order_index"].as_u64().unwrap());
    assert_eq!(
        st.doctor_key_index,
        doc["doctor_key_index"].as_u64().unwrap()
    );
    assert_eq!(v.commit_index, doc["commit_index"].as_u64().unwrap());
    assert_eq!(v.head.tree_size, doc["tree_size"].as_u64().unwrap());
    let b = bundle_of(&bytes);
    assert_eq!(
        b.to_bytes(),
        bytes,
        "decode then encode gives the same bytes"
    );
}

/// The same rule a reader applies online: an order swapped for another genuine, included
/// order (another patient's, an expired one, one appended after the commit), a patient's key
/// entry in place of the doctor's, a missing or an extra station group: each refused, named.
#[test]
fn station_bundle_with_the_wrong_order_is_refused() {
    let t = trust();
    for (order, doctor, check, why) in [
        (
            ORDER_OTHER_PATIENT,
            2,
            Check::StationOrder,
            "not for this station and patient",
        ),
        (
            ORDER_EXPIRED,
            2,
            Check::StationOrder,
            "outside its order's time",
        ),
        (
            ORDER_LATER,
            2,
            Check::StationOrder,
            "outside its order's time",
        ),
        (1, 2, Check::StationOrder, "not a station order"),
        (
            ORDER_OK,
            0,
            Check::DoctorKeyEntry,
            "not a doctor's key registration",
        ),
        (
            ORDER_OK,
            1,
            Check::DoctorKeyEntry,
            "not a doctor's key registration",
        ),
    ] {
        let b = make_bundle(Some((order, doctor)));
        let e = verify(&b, &t).expect_err("a wrong order or doctor");
        assert_eq!(
            e.check(),
            Some(check),
            "order {order}, doctor {doctor}: {e}"
        );
        assert!(e.to_string().contains(why), "{e}");
        // Through the file format too.
        let e = verify_bytes(&b.to_bytes(), &t).unwrap_err();
        assert_eq!(e.check(), Some(check), "{e}");
    }
    // A station's report without its order: refused, not shown as a doctor's.
    let mut b = make_bundle(Some((ORDER_OK, 2)));
    b.station = None;
    let e = verify(&b, &t).unwrap_err();
    assert_eq!(e.check(), Some(Check::KeyEntry), "{e}");
    assert!(e.to_string().contains("carries no order"), "{e}");
    // A doctor's report with a (genuine, included) order group riding along: refused.
    let mut b = bundle_of(&committed().0);
    b.station = bundle_of(&committed_station().0).station.clone();
    let e = verify(&b, &t).unwrap_err();
    assert!(
        e.check() == Some(Check::OrderEntryInclusion) || e.check() == Some(Check::KeyEntry),
        "{e}"
    );
}

/// The station group is all four sections or none, and only right after the commit proof.
#[test]
fn decoder_places_the_station_group_strictly() {
    let (bytes, _) = committed_station();
    let secs = sections(&bytes);
    let header = |i: usize| secs[i].1 - 5;
    let (group_start, group_end) = (header(7), header(11));
    let group = &bytes[group_start..group_end];
    // Missing its last two sections.
    let cut = [&bytes[..header(9)], &bytes[group_end..]].concat();
    assert!(matches!(
        Bundle::from_bytes(&cut),
        Err(FormatError::WrongSection {
            want: clinvault::bundle::Tag::DoctorKeyEntry,
            got: 8
        })
    ));
    // Moved after the signed head.
    let moved = [
        &bytes[..group_start],
        &bytes[group_end..header(12)],
        group,
        &bytes[header(12)..],
    ]
    .concat();
    assert!(matches!(
        Bundle::from_bytes(&moved),
        Err(FormatError::WrongSection { got: 12, .. })
    ));
    // Twice.
    let twice = [&bytes[..group_end], group, &bytes[group_end..]].concat();
    assert!(matches!(
        Bundle::from_bytes(&twice),
        Err(FormatError::WrongSection { got: 12, .. })
    ));
}

#[test]
fn generated_vector_verifies_and_is_written_on_request() {
    let bytes = make_vector();
    let v = verify_bytes(&bytes, &trust()).expect("a fresh vector verifies");
    assert_eq!(&v.plaintext[..], PLAINTEXT);
    assert_eq!(v.cosigned_by, vec![WITNESS.to_string()]);
    assert!(v.unchecked.is_empty());
    if std::env::var_os("CLINVAULT_WRITE_VECTORS").is_some() {
        std::fs::write(dir().join("bundle-v1.cvb"), &bytes).unwrap();
        let doc = json!({
            "description": "A report bundle, format v1 (docs/protocol.md §16), built by make_vector in tests/bundle_offline.rs from fixed keys: ledger seed 11…11, author Ed25519 seed 22…22, witness seed 55…55, DEK 44…44. Verify it with ledger_key and, for a quorum of 1, the witness vkey.",
            "ledger_key": trust().ledger_key.to_string(),
            "witness_vkey": witness_key().to_string(),
            "report_id": hex::encode(REPORT),
            "patient_id": hex::encode(PATIENT),
            "author_id": hex::encode(AUTHOR),
            "commit_index": 3,
            "key_index": 1,
            "tree_size": 6,
            "plaintext": hex::encode(PLAINTEXT),
        });
        std::fs::write(
            dir().join("bundle-v1.json"),
            serde_json::to_string_pretty(&doc).unwrap() + "\n",
        )
        .unwrap();
    }
}

#[test]
fn committed_vector_verifies_offline() {
    let (bytes, doc) = committed();
    let key = LedgerKey::parse(doc["ledger_key"].as_str().unwrap()).unwrap();
    let witness = VerifierKey::parse(doc["witness_vkey"].as_str().unwrap()).unwrap();
    let v = verify_bytes(
        &bytes,
        &Trust {
            ledger_key: key,
            witnesses: vec![witness],
            quorum: 1,
        },
    )
    .expect("the committed vector verifies");
    assert_eq!(
        hex::encode(&v.plaintext[..]),
        doc["plaintext"].as_str().unwrap()
    );
    assert_eq!(hex::encode(v.manifest.report_id), doc["report_id"]);
    assert_eq!(hex::encode(v.manifest.author_id), doc["author_id"]);
    assert_eq!(v.commit_index, doc["commit_index"].as_u64().unwrap());
    assert_eq!(v.key_index, doc["key_index"].as_u64().unwrap());
    assert_eq!(v.head.tree_size, doc["tree_size"].as_u64().unwrap());
    assert_eq!(v.committed_at_ms, TIME);
    assert_eq!(v.meta.title, "Echocardiogram (test vector)");
    // The builder's keys are the vector's.
    assert_eq!(key, trust().ledger_key);
    // Without the witness's key its cosignature is reported, not counted.
    let mut t = trust();
    t.witnesses.clear();
    t.quorum = 0;
    let v = verify_bytes(&bytes, &t).unwrap();
    assert!(v.cosigned_by.is_empty());
    assert_eq!(v.unchecked, vec![WITNESS.to_string()]);
}

/// Where each section's body lies in a bundle: (tag, start, end).
fn sections(bytes: &[u8]) -> Vec<(u8, usize, usize)> {
    let mut out = Vec::new();
    let mut at = MAGIC.len() + 2;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((bytes[at], at + 5, at + 5 + len));
        at += 5 + len;
    }
    out
}

/// The checks a flip inside a section's body may trip first.
fn expected(tag: u8) -> &'static [Check] {
    use Check::*;
    match tag {
        1 => &[Manifest, KeyEntry, CommitEntry],
        2 => &[CommitEntry],
        3 => &[Metadata],
        4 => &[KeyEntryInclusion],
        5 => &[KeyEntryInclusion],
        6 => &[CommitEntryInclusion],
        7 => &[CommitEntryInclusion],
        8 => &[HeadSignature],
        9 => &[Checkpoint, WitnessQuorum],
        10 => &[KeyCommitment],
        11 => &[Chunks],
        12 | 13 => &[OrderEntryInclusion],
        14 | 15 => &[DoctorKeyInclusion],
        _ => &[],
    }
}

#[test]
fn every_single_byte_flip_is_refused_naming_the_check() {
    let (bytes, _) = committed();
    assert_eq!(
        sections(&bytes).len(),
        10 + 5,
        "ten sections and five chunks"
    );
    every_flip_refused(&bytes);
}

#[test]
fn every_single_byte_flip_of_the_station_vector_is_refused_naming_the_check() {
    let (bytes, _) = committed_station();
    let secs = sections(&bytes);
    assert_eq!(secs.len(), 14 + 5, "fourteen sections and five chunks");
    assert_eq!(
        secs[7..11].iter().map(|s| s.0).collect::<Vec<_>>(),
        [12, 13, 14, 15],
        "the station group follows the commit proof"
    );
    every_flip_refused(&bytes);
}

fn every_flip_refused(bytes: &[u8]) {
    let bytes = bytes.to_vec();
    let t = trust();
    verify_bytes(&bytes, &t).expect("the vector itself verifies");
    let secs = sections(&bytes);
    let mut refused = 0;
    for pos in 0..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[pos] ^= mask;
            let err = match verify_bytes(&b, &t) {
                Ok(_) => panic!("flipping bit mask {mask:#04x} of byte {pos} was accepted"),
                Err(e) => e,
            };
            let msg = err.to_string();
            assert!(
                msg.starts_with("bundle format: ") || msg.starts_with("check failed: "),
                "{msg}"
            );
            if let Some(&(tag, _, _)) = secs.iter().find(|(_, s, e)| (*s..*e).contains(&pos)) {
                let check = err.check();
                // A flip in the checkpoint's text can also make it invalid UTF-8.
                let text = tag == 9 && err == BundleError::Format(FormatError::CheckpointText);
                assert!(
                    text || check.is_some_and(|c| expected(tag).contains(&c)),
                    "byte {pos} in section {tag}: {msg}"
                );
            } else {
                // Magic, version and section headers: framing.
                assert!(
                    matches!(err, BundleError::Format(_)) || err.check().is_some(),
                    "byte {pos}: {msg}"
                );
            }
            refused += 1;
        }
    }
    assert_eq!(refused, 2 * bytes.len());
}

#[test]
fn wrong_ledger_key_or_missing_witness_is_refused() {
    let (bytes, _) = committed();
    let mut t = trust();
    t.ledger_key = LedgerKey::from_signing_key(&SigningKey::from_bytes(&[0x12; 32]));
    let e = verify_bytes(&bytes, &t).unwrap_err();
    assert_eq!(e.check(), Some(Check::HeadSignature), "{e}");
    assert!(
        e.to_string().contains("not signed by the ledger key"),
        "{e}"
    );

    // A quorum the bundle's cosignatures do not meet: another witness's key.
    let mut t = trust();
    t.witnesses = vec![
        VerifierKey::new(
            "other.witness",
            SIG_COSIGNATURE_V1,
            SigningKey::from_bytes(&[0x56; 32])
                .verifying_key()
                .to_bytes(),
        )
        .unwrap(),
    ];
    let e = verify_bytes(&bytes, &t).unwrap_err();
    assert_eq!(e.check(), Some(Check::WitnessQuorum), "{e}");
}

fn bundle_of(bytes: &[u8]) -> Bundle {
    Bundle::from_bytes(bytes).unwrap()
}

#[test]
fn decoder_refuses_versions_trailing_bytes_and_oversized_sections() {
    let (bytes, _) = committed();
    let b = bundle_of(&bytes);
    assert_eq!(
        b.to_bytes(),
        bytes,
        "decode then encode gives the same bytes"
    );

    let mut v2 = bytes.clone();
    v2[MAGIC.len() + 1] = 2;
    assert_eq!(
        Bundle::from_bytes(&v2).unwrap_err(),
        FormatError::Version(2)
    );
    assert!(
        FormatError::Version(2).to_string().contains("version 2"),
        "the message names the version"
    );
    assert_eq!(VERSION, 1);

    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"\x00\x00");
    assert_eq!(
        Bundle::from_bytes(&trailing).unwrap_err(),
        FormatError::Trailing(2)
    );
    // A section after the chunks that is not a chunk, even well framed.
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[12, 0, 0, 0, 0]);
    assert_eq!(
        Bundle::from_bytes(&extra).unwrap_err(),
        FormatError::Trailing(5)
    );
    assert_eq!(
        Bundle::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err(),
        FormatError::Truncated("chunk")
    );
    assert_eq!(
        Bundle::from_bytes(b"not a bundle").unwrap_err(),
        FormatError::Magic
    );

    // The checkpoint section's length set beyond its limit.
    let secs = sections(&bytes);
    let (_, start, _) = secs.iter().find(|s| s.0 == 9).copied().unwrap();
    let mut big = bytes.clone();
    big[start - 4..start].copy_from_slice(&(1u32 << 20).to_be_bytes());
    match Bundle::from_bytes(&big).unwrap_err() {
        FormatError::SectionLength { what, len, .. } => {
            assert_eq!((what, len), ("checkpoint", 1 << 20));
        }
        e => panic!("{e}"),
    }
    // A section repeated (the manifest twice): the second stands where the signature belongs.
    let (_, m_start, m_end) = secs[0];
    let mut twice = bytes[..m_end].to_vec();
    twice.extend_from_slice(&bytes[m_start - 5..]);
    assert_eq!(
        Bundle::from_bytes(&twice).unwrap_err(),
        FormatError::WrongSection {
            want: clinvault::bundle::Tag::Signature,
            got: 1
        }
    );
    // No chunk at all.
    let (_, _, dek_end) = secs.iter().find(|s| s.0 == 10).copied().unwrap();
    assert_eq!(
        Bundle::from_bytes(&bytes[..dek_end]).unwrap_err(),
        FormatError::NoChunk
    );
    // A chunk count other than the manifest's.
    let mut short = bundle_of(&bytes);
    short.chunks.pop();
    let e = verify_bytes(&short.to_bytes(), &trust()).unwrap_err();
    assert_eq!(e.check(), Some(Check::Chunks), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let t = trust();
        let _ = verify_bytes(&data, &t);
        let framed = [&MAGIC[..], &VERSION.to_be_bytes(), &data].concat();
        if let Ok(b) = Bundle::from_bytes(&framed) {
            prop_assert_eq!(b.to_bytes(), framed.clone());
        }
        let _ = verify_bytes(&framed, &t);
    }

    #[test]
    fn mutated_vector_never_panics(edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
                                   cut in any::<u16>()) {
        let (mut bytes, _) = committed();
        for (at, v) in edits {
            let n = bytes.len();
            bytes[usize::from(at) % n] = v;
        }
        let n = bytes.len();
        bytes.truncate(n - usize::from(cut) % 64);
        let _ = verify_bytes(&bytes, &trust());
    }
}
