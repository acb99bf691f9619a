//! Attacks on signed heads and on the log's history: each must be refused.

use clinvault::ledger::{
    Hash, LedgerError, LedgerKey, MerkleTree, SIGNED_HEAD_LEN, SignedHead, leaf_hash,
    verify_consistency, verify_inclusion,
};
use ed25519_dalek::SigningKey;

const HOUR_MS: u64 = 3_600_000;
const NOW_MS: i64 = 1_795_000_000_000;

fn ledger_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn public() -> [u8; 32] {
    LedgerKey::from_signing_key(&ledger_key()).0
}

fn tree(entries: &[&str]) -> MerkleTree {
    let mut t = MerkleTree::new();
    for e in entries {
        t.push_entry(e.as_bytes());
    }
    t
}

fn head_of(t: &MerkleTree, time_ms: i64) -> SignedHead {
    SignedHead::sign(t.size(), t.root(), time_ms, &ledger_key())
}

#[test]
fn every_changed_byte_of_a_head_is_refused() {
    let t = tree(&["a", "b", "c"]);
    let head = head_of(&t, NOW_MS);
    head.verify_fresh(&public(), NOW_MS, HOUR_MS).unwrap();
    let bytes = head.to_bytes();
    assert_eq!(bytes.len(), SIGNED_HEAD_LEN);
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes;
            b[i] ^= 1 << bit;
            let refused = match SignedHead::from_bytes(&b) {
                Err(_) => true,
                Ok(h) => h.verify(&public()).is_err(),
            };
            assert!(refused, "byte {i} bit {bit}");
        }
    }
    for cut in [0, 1, SIGNED_HEAD_LEN - 1] {
        assert!(SignedHead::from_bytes(&bytes[..cut]).is_err());
    }
    assert!(SignedHead::from_bytes(&[&bytes[..], &[0]].concat()).is_err());
}

#[test]
fn changed_fields_are_refused() {
    let head = head_of(&tree(&["a", "b"]), NOW_MS);
    let mut h = head.clone();
    h.tree_size += 1;
    assert_eq!(h.verify(&public()), Err(LedgerError::HeadSignature));
    let mut h = head.clone();
    h.root[31] ^= 1;
    assert_eq!(h.verify(&public()), Err(LedgerError::HeadSignature));
    let mut h = head.clone();
    h.time_ms += 1;
    assert_eq!(h.verify(&public()), Err(LedgerError::HeadSignature));
}

#[test]
fn wrong_or_weak_key_is_refused() {
    let head = head_of(&tree(&["a"]), NOW_MS);
    let other = LedgerKey::from_signing_key(&SigningKey::from_bytes(&[43; 32]));
    assert_eq!(head.verify(&other.0), Err(LedgerError::HeadSignature));
    // Small-order points: the identity and a point of order 4.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for weak in [identity, [0; 32]] {
        assert!(head.verify(&weak).is_err());
    }
    assert!(head.verify(&[0xff; 32]).is_err(), "not a point");
}

#[test]
fn malleated_signature_is_refused() {
    // S + L, the group order: the same signature to a lax verifier, refused by verify_strict.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut head = head_of(&tree(&["a"]), NOW_MS);
    let mut carry = 0u16;
    for (s, l) in head.signature[32..].iter_mut().zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(head.verify(&public()), Err(LedgerError::HeadSignature));
}

#[test]
fn stale_and_future_heads_are_refused() {
    let head = head_of(&tree(&["a"]), NOW_MS);
    head.verify_fresh(&public(), NOW_MS + HOUR_MS as i64, HOUR_MS)
        .unwrap();
    assert!(matches!(
        head.verify_fresh(&public(), NOW_MS + HOUR_MS as i64 + 1, HOUR_MS),
        Err(LedgerError::HeadStale { .. })
    ));
    assert!(matches!(
        head.verify_fresh(&public(), NOW_MS - HOUR_MS as i64, HOUR_MS),
        Err(LedgerError::HeadFromFuture { .. })
    ));
    // A stale head with a bad signature reports the signature first.
    let mut forged = head.clone();
    forged.tree_size = 9;
    assert_eq!(
        forged.verify_fresh(&public(), NOW_MS * 2, HOUR_MS),
        Err(LedgerError::HeadSignature)
    );
}

