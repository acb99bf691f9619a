//! Proof verification, for every client: RFC 9162 §2.1.3.2 and §2.1.4.2.
//!
//! Logs have been broken here before (immudb's advisories: proofs accepted with unchecked
//! lengths, unconsumed sizes, or a shortcut for some sizes). So every input is checked before
//! any hashing: sizes, then the exact proof length the sizes call for, then every hash's
//! length; and the walk itself must consume both sizes down to zero.

use super::hash::node_hash;
use super::{Hash, LedgerError};

/// Number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves.
pub fn inclusion_proof_len(index: u64, size: u64) -> Result<usize, LedgerError> {
    if size == 0 {
        return Err(LedgerError::EmptyTree);
    }
    if index >= size {
        return Err(LedgerError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decompose(index, size);
    Ok((inner + border) as usize)
}

/// Number of hashes in the consistency proof from `size1` leaves to `size2` leaves.
pub fn consistency_proof_len(size1: u64, size2: u64) -> Result<usize, LedgerError> {
    if size1 == 0 {
        return Err(LedgerError::ConsistencyFromEmpty);
    }
    if size2 < size1 {
        return Err(LedgerError::Rollback { size1, size2 });
    }
    if size1 == size2 {
        return Ok(0);
    }
    // The proof is the tail of leaf size1-1's path in the new tree, above the largest
    // perfect subtree the old tree ends with, plus that subtree's root unless it is the
    // whole old tree.
    let (inner, border) = decompose(size1 - 1, size2);
    let shift = size1.trailing_zeros();
    let seed = u32::from(!size1.is_power_of_two());
    Ok((seed + inner.saturating_sub(shift) + border) as usize)
}

/// Splits leaf `index`'s path in a tree of `size` into the levels below the point where it
/// leaves the right border (`inner`) and the border levels above it where it has a left
/// sibling (`border`).
fn decompose(index: u64, size: u64) -> (u32, u32) {
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    // inner can be 64: a plain shift by 64 would panic.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

fn hash32<'a>(what: &'static str, bytes: &'a [u8]) -> Result<&'a Hash, LedgerError> {
    bytes.try_into().map_err(|_| LedgerError::HashLength {
        what,
        len: bytes.len(),
    })
}

fn proof_hashes<P: AsRef<[u8]>>(proof: &[P], want: usize) -> Result<Vec<&Hash>, LedgerError> {
    if proof.len() != want {
        return Err(LedgerError::ProofLength {
            got: proof.len(),
            want,
        });
    }
    proof
        .iter()
        .map(|p| hash32("proof hash", p.as_ref()))
        .collect()
}

/// Checks that the leaf with hash `leaf_hash` is leaf `index` of the tree of `size` leaves
/// whose root is `root`. All hashes come in as untrusted byte strings; each must be 32 bytes.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), LedgerError> {
    let want = inclusion_proof_len(index, size)?;
    let leaf = hash32("leaf hash", leaf_hash)?;
    let root = hash32("root", root)?;
    let path = proof_hashes(proof, want)?;

    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return Err(LedgerError::ProofLength {
                got: proof.len(),
                want,
            });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            // On the right border: skip the levels where this node has no sibling.
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(LedgerError::ProofLength {
            got: proof.len(),
            want,
        });
    }
    if r != *root {
        return Err(LedgerError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree of `size1`
/// leaves with root `root1`: same first `size1` leaves, in the same order.
///
/// Refused: `size1 == 0` (nothing to prove from: pin the first verified head instead),
/// `size2 < size1` (rollback), and any proof whose length differs from what the sizes call
/// for. With equal sizes the proof must be empty and the roots equal; nothing is hashed then,
/// so the roots are compared as given. Otherwise both roots must be 32 bytes.
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    root1: &[u8],
    root2: &[u8],
    proof: &[P],
) -> Result<(), LedgerError> {
    let want = consistency_proof_len(size1, size2)?;
    if size1 == size2 {
        proof_hashes(proof, 0)?;
        return if root1 == root2 {
            Ok(())
        } else {
            Err(LedgerError::RootMismatch)
        };
    }
    let root1 = hash32("old root", root1)?;
    let root2 = hash32("new root", root2)?;
    let mut path = proof_hashes(proof, want)?;
    // When the old tree is a perfect subtree of the new one, its root starts the walk.
    if size1.is_power_of_two() {
        path.insert(0, root1);
    }
    let Some((&seed, rest)) = path.split_first() else {
        return Err(LedgerError::ProofLength { got: 0, want });
    };

    let (mut f, mut s) = (size1 - 1, size2 - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if s == 0 {
            return Err(LedgerError::ProofLength {
                got: proof.len(),
                want,
            });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(LedgerError::ProofLength {
            got: proof.len(),
            want,
        });
    }
    if fr != *root1 {
        return Err(LedgerError::OldRootMismatch);
    }
    if sr != *root2 {
        return Err(LedgerError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{consistency_proof, inclusion_proof, leaf_hash, root};

    #[test]
    fn every_proof_of_small_trees_verifies() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for size in 1..=leaves.len() as u64 {
            let r = root(&leaves[..size as usize]);
            for index in 0..size {
                let p = inclusion_proof(&leaves, index, size).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(index, size).unwrap());
                verify_inclusion(index, size, &leaves[index as usize], &p, &r).unwrap();
            }
            for size1 in 1..=size {
                let r1 = root(&leaves[..size1 as usize]);
                let p = consistency_proof(&leaves, size1, size).unwrap();
                assert_eq!(p.len(), consistency_proof_len(size1, size).unwrap());
                verify_consistency(size1, size, &r1, &r, &p).unwrap();
            }
        }
    }

    #[test]
    fn lengths_at_the_edges_of_u64() {
        assert_eq!(inclusion_proof_len(0, u64::MAX), Ok(64));
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), Ok(63));
        assert_eq!(inclusion_proof_len(0, 1), Ok(0));
        assert!(consistency_proof_len(1, u64::MAX).is_ok());
        assert!(consistency_proof_len(u64::MAX - 1, u64::MAX).is_ok());
        // A huge claimed size with a short proof is refused before any hashing.
        let e = verify_inclusion::<&[u8]>(0, u64::MAX, &[0; 32], &[], &[0; 32]);
        assert_eq!(e, Err(LedgerError::ProofLength { got: 0, want: 64 }));
    }
}
