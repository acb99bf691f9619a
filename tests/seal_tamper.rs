//! Attacks on sealed reports: each must be caught with a typed error naming the chunk at fault.

use clinvault::seal::{
    ChunkCheck, ChunkCipher, Dek, KdfParams, MANIFEST_LEN, Manifest, ReportKeys, ReportOpener,
    ReportSealer, SealError, SealedChunk, UserSecrets, derive_master_key, open_bundle, unwrap_dek,
    verify_chain, verify_manifest, wrap_dek,
};

const REPORT: [u8; 16] = [0xab; 16];
const OTHER_REPORT: [u8; 16] = [0xcd; 16];
const CS: u32 = 32;

fn data() -> Vec<u8> {
    (0..100u8).collect() // 4 chunks at 32 bytes: 32, 32, 32, 4
}

fn seal(dek: &Dek, report: [u8; 16], data: &[u8]) -> (Vec<SealedChunk>, Manifest) {
    let mut sealer = ReportSealer::new(dek, report, CS, data).unwrap();
    let chunks: Vec<SealedChunk> = sealer.by_ref().map(Result::unwrap).collect();
    let s = sealer.finish().unwrap();
    let manifest = Manifest {
        report_id: report,
        patient_id: [1; 16],
        author_id: [2; 16],
        created_at_ms: 1_700_000_000_000,
        plaintext_len: s.plaintext_len,
        chunk_size: s.chunk_size,
        n_chunks: s.n_chunks,
        head: s.head,
        meta_hash: [3; 32],
        key_commit: s.key_commit,
    };
    (chunks, manifest)
}

/// Opens `cts` in order as a downloader would, returning the first error.
fn open_stream(dek: &Dek, manifest: &Manifest, cts: &[Vec<u8>]) -> Result<Vec<u8>, SealError> {
    let mut opener = ReportOpener::new(dek, manifest)?;
    let mut out = Vec::new();
    for ct in cts {
        out.extend(opener.open_next(ct.clone())?);
    }
    opener.finish()?;
    Ok(out)
}

/// The same through the stored chunk list, each chunk checked on its own.
fn open_listed(
    dek: &Dek,
    manifest: &Manifest,
    chunks: &[SealedChunk],
    cts: &[Vec<u8>],
) -> Result<Vec<u8>, SealError> {
    let ids = chunks.iter().map(|c| c.chunk_id).collect();
    let opener = ReportOpener::new(dek, manifest)?.with_chunk_ids(ids)?;
    let mut out = Vec::new();
    for (i, ct) in cts.iter().enumerate() {
        out.extend(opener.open_chunk(i as u32, ct.clone())?);
    }
    if cts.len() < manifest.n_chunks as usize {
        return Err(SealError::Integrity {
            chunk: cts.len() as u32,
            check: ChunkCheck::Missing,
        });
    }
    Ok(out)
}

fn cts(chunks: &[SealedChunk]) -> Vec<Vec<u8>> {
    chunks.iter().map(|c| c.ciphertext.clone()).collect()
}

fn chunk_of(err: &SealError) -> u32 {
    err.chunk()
        .unwrap_or_else(|| panic!("error names no chunk: {err}"))
}

#[test]
fn untampered_opens() {
    let dek = Dek::generate().unwrap();
    let (chunks, m) = seal(&dek, REPORT, &data());
    assert_eq!(chunks.len(), 4);
    assert_eq!(open_stream(&dek, &m, &cts(&chunks)).unwrap(), data());
    assert_eq!(
        open_listed(&dek, &m, &chunks, &cts(&chunks)).unwrap(),
        data()
    );
}

#[test]
fn every_flipped_bit_of_every_chunk_is_caught_at_that_chunk() {
    let dek = Dek::generate().unwrap();
    let (chunks, m) = seal(&dek, REPORT, &data());
    let ids: Vec<[u8; 32]> = chunks.iter().map(|c| c.chunk_id).collect();
    for i in 0..chunks.len() {
        for byte in 0..chunks[i].ciphertext.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = cts(&chunks);
                bad[i][byte] ^= bit;
                let e = open_stream(&dek, &m, &bad).unwrap_err();
                assert_eq!(chunk_of(&e), i as u32, "stream, chunk {i} byte {byte}: {e}");
                let e = open_listed(&dek, &m, &chunks, &bad).unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!("chunk {i}: {}", ChunkCheck::ChunkId),
                    "listed, chunk {i} byte {byte}"
                );
                // The auditor, without keys, names the same chunk.
                let e = verify_chain(&REPORT, &m.head, &ids, bad.iter().map(|c| c.as_slice()))
                    .unwrap_err();
                assert_eq!(chunk_of(&e), i as u32);
            }
        }
    }
}

