//! Resuming an upload: the state file, and the rule that no (key, nonce) pair ever seals two
//! different plaintexts, even when the input file changes between attempts.

use std::collections::HashMap;

use clinvault::seal::{
    ChunkSealer, Dek, STATE_HEADER_LEN, STATE_RECORD_LEN, SealError, UploadState, WrapKey,
    chunk_nonce,
};
use sha2::{Digest, Sha256};

const CS: u32 = 64;

fn file(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
}

/// Every (key commitment, nonce) → SHA-256 of the plaintext it sealed.
#[derive(Default)]
struct NonceLog(HashMap<([u8; 32], [u8; 12]), [u8; 32]>);

impl NonceLog {
    fn record(&mut self, key: [u8; 32], nonce: [u8; 12], plaintext: &[u8]) {
        let h: [u8; 32] = Sha256::digest(plaintext).into();
        let prev = self.0.insert((key, nonce), h);
        assert!(
            prev.is_none() || prev == Some(h),
            "a (key, nonce) pair sealed two different plaintexts"
        );
    }
}

/// Uploads `data` chunk by chunk as a client does, stopping after `stop_after` chunks
/// (a crash), persisting the sealed state after each pin. Returns the saved state bytes.
fn upload(
    state: &mut UploadState,
    data: &[u8],
    wrap: &WrapKey,
    log: &mut NonceLog,
    stop_after: Option<u32>,
) -> Result<Vec<u8>, SealError> {
    let sealer = ChunkSealer::new(
        state.dek(),
        state.report_id,
        state.chunk_size,
        data.len() as u64,
    )?;
    let mut saved = state.seal(wrap)?;
    for index in 0..sealer.n_chunks() {
        if stop_after == Some(index) {
            break;
        }
        let (off, len) = sealer.chunk_range(index)?;
        let plain = &data[off as usize..off as usize + len];
        state.pin(index, plain)?;
        saved = state.seal(wrap)?; // persisted before the ciphertext leaves
        let last = index + 1 == sealer.n_chunks();
        log.record(sealer.key_commit(), chunk_nonce(index, last), plain);
        sealer.seal(index, plain.to_vec())?;
    }
    Ok(saved)
}

#[test]
fn state_round_trips_and_refuses_tampering_and_other_keys() {
    let wrap = WrapKey([1; 32]);
    let mut s = UploadState::new([2; 16], [3; 16], CS, 1000, Dek::from_bytes([4; 32])).unwrap();
    s.pin(0, &[9; 64]).unwrap();
    s.pin(5, &[8; 64]).unwrap();
    let bytes = s.seal(&wrap).unwrap();
    let back = UploadState::open(&bytes, &wrap).unwrap();
    assert_eq!(back.report_id, [2; 16]);
    assert_eq!(back.patient_id, [3; 16]);
    assert_eq!((back.chunk_size, back.file_len), (CS, 1000));
    assert_eq!(back.dek().as_bytes(), &[4; 32]);
    assert_eq!(back.sealed_count(), 2);
    assert!(
        UploadState::open(&bytes, &WrapKey([2; 32])).is_err(),
        "another account's key"
    );
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 1;
        assert!(UploadState::open(&bad, &wrap).is_err(), "byte {i}");
    }
    for cut in [0, 5, 17, STATE_HEADER_LEN - 1] {
        assert!(UploadState::open(&bytes[..cut], &wrap).is_err());
    }
    // A record cut short is an append that crashed before its sync: its chunk never left,
    // so the state opens without it.
    let torn = UploadState::open(&bytes[..bytes.len() - 1], &wrap).unwrap();
    assert_eq!(torn.sealed_count(), 1);
    assert!(torn.pinned(0).is_some() && torn.pinned(5).is_none());
}

