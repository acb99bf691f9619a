//! An in-memory Merkle tree: for clients replaying the ledger, tests and small servers.

use super::hash::{leaf_hash, node_hash};
use super::proof::{Subtree, consistency_proof_with, inclusion_proof_with, root_with};
use super::{Hash, LedgerError};

/// Append-only tree keeping every complete subtree's hash, so roots and proofs for any
/// earlier size cost O(log² n) hashes and appends O(log n).
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    /// `levels[l][i]` is the hash of `Subtree(l, i)`; `levels[0]` holds the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over leaf hashes already computed (e.g. read back from storage).
    pub fn from_leaf_hashes(leaf_hashes: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for h in leaf_hashes {
            tree.push_leaf_hash(h);
        }
        tree
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.leaf_hashes().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.leaf_hashes().is_empty()
    }

    /// Appends an entry's bytes; returns its leaf index.
    pub fn push_entry(&mut self, entry: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(entry))
    }

    /// Appends a leaf hash; returns its leaf index.
    pub fn push_leaf_hash(&mut self, hash: Hash) -> u64 {
        let index = self.size();
        for s in Subtree::completed_by(index) {
            let h = match s.children() {
                None => hash,
                // Both halves were completed earlier (or just now, one level down).
                Some((l, r)) => match (self.node(l), self.node(r)) {
                    (Some(l), Some(r)) => node_hash(&l, &r),
                    _ => unreachable!("a completed subtree's halves are stored first"),
                },
            };
            let level = s.level() as usize;
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(h);
        }
        index
    }

    pub fn leaf_hashes(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        self.node(Subtree::leaf(index))
    }

    /// The stored hash of a complete subtree, if it is complete.
    pub fn node(&self, s: Subtree) -> Option<Hash> {
        let i = usize::try_from(s.index()).ok()?;
        self.levels.get(s.level() as usize)?.get(i).copied()
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.size())
            .expect("the current size is always within the tree")
    }

    /// Root of the tree of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        self.check_size(size)?;
        root_with(size, |s| self.lookup(s))
    }

    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(size)?;
        inclusion_proof_with(index, size, |s| self.lookup(s))
    }

    /// Consistency proof from the first `size1` leaves to the first `size2`.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(size2)?;
        consistency_proof_with(size1, size2, |s| self.lookup(s))
    }

    fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        if size > self.size() {
            return Err(LedgerError::TreeTooSmall {
                size,
                have: self.size(),
            });
        }
        Ok(())
    }

    fn lookup(&self, s: Subtree) -> Result<Hash, LedgerError> {
        self.node(s).ok_or(LedgerError::BadRange {
            start: s.leaves().start,
            end: s.leaves().end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{consistency_proof, inclusion_proof, root};

    #[test]
    fn agrees_with_the_slice_functions() {
        let mut tree = MerkleTree::new();
        assert_eq!(tree.root(), crate::ledger::empty_root());
        for i in 0u32..33 {
            assert_eq!(tree.push_entry(&i.to_be_bytes()), u64::from(i));
            let leaves = tree.leaf_hashes().to_vec();
            let n = tree.size();
            assert_eq!(tree.root(), root(&leaves));
            for size in 1..=n {
                assert_eq!(tree.root_at(size).unwrap(), root(&leaves[..size as usize]));
                assert_eq!(
                    tree.consistency_proof(1, size).unwrap(),
                    consistency_proof(&leaves, 1, size).unwrap()
                );
                assert_eq!(
                    tree.inclusion_proof(size - 1, n).unwrap(),
                    inclusion_proof(&leaves, size - 1, n).unwrap()
                );
            }
        }
        assert_eq!(
            tree.root_at(34),
            Err(LedgerError::TreeTooSmall { size: 34, have: 33 })
        );
        let copy = MerkleTree::from_leaf_hashes(tree.leaf_hashes().iter().copied());
        assert_eq!(copy.root(), tree.root());
    }
}