#[test]
fn a_forked_log_is_refused() {
    // Same first three entries, then the server shows one client "d" and another "x".
    let honest = tree(&["a", "b", "c", "d", "e"]);
    let forked = tree(&["a", "b", "c", "x", "e"]);
    let pinned = head_of(&honest, NOW_MS);
    let shown = head_of(&forked, NOW_MS);
    pinned.verify(&public()).unwrap();
    shown.verify(&public()).unwrap();

    // Same size, different roots.
    assert_eq!(
        verify_consistency(5, 5, &pinned.root, &shown.root, &[] as &[Hash]),
        Err(LedgerError::RootMismatch)
    );
    // The forked log grows; its proof from size 5 does not start at the pinned root.
    let mut grown = forked.clone();
    grown.push_entry(b"f");
    let proof = grown.consistency_proof(5, 6).unwrap();
    assert!(verify_consistency(5, 6, &pinned.root, &grown.root(), &proof).is_err());
    // Nor does the honest log's proof reach the forked root.
    let mut honest_grown = honest.clone();
    honest_grown.push_entry(b"f");
    let proof = honest_grown.consistency_proof(5, 6).unwrap();
    assert!(verify_consistency(5, 6, &pinned.root, &grown.root(), &proof).is_err());
    verify_consistency(5, 6, &pinned.root, &honest_grown.root(), &proof).unwrap();
    // From the common prefix both are consistent, as they should be.
    for log in [&honest, &forked] {
        let p = log.consistency_proof(3, 5).unwrap();
        verify_consistency(3, 5, &honest.root_at(3).unwrap(), &log.root(), &p).unwrap();
    }
    // An entry of the fork does not prove into the honest head.
    let p = forked.inclusion_proof(3, 5).unwrap();
    assert!(verify_inclusion(3, 5, &leaf_hash(b"x"), &p, &pinned.root).is_err());
}

#[test]
fn a_rollback_is_refused() {
    let t = tree(&["a", "b", "c", "d", "e", "f", "g"]);
    let (r4, r7) = (t.root_at(4).unwrap(), t.root());
    let proof = t.consistency_proof(4, 7).unwrap();
    verify_consistency(4, 7, &r4, &r7, &proof).unwrap();
    assert_eq!(
        verify_consistency(7, 4, &r7, &r4, &proof),
        Err(LedgerError::Rollback { size1: 7, size2: 4 })
    );
    assert_eq!(
        verify_consistency(7, 4, &r7, &r4, &[] as &[Hash]),
        Err(LedgerError::Rollback { size1: 7, size2: 4 })
    );
    // An older head served as if new: equal sizes are refused unless the roots match.
    assert!(verify_consistency(7, 7, &r7, &r4, &[] as &[Hash]).is_err());
    // Proofs from or to an empty tree prove nothing.
    assert_eq!(
        verify_consistency(0, 7, &[0; 32], &r7, &[] as &[Hash]),
        Err(LedgerError::ConsistencyFromEmpty)
    );
    assert_eq!(
        verify_consistency(0, 0, &[0; 32], &[0; 32], &[] as &[Hash]),
        Err(LedgerError::ConsistencyFromEmpty)
    );
}

#[test]
fn hashes_of_the_wrong_length_are_refused() {
    let t = tree(&["a", "b", "c"]);
    let leaf = t.leaf_hash(0).unwrap();
    let proof: Vec<Vec<u8>> = t
        .inclusion_proof(0, 3)
        .unwrap()
        .iter()
        .map(|h| h.to_vec())
        .collect();
    verify_inclusion(0, 3, &leaf, &proof, &t.root()).unwrap();
    for (i, len) in [(0, 31), (1, 33), (0, 0)] {
        let mut bad = proof.clone();
        bad[i].resize(len, 0);
        assert_eq!(
            verify_inclusion(0, 3, &leaf, &bad, &t.root()),
            Err(LedgerError::HashLength {
                what: "proof hash",
                len
            })
        );
    }
    // 64 bytes: two hashes glued into one element.
    let glued = vec![[proof[0].clone(), proof[1].clone()].concat()];
    assert!(verify_inclusion(0, 3, &leaf, &glued, &t.root()).is_err());
    let c = t.consistency_proof(2, 3).unwrap();
    let r2 = t.root_at(2).unwrap();
    assert!(verify_consistency(2, 3, &r2[..16], &t.root(), &c).is_err());
    assert!(verify_consistency(2, 3, &r2, &[&t.root()[..], &[0]].concat(), &c).is_err());
}