#[test]
fn swapped_chunks_are_caught_at_the_first_misplaced_one() {
    let dek = Dek::generate().unwrap();
    let (chunks, m) = seal(&dek, REPORT, &data());
    let mut bad = cts(&chunks);
    bad.swap(1, 2);
    let e = open_stream(&dek, &m, &bad).unwrap_err();
    assert!(
        matches!(
            e,
            SealError::Integrity {
                chunk: 1,
                check: ChunkCheck::Authentication
            }
        ),
        "{e}"
    );
    let e = open_listed(&dek, &m, &chunks, &bad).unwrap_err();
    assert!(
        matches!(
            e,
            SealError::Integrity {
                chunk: 1,
                check: ChunkCheck::ChunkId
            }
        ),
        "{e}"
    );
    // Swapping the ids in the stored list too breaks the chain head.
    let mut chunks2 = chunks.clone();
    chunks2.swap(1, 2);
    let e = open_listed(&dek, &m, &chunks2, &bad).unwrap_err();
    assert!(matches!(e, SealError::ChainHead), "{e}");
}

#[test]
fn reordered_chunks_are_caught() {
    let dek = Dek::generate().unwrap();
    let (chunks, m) = seal(&dek, REPORT, &data());
    let mut bad = cts(&chunks);
    bad.rotate_left(1);
    let e = open_stream(&dek, &m, &bad).unwrap_err();
    assert_eq!(chunk_of(&e), 0, "{e}");
}

#[test]
fn dropping_the_last_chunk_is_truncation() {
    let dek = Dek::generate().unwrap();
    let (chunks, m) = seal(&dek, REPORT, &data());
    let mut bad = cts(&chunks);
    bad.pop();
    let e = open_stream(&dek, &m, &bad).unwrap_err();
    assert!(
        matches!(
            e,
            SealError::Integrity {
                chunk: 3,
                check: ChunkCheck::Missing
            }
        ),
        "{e}"
    );
    // A full chunk presented as the last one fails the last-chunk flag (STREAM).
    let cipher = ChunkCipher::new(&ReportKeys::derive(&dek, &REPORT), &REPORT);
    assert!(cipher.open(2, &chunks[2].ciphertext, true).is_err());
    assert!(cipher.open(3, &chunks[3].ciphertext, false).is_err());
    // The keyless check sees it too.
    let ids: Vec<[u8; 32]> = chunks.iter().map(|c| c.chunk_id).collect();
    let e = verify_chain(&REPORT, &m.head, &ids, bad.iter().map(|c| c.as_slice())).unwrap_err();
    assert!(
        matches!(
            e,
            SealError::Integrity {
                chunk: 3,
                check: ChunkCheck::Missing
            }
        ),
        "{e}"
    );
}

#[test]
fn an_appended_chunk_is_caught() {
    let dek = Dek::generate().unwrap();
    let (chunks, m) = seal(&dek, REPORT, &data());
    let mut bad = cts(&chunks);
    bad.push(chunks[0].ciphertext.clone());
    let e = open_stream(&dek, &m, &bad).unwrap_err();
    assert!(
        matches!(
            e,
            SealError::Integrity {
                chunk: 4,
                check: ChunkCheck::Unexpected
            }
        ),
        "{e}"
    );
    // Sealing one more chunk under the same key and presenting the old last one as non-last fails.
    let cipher = ChunkCipher::new(&ReportKeys::derive(&dek, &REPORT), &REPORT);
    let extra = cipher.seal(4, b"appended", true);
    let mut longer = cts(&chunks);
    longer.push(extra.ciphertext);
    let e = open_stream(&dek, &m, &longer).unwrap_err();
    assert_eq!(chunk_of(&e), 4);
}