#[test]
fn the_journal_grows_by_one_record_per_pinned_chunk() {
    let wrap = WrapKey([1; 32]);
    let mut s = UploadState::new([2; 16], [3; 16], CS, 1000, Dek::from_bytes([4; 32])).unwrap();
    let mut file = s.seal_header(&wrap).unwrap();
    assert_eq!(file.len(), STATE_HEADER_LEN);
    for i in [3u32, 0, 7] {
        assert!(s.pin_chunk_id(i, [i as u8; 32]).unwrap(), "newly pinned");
        assert!(!s.pin_chunk_id(i, [i as u8; 32]).unwrap(), "pinned already");
        file.extend_from_slice(&s.record(i).unwrap());
    }
    assert_eq!(file.len(), STATE_HEADER_LEN + 3 * STATE_RECORD_LEN);
    let back = UploadState::open(&file, &wrap).unwrap();
    for i in [3u32, 0, 7] {
        assert_eq!(back.pinned(i), Some([i as u8; 32]));
    }
    assert_eq!(back.sealed_count(), 3);
    // A record repeated, or taken from another upload's journal, refuses the state.
    let mut twice = file.clone();
    twice.extend_from_slice(&s.record(3).unwrap());
    assert!(UploadState::open(&twice, &wrap).is_err());
    let mut other = UploadState::new([2; 16], [3; 16], CS, 1000, Dek::from_bytes([4; 32])).unwrap();
    other.pin_chunk_id(9, [1; 32]).unwrap();
    let mut foreign = file.clone();
    foreign.extend_from_slice(&other.record(9).unwrap());
    assert!(UploadState::open(&foreign, &wrap).is_err());
}

#[test]
fn a_changed_chunk_is_refused_naming_it() {
    let mut s = UploadState::new([2; 16], [3; 16], CS, 200, Dek::from_bytes([4; 32])).unwrap();
    s.pin(1, &[7; 64]).unwrap();
    s.pin(1, &[7; 64]).unwrap();
    let err = s.pin(1, &[6; 64]).unwrap_err();
    assert!(matches!(err, SealError::InputChanged { chunk: 1 }), "{err}");
    assert!(s.pin(4, &[0; 8]).is_err(), "past the last chunk");
}

#[test]
fn resume_with_an_unchanged_file_reseals_identically_and_a_changed_one_starts_over() {
    let wrap = WrapKey([9; 32]);
    let mut log = NonceLog::default();
    let original = file(1, 1000);

    // First attempt dies after 6 of 16 chunks.
    let dek = Dek::generate().unwrap();
    let mut state = UploadState::new([5; 16], [6; 16], CS, original.len() as u64, dek).unwrap();
    let saved = upload(&mut state, &original, &wrap, &mut log, Some(6)).unwrap();

    // Resume with the same file: every chunk, old and new, passes and seals as before.
    let mut resumed = UploadState::open(&saved, &wrap).unwrap();
    assert_eq!(resumed.sealed_count(), 6);
    upload(&mut resumed, &original, &wrap, &mut log, None).unwrap();
    assert_eq!(resumed.sealed_count(), 16);

    // Another attempt dies; then the file is edited inside an already-sent chunk.
    let dek = Dek::generate().unwrap();
    let mut state = UploadState::new([7; 16], [6; 16], CS, original.len() as u64, dek).unwrap();
    let saved = upload(&mut state, &original, &wrap, &mut log, Some(4)).unwrap();
    let mut edited = original.clone();
    edited[130] ^= 0xff; // chunk 2
    let mut resumed = UploadState::open(&saved, &wrap).unwrap();
    let err = upload(&mut resumed, &edited, &wrap, &mut log, None).unwrap_err();
    assert!(matches!(err, SealError::InputChanged { chunk: 2 }), "{err}");

    // The client abandons it and starts a new report with a new DEK: no pair is reused.
    let mut fresh = UploadState::new(
        [8; 16],
        [6; 16],
        CS,
        edited.len() as u64,
        Dek::generate().unwrap(),
    )
    .unwrap();
    upload(&mut fresh, &edited, &wrap, &mut log, None).unwrap();
    assert_eq!(log.0.len(), 16 + 4 + 16, "every pair recorded once");
}
