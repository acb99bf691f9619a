//! Sealing → opening round trips at the sizes where chunking goes wrong, and random ones.

use clinvault::seal::{
    ChunkCipher, Dek, Manifest, ReportKeys, ReportOpener, ReportSealer, SealedChunk, UserSecrets,
    expected_chunks, seal_parallel, verify_chain, verify_manifest,
};
use proptest::prelude::*;

const REPORT: [u8; 16] = [7; 16];

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

fn seal_all(dek: &Dek, chunk_size: u32, data: &[u8]) -> (Vec<SealedChunk>, Manifest) {
    let mut sealer = ReportSealer::new(dek, REPORT, chunk_size, data).unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = sealer.next_chunk().unwrap() {
        chunks.push(c);
    }
    let s = sealer.finish().unwrap();
    let manifest = Manifest {
        report_id: REPORT,
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

fn open_all(dek: &Dek, manifest: &Manifest, chunks: &[SealedChunk]) -> Vec<u8> {
    let mut opener = ReportOpener::new(dek, manifest).unwrap();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(opener.open_next(c.ciphertext.clone()).unwrap());
    }
    opener.finish().unwrap();
    out
}

fn round_trip(chunk_size: u32, len: usize) {
    let dek = Dek::generate().unwrap();
    let data = pattern(len, len as u8);
    let (chunks, manifest) = seal_all(&dek, chunk_size, &data);
    assert_eq!(
        chunks.len() as u32,
        expected_chunks(len as u64, chunk_size).unwrap()
    );
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index as usize, i);
        let plain_len = c.ciphertext.len() - 16;
        if i + 1 < chunks.len() {
            assert_eq!(
                plain_len, chunk_size as usize,
                "every chunk but the last is full"
            );
        } else {
            assert!(plain_len <= chunk_size as usize);
            assert!(
                plain_len >= 1 || len == 0,
                "a multiple of chunk_size gives no empty tail"
            );
        }
    }
    assert_eq!(open_all(&dek, &manifest, &chunks), data);

    // The same again through the chunk list and per-chunk opening (the parallel path).
    let ids: Vec<[u8; 32]> = chunks.iter().map(|c| c.chunk_id).collect();
    let opener = ReportOpener::new(&dek, &manifest)
        .unwrap()
        .with_chunk_ids(ids.clone())
        .unwrap();
    let mut out = Vec::new();
    for c in chunks.iter().rev() {
        let mut p = opener.open_chunk(c.index, c.ciphertext.clone()).unwrap();
        p.extend(out);
        out = p;
    }
    assert_eq!(out, data);

    // The auditor's keyless check agrees.
    verify_chain(
        &REPORT,
        &manifest.head,
        &ids,
        chunks.iter().map(|c| c.ciphertext.as_slice()),
    )
    .unwrap();
}

#[test]
fn round_trip_edge_sizes() {
    let cs = 4096u32;
    for len in [
        0,
        1,
        cs as usize - 1,
        cs as usize,
        cs as usize + 1,
        3 * cs as usize,
    ] {
        round_trip(cs, len);
    }
    round_trip(16, 0);
    round_trip(16, 16);
    round_trip(16, 17);
}

#[test]
fn round_trip_several_mib() {
    round_trip(1024 * 1024, 5 * 1024 * 1024 + 12345);
}

#[test]
fn empty_report_is_one_empty_chunk() {
    let dek = Dek::generate().unwrap();
    let (chunks, manifest) = seal_all(&dek, 1024, b"");
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].ciphertext.len(), 16);
    assert_eq!(manifest.n_chunks, 1);
    assert_eq!(manifest.plaintext_len, 0);
}

#[test]
fn parallel_sealing_matches_sequential() {
    let dek = Dek::generate().unwrap();
    let data = pattern(100_000, 9);
    let (seq, manifest) = seal_all(&dek, 4096, &data);
    let mut par = Vec::new();
    let summary = seal_parallel(&dek, REPORT, 4096, &data[..], 7, |c| {
        par.push(c);
        Ok(())
    })
    .unwrap();
    assert_eq!(par, seq);
    assert_eq!(summary.head, manifest.head);
    assert_eq!(summary.n_chunks, manifest.n_chunks);
}