#[test]
fn a_chunk_from_another_report_is_caught() {
    let dek = Dek::generate().unwrap();
    let (chunks, m) = seal(&dek, REPORT, &data());
    // Same DEK, same position, another report: the AAD and derived key differ.
    let (other, _) = seal(&dek, OTHER_REPORT, &data());
    let mut bad = cts(&chunks);
    bad[2] = other[2].ciphertext.clone();
    let e = open_stream(&dek, &m, &bad).unwrap_err();
    assert!(
        matches!(
            e,
            SealError::Integrity {
                chunk: 2,
                check: ChunkCheck::Authentication
            }
        ),
        "{e}"
    );
}

#[test]
fn a_wrong_dek_is_refused_before_anything_opens() {
    let dek = Dek::generate().unwrap();
    let (chunks, m) = seal(&dek, REPORT, &data());
    let wrong = Dek::generate().unwrap();
    let e = open_stream(&wrong, &m, &cts(&chunks)).unwrap_err();
    assert!(matches!(e, SealError::KeyCommitment), "{e}");
}

#[test]
fn a_dek_that_does_not_match_the_key_commitment_is_refused() {
    // An uploader wraps DEK b to the reader but commits to DEK a in the manifest.
    let reader = UserSecrets::generate().unwrap();
    let reader_id = [9; 16];
    let a = Dek::generate().unwrap();
    let b = Dek::generate().unwrap();
    let (_, m) = seal(&a, REPORT, &data());
    let wrapped = wrap_dek(&b, &REPORT, &reader_id, &reader.public().x25519).unwrap();
    let got = unwrap_dek(&wrapped, &REPORT, &reader_id, &reader).unwrap();
    assert!(matches!(
        ReportOpener::new(&got, &m),
        Err(SealError::KeyCommitment)
    ));
}

#[test]
fn every_changed_manifest_byte_fails_verification() {
    let author = UserSecrets::generate().unwrap();
    let dek = Dek::generate().unwrap();
    let (_, m) = seal(&dek, REPORT, &data());
    let sig = m.sign(author.signing_key());
    let bytes = m.to_bytes();
    assert_eq!(bytes.len(), MANIFEST_LEN);
    for i in 0..bytes.len() {
        let mut bad = bytes;
        bad[i] ^= 0x01;
        assert!(
            verify_manifest(&bad, &sig, &author.public().ed25519).is_err(),
            "byte {i}"
        );
    }
    // A flipped signature byte, another author's key, and a truncated or extended manifest.
    for i in 0..64 {
        let mut bad = sig;
        bad[i] ^= 0x40;
        assert!(matches!(
            verify_manifest(&bytes, &bad, &author.public().ed25519),
            Err(SealError::ManifestSignature)
        ));
    }
    let other = UserSecrets::generate().unwrap();
    assert!(matches!(
        verify_manifest(&bytes, &sig, &other.public().ed25519),
        Err(SealError::ManifestSignature)
    ));
    assert!(verify_manifest(&bytes[..MANIFEST_LEN - 1], &sig, &author.public().ed25519).is_err());
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(verify_manifest(&longer, &sig, &author.public().ed25519).is_err());
}

#[test]
fn a_manifest_whose_count_disagrees_with_its_length_is_refused() {
    let dek = Dek::generate().unwrap();
    let (_, mut m) = seal(&dek, REPORT, &data());
    m.n_chunks = 3;
    assert!(Manifest::from_bytes(&m.to_bytes()).is_err());
    m.n_chunks = 4;
    m.chunk_size = 8;
    assert!(Manifest::from_bytes(&m.to_bytes()).is_err());
}

#[test]
fn a_dek_wrapped_for_someone_else_does_not_unwrap() {
    let alice = UserSecrets::generate().unwrap();
    let mallory = UserSecrets::generate().unwrap();
    let (alice_id, mallory_id) = ([0xa1; 16], [0x66; 16]);
    let dek = Dek::generate().unwrap();
    let wrapped = wrap_dek(&dek, &REPORT, &alice_id, &alice.public().x25519).unwrap();
    assert_eq!(
        unwrap_dek(&wrapped, &REPORT, &alice_id, &alice)
            .unwrap()
            .as_bytes(),
        dek.as_bytes()
    );
    // Another user's key, even claiming Alice's id.
    assert!(matches!(
        unwrap_dek(&wrapped, &REPORT, &alice_id, &mallory),
        Err(SealError::Unwrap)
    ));
    assert!(matches!(
        unwrap_dek(&wrapped, &REPORT, &mallory_id, &mallory),
        Err(SealError::Unwrap)
    ));
    // Alice's key, but the wrap presented for another report or another reader id.
    assert!(matches!(
        unwrap_dek(&wrapped, &OTHER_REPORT, &alice_id, &alice),
        Err(SealError::Unwrap)
    ));
    assert!(matches!(
        unwrap_dek(&wrapped, &REPORT, &mallory_id, &alice),
        Err(SealError::Unwrap)
    ));
    // Any flipped byte.
    for i in 0..wrapped.len() {
        let mut bad = wrapped;
        bad[i] ^= 1;
        assert!(
            unwrap_dek(&bad, &REPORT, &alice_id, &alice).is_err(),
            "byte {i}"
        );
    }
    assert!(unwrap_dek(&wrapped[..79], &REPORT, &alice_id, &alice).is_err());
}

