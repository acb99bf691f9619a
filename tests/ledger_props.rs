//! Property tests: every proof the generator makes verifies, and any single change to it is
//! refused; entries round-trip through their bytes.

use clinvault::ledger::{
    AccessWhat, Entry, GrantHow, Hash, LedgerError, MerkleTree, Role, consistency_proof,
    inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

const MAX_LEAVES: u64 = 200;

fn tree(size: u64, salt: u64) -> MerkleTree {
    MerkleTree::from_leaf_hashes(
        (0..size).map(|i| leaf_hash(&[salt, i].map(u64::to_be_bytes).concat())),
    )
}

/// The ways to spoil a proof: flip one bit, drop one hash, insert one hash.
#[derive(Debug, Clone)]
enum Spoil {
    Flip { at: usize, bit: usize },
    Drop { at: usize },
    Insert { at: usize, hash: Hash },
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        (any::<usize>(), 0..256usize).prop_map(|(at, bit)| Spoil::Flip { at, bit }),
        any::<usize>().prop_map(|at| Spoil::Drop { at }),
        (any::<usize>(), any::<[u8; 32]>()).prop_map(|(at, hash)| Spoil::Insert { at, hash }),
    ]
}

/// Applies `s`; `None` when it cannot apply (nothing to flip or drop in an empty proof).
fn apply(proof: &[Hash], s: &Spoil) -> Option<Vec<Vec<u8>>> {
    let mut p: Vec<Vec<u8>> = proof.iter().map(|h| h.to_vec()).collect();
    match *s {
        Spoil::Flip { at, bit } => {
            let n = p.len();
            let h = p.get_mut(at.checked_rem(n)?)?;
            h[bit / 8] ^= 1 << (bit % 8);
        }
        Spoil::Drop { at } => {
            let n = p.len();
            p.remove(at.checked_rem(n)?);
        }
        Spoil::Insert { at, hash } => p.insert(at % (p.len() + 1), hash.to_vec()),
    }
    Some(p)
}