#[test]
fn file_pipeline_matches_sequential_and_opens() {
    let dek = Dek::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Exact multiple, ragged end, one short chunk, and empty.
    for (len, workers) in [(4096 * 8, 3), (100_000, 1), (100_000, 5), (10, 2), (0, 2)] {
        let data = pattern(len, 3);
        let path = dir.path().join(format!("in-{len}-{workers}"));
        std::fs::write(&path, &data).unwrap();
        let (seq, manifest) = seal_all(&dek, 4096, &data);
        let mut out = Vec::new();
        let summary = clinvault::seal::seal_file(
            &dek,
            REPORT,
            4096,
            &std::fs::File::open(&path).unwrap(),
            workers,
            &mut out,
        )
        .unwrap();
        let joined: Vec<u8> = seq.iter().flat_map(|c| c.ciphertext.clone()).collect();
        assert!(out == joined, "{len} bytes, {workers} workers");
        assert_eq!(summary.head, manifest.head);
        assert_eq!(
            (summary.n_chunks, summary.plaintext_len),
            (manifest.n_chunks, manifest.plaintext_len)
        );
    }
}

#[test]
fn chunk_sizes_outside_the_format_are_refused() {
    let dek = Dek::generate().unwrap();
    for cs in [0u32, 15, 16 * 1024 * 1024 + 1] {
        assert!(ReportSealer::new(&dek, REPORT, cs, &b""[..]).is_err());
        assert!(expected_chunks(10, cs).is_err());
    }
}

#[test]
fn signed_manifest_round_trip() {
    let author = UserSecrets::generate().unwrap();
    let dek = Dek::generate().unwrap();
    let (_, manifest) = seal_all(&dek, 64, &pattern(1000, 1));
    let sig = manifest.sign(author.signing_key());
    let parsed = verify_manifest(&manifest.to_bytes(), &sig, &author.public().ed25519).unwrap();
    assert_eq!(parsed, manifest);
}

#[test]
fn a_reader_that_fails_midway_is_an_error_not_a_short_report() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk gone"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }
    let dek = Dek::generate().unwrap();
    let sealer = ReportSealer::new(&dek, REPORT, 64, Failing(200)).unwrap();
    let results: Vec<_> = sealer.collect();
    assert_eq!(
        results.len(),
        4,
        "three full chunks, then the error, then nothing"
    );
    assert!(results[..3].iter().all(Result::is_ok));
    assert!(results[3].is_err());
}

#[test]
fn key_derivation_separates_reports() {
    let dek = Dek::generate().unwrap();
    let a = ReportKeys::derive(&dek, &[1; 16]);
    let b = ReportKeys::derive(&dek, &[2; 16]);
    assert_ne!(a.key_commit(), b.key_commit());
    let ca = ChunkCipher::new(&a, &[1; 16]).seal(0, b"same", true);
    let cb = ChunkCipher::new(&b, &[2; 16]).seal(0, b"same", true);
    assert_ne!(ca.ciphertext, cb.ciphertext);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    #[test]
    fn random_sizes_round_trip(len in 0usize..20_000, cs in 16u32..5000) {
        round_trip(cs, len);
    }
}

#[test]
fn finish_after_a_failed_read_is_an_error() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("unplugged"))
        }
    }
    let dek = Dek::generate().unwrap();
    let mut sealer = ReportSealer::new(&dek, REPORT, 64, Broken).unwrap();
    assert!(sealer.next_chunk().is_err());
    assert!(sealer.next_chunk().unwrap().is_none());
    assert!(sealer.finish().is_err());
}

#[test]
fn chunk_sealer_in_any_order_matches_the_stream() {
    use clinvault::seal::ChunkSealer;
    let dek = Dek::generate().unwrap();
    let data = pattern(10_000, 4);
    let (stream, manifest) = seal_all(&dek, 4096, &data);
    let sealer = ChunkSealer::new(&dek, REPORT, 4096, data.len() as u64).unwrap();
    assert_eq!(sealer.n_chunks(), 3);
    let mut by_index: Vec<Option<SealedChunk>> = vec![None; 3];
    for index in [2u32, 0, 1] {
        let (off, len) = sealer.chunk_range(index).unwrap();
        let plain = data[off as usize..off as usize + len].to_vec();
        by_index[index as usize] = Some(sealer.seal(index, plain).unwrap());
    }
    let chunks: Vec<SealedChunk> = by_index.into_iter().map(Option::unwrap).collect();
    assert_eq!(chunks, stream);
    let ids: Vec<[u8; 32]> = chunks.iter().map(|c| c.chunk_id).collect();
    let s = sealer.summary(&ids).unwrap();
    assert_eq!(
        (s.head, s.n_chunks, s.key_commit),
        (manifest.head, manifest.n_chunks, manifest.key_commit)
    );
    // A chunk whose length no longer matches the planned file, or past the end, is refused.
    assert!(sealer.seal(0, vec![0; 10]).is_err());
    assert!(sealer.seal(3, vec![]).is_err());
    assert!(sealer.summary(&ids[..2]).is_err());
}