fn test_params() -> KdfParams {
    // Tests may lower the cost (DESIGN.md §3); the shipped default is checked below.
    KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    }
}

#[test]
fn a_wrong_password_does_not_open_the_key_bundle() {
    let salt = [5u8; 16];
    let user_id = [0x11; 16];
    let right = derive_master_key("correct horse battery staple", &salt, &test_params()).unwrap();
    let wrong = derive_master_key("correct horse battery stapler", &salt, &test_params()).unwrap();
    let secrets = UserSecrets::generate().unwrap();
    let public = secrets.public();
    let bundle = secrets.seal_bundle(&right.wrap_key(), &user_id).unwrap();
    let opened = open_bundle(&bundle, &right.wrap_key(), &user_id, &public).unwrap();
    assert_eq!(opened.public(), public);
    assert!(matches!(
        open_bundle(&bundle, &wrong.wrap_key(), &user_id, &public),
        Err(SealError::Bundle)
    ));
    // The bundle is bound to its user id and public keys: a server cannot hand it to another
    // account or pair it with keys of its own.
    assert!(matches!(
        open_bundle(&bundle, &right.wrap_key(), &[0x12; 16], &public),
        Err(SealError::Bundle)
    ));
    let other = UserSecrets::generate().unwrap().public();
    assert!(open_bundle(&bundle, &right.wrap_key(), &user_id, &other).is_err());
    for i in 0..bundle.len() {
        let mut bad = bundle.clone();
        bad[i] ^= 1;
        assert!(
            open_bundle(&bad, &right.wrap_key(), &user_id, &public).is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn auth_and_wrap_keys_differ_and_follow_nfkc() {
    let salt = [6u8; 16];
    let a = derive_master_key("ｆｕｌｌｗｉｄｔｈ passphrase here", &salt, &test_params()).unwrap();
    let b = derive_master_key("fullwidth passphrase here", &salt, &test_params()).unwrap();
    assert_eq!(a.auth_key().0, b.auth_key().0, "NFKC before the KDF");
    assert_ne!(a.auth_key().0, a.wrap_key().0);
    let c = derive_master_key("fullwidth passphrase here", &[7u8; 16], &test_params()).unwrap();
    assert_ne!(b.auth_key().0, c.auth_key().0, "salt matters");
}

#[test]
fn kdf_parameters_below_the_floor_are_refused() {
    let floor = KdfParams::default();
    assert_eq!(
        floor,
        KdfParams {
            m_kib: 65536,
            t: 3,
            p: 1
        }
    );
    assert!(floor.check_floor(&floor).is_ok());
    assert!(
        KdfParams {
            m_kib: 65535,
            ..floor
        }
        .check_floor(&floor)
        .is_err()
    );
    assert!(KdfParams { t: 2, ..floor }.check_floor(&floor).is_err());
    assert!(
        KdfParams {
            m_kib: 1 << 30,
            ..floor
        }
        .check_floor(&floor)
        .is_err()
    );
}

#[test]
fn an_inconsistent_manifest_struct_is_refused_by_the_opener() {
    let dek = Dek::generate().unwrap();
    let (_, mut m) = seal(&dek, REPORT, &data());
    m.n_chunks = 9; // more chunks than the length allows: would read past the plaintext
    assert!(ReportOpener::new(&dek, &m).is_err());
    m.n_chunks = 4;
    m.plaintext_len = 10;
    assert!(ReportOpener::new(&dek, &m).is_err());
}