proptest! {
    #[test]
    fn inclusion_proofs_verify_and_resist_change(
        size in 1..=MAX_LEAVES,
        index in any::<u64>(),
        salt in any::<u64>(),
        s in spoil(),
        other in any::<u64>(),
    ) {
        let t = tree(size, salt);
        let index = index % size;
        let leaf = t.leaf_hash(index).unwrap();
        let r = t.root();
        let proof = t.inclusion_proof(index, size).unwrap();
        prop_assert_eq!(&proof, &inclusion_proof(t.leaf_hashes(), index, size).unwrap());
        verify_inclusion(index, size, &leaf, &proof, &r).unwrap();

        if let Some(bad) = apply(&proof, &s) {
            prop_assert!(verify_inclusion(index, size, &leaf, &bad, &r).is_err(), "{:?}", s);
        }
        // Wrong index, wrong size (with that size's real root, as a signed head would give),
        // wrong leaf, wrong root, root and leaf swapped.
        let wrong_index = (index + 1 + other % size) % size;
        if wrong_index != index {
            prop_assert!(verify_inclusion(wrong_index, size, &leaf, &proof, &r).is_err());
        }
        let wrong_size = 1 + other % MAX_LEAVES;
        if wrong_size != size {
            let big = tree(MAX_LEAVES, salt);
            let r2 = big.root_at(wrong_size).unwrap();
            prop_assert!(verify_inclusion(index, wrong_size, &leaf, &proof, &r2).is_err());
        }
        prop_assert!(verify_inclusion(index, size, &leaf_hash(b"other"), &proof, &r).is_err());
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &leaf_hash(b"x")).is_err());
        if size > 1 {
            prop_assert!(verify_inclusion(index, size, &r, &proof, &leaf).is_err());
        }
        prop_assert!(verify_inclusion(index, size, &leaf[..31], &proof, &r).is_err());
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &[&r[..], &[0]].concat()).is_err());
        prop_assert!(verify_inclusion(size, size, &leaf, &proof, &r).is_err());
        prop_assert!(verify_inclusion(index, 0, &leaf, &proof, &r).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_resist_change(
        size2 in 1..=MAX_LEAVES,
        size1 in any::<u64>(),
        salt in any::<u64>(),
        s in spoil(),
        other in any::<u64>(),
    ) {
        let t = tree(size2, salt);
        let size1 = 1 + size1 % size2;
        let (r1, r2) = (t.root_at(size1).unwrap(), t.root());
        let proof = t.consistency_proof(size1, size2).unwrap();
        prop_assert_eq!(&proof, &consistency_proof(t.leaf_hashes(), size1, size2).unwrap());
        verify_consistency(size1, size2, &r1, &r2, &proof).unwrap();

        if let Some(bad) = apply(&proof, &s) {
            prop_assert!(verify_consistency(size1, size2, &r1, &r2, &bad).is_err(), "{:?}", s);
        }
        // Wrong old size or new size, each with its real root.
        let wrong1 = 1 + other % size2;
        if wrong1 != size1 {
            let w = t.root_at(wrong1).unwrap();
            prop_assert!(verify_consistency(wrong1, size2, &w, &r2, &proof).is_err());
        }
        let wrong2 = 1 + other % MAX_LEAVES;
        if wrong2 != size2 && wrong2 >= size1 {
            let big = tree(MAX_LEAVES, salt);
            let w = big.root_at(wrong2).unwrap();
            prop_assert!(verify_consistency(size1, wrong2, &r1, &w, &proof).is_err());
        }
        // Rollback: the same proof, or any, read backwards.
        if size1 < size2 {
            prop_assert_eq!(
                verify_consistency(size2, size1, &r2, &r1, &proof),
                Err(LedgerError::Rollback { size1: size2, size2: size1 })
            );
            prop_assert!(verify_consistency(size1, size2, &r2, &r1, &proof).is_err());
            prop_assert!(verify_consistency(size1, size2, &r1, &leaf_hash(b"x"), &proof).is_err());
            prop_assert!(verify_consistency(size1, size2, &leaf_hash(b"x"), &r2, &proof).is_err());
        }
        prop_assert!(verify_consistency(0, size2, &r1, &r2, &proof).is_err());
    }

    /// Two logs that agree on the first `common` leaves and then differ: no proof made from
    /// either one links a head of the other.
    #[test]
    fn forks_are_refused(
        common in 0..MAX_LEAVES / 2,
        extra_a in 1..MAX_LEAVES / 2,
        extra_b in 1..MAX_LEAVES / 2,
        salt in any::<u64>(),
    ) {
        let shared = tree(common, salt);
        let mut a = shared.clone();
        let mut b = shared;
        for i in 0..extra_a { a.push_entry(&[b"a".as_slice(), &i.to_be_bytes()].concat()); }
        for i in 0..extra_b { b.push_entry(&[b"b".as_slice(), &i.to_be_bytes()].concat()); }
        let (na, nb) = (a.size(), b.size());
        // Heads of the same size on the two branches, and a later head of each.
        let fork_size = common + extra_a.min(extra_b);
        let (ra, rb) = (a.root_at(fork_size).unwrap(), b.root_at(fork_size).unwrap());
        prop_assert_ne!(ra, rb);
        prop_assert!(verify_consistency(fork_size, fork_size, &ra, &rb, &[] as &[Hash]).is_err());
        if nb > fork_size {
            let p = b.consistency_proof(fork_size, nb).unwrap();
            prop_assert!(verify_consistency(fork_size, nb, &ra, &b.root(), &p).is_err());
        }
        if na > fork_size {
            let p = a.consistency_proof(fork_size, na).unwrap();
            prop_assert!(verify_consistency(fork_size, na, &rb, &a.root(), &p).is_err());
        }
        // A branch-a head cannot be extended by any branch-b proof from any size.
        for s1 in (common + 1)..=na.min(nb) {
            let p = b.consistency_proof(s1, nb).unwrap();
            let r1 = a.root_at(s1).unwrap();
            prop_assert!(verify_consistency(s1, nb, &r1, &b.root(), &p).is_err());
        }
        // An entry only on branch b does not prove into a head of branch a.
        let i = nb - 1;
        if i >= common && i < na {
            let p = b.inclusion_proof(i, nb).unwrap();
            prop_assert!(verify_inclusion(i, na, &b.leaf_hash(i).unwrap(), &p, &a.root()).is_err());
        }
    }

    #[test]
    fn entries_round_trip(e in entry()) {
        let bytes = e.to_bytes();
        prop_assert_eq!(Entry::from_bytes(&bytes), Ok(e.clone()));
        prop_assert_eq!(e.leaf_hash(), leaf_hash(&bytes));
        prop_assert!(Entry::from_bytes(&[&bytes[..], &[0]].concat()).is_err());
        prop_assert!(Entry::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn entry_decoder_never_panics_and_reencodes_exactly(bytes in prop::collection::vec(any::<u8>(), 0..200), kind in 0u8..10) {
        let mut b = b"clinvault/entry/v1".to_vec();
        b.push(kind);
        b.extend(bytes);
        for candidate in [&b[..], &b[18..]] {
            if let Ok(e) = Entry::from_bytes(candidate) {
                prop_assert_eq!(e.to_bytes(), candidate.to_vec());
            }
        }
    }
}

fn id() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>()
}

fn h32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn entry() -> impl Strategy<Value = Entry> {
    let role = prop_oneof![
        Just(Role::Patient),
        Just(Role::Doctor),
        Just(Role::Reception),
        Just(Role::Admin),
        Just(Role::Auditor)
    ];
    let how = prop_oneof![Just(GrantHow::Otp), Just(GrantHow::SignedByPatient)];
    let what = prop_oneof![Just(AccessWhat::ReleasedByOtp), Just(AccessWhat::KeyServed)];
    let t = any::<i64>();
    prop_oneof![
        (t, id(), role, h32(), h32()).prop_map(|(time_ms, user_id, role, x, e)| {
            Entry::UserRegistered {
                time_ms,
                user_id,
                role,
                x25519_public: x,
                ed25519_public: e,
            }
        }),
        (t, id(), h32(), h32(), h32()).prop_map(|(time_ms, report_id, m, s1, s2)| {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&s1);
            signature[32..].copy_from_slice(&s2);
            Entry::ReportCommitted {
                time_ms,
                report_id,
                manifest_hash: m,
                signature,
            }
        }),
        (t, id(), id(), id(), how, proptest::option::of(any::<i64>())).prop_map(
            |(time_ms, grant_id, report_id, reader_id, how, expires_ms)| Entry::GrantApproved {
                time_ms,
                grant_id,
                report_id,
                reader_id,
                how,
                expires_ms,
            }
        ),
        (t, id(), id(), id(), id(), h32()).prop_map(
            |(time_ms, grant_id, report_id, reader_id, wrapper_id, wrapped_key_hash)| {
                Entry::KeyWrapped {
                    time_ms,
                    grant_id,
                    report_id,
                    reader_id,
                    wrapper_id,
                    wrapped_key_hash,
                }
            }
        ),
        (t, id()).prop_map(|(time_ms, grant_id)| Entry::GrantRevoked { time_ms, grant_id }),
        (t, id(), id(), what).prop_map(|(time_ms, report_id, reader_id, what)| {
            Entry::ReportAccess {
                time_ms,
                report_id,
                reader_id,
                what,
            }
        }),
        (t, id(), id()).prop_map(|(time_ms, request_id, user_id)| {
            Entry::OtpVerified {
                time_ms,
                request_id,
                user_id,
            }
        }),
    ]
}

#[test]
fn tree_roots_match_the_slice_root() {
    let t = tree(MAX_LEAVES, 1);
    for n in 0..=MAX_LEAVES {
        assert_eq!(t.root_at(n).unwrap(), root(&t.leaf_hashes()[..n as usize]));
    }
}
