//! Proof generation, for the server: RFC 9162 §2.1.3.1 (PATH) and §2.1.4.1 (SUBPROOF).
//!
//! Every hash in a proof is the root of a run of leaves, and every such run splits into a few
//! perfect, aligned subtrees ([`Subtree`]). The generic functions ask a closure for those, so
//! a server can answer from a table of leaf hashes, or of subtree hashes filled at append time
//! ([`Subtree::completed_by`]), without holding the tree in memory.

use std::ops::Range;

use super::hash::{empty_root, node_hash, root};
use super::{Hash, LedgerError};

/// A perfect subtree: the `2^level` leaves starting at leaf `index << level`.
/// Level 0 is a single leaf; its hash is the leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    // Invariant: (index + 1) << level fits in a u64 (leaf indices stop at u64::MAX - 1).
    level: u32,
    index: u64,
}

impl Subtree {
    /// The one-leaf subtree of leaf `index`.
    pub fn leaf(index: u64) -> Self {
        Subtree { level: 0, index }
    }

    /// `None` when it would reach past leaf index `u64::MAX - 1`: no tree is that big.
    pub fn new(level: u32, index: u64) -> Option<Self> {
        let width = 1u64.checked_shl(level)?;
        index.checked_add(1)?.checked_mul(width)?;
        Some(Subtree { level, index })
    }

    pub fn level(&self) -> u32 {
        self.level
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    /// The leaf indices it covers.
    pub fn leaves(&self) -> Range<u64> {
        let start = self.index << self.level;
        start..start.saturating_add(1u64 << self.level)
    }

    /// Left and right halves; `None` for a leaf. Its hash is `node_hash(left, right)`.
    pub fn children(&self) -> Option<(Subtree, Subtree)> {
        let level = self.level.checked_sub(1)?;
        let left = self.index << 1;
        Some((
            Subtree { level, index: left },
            Subtree {
                level,
                index: left | 1,
            },
        ))
    }

    /// The subtrees that become complete when leaf `leaf_index` is appended, smallest first:
    /// the leaf itself, then one per level while the tree size is a multiple of `2^level`.
    /// A server that stores these as it appends can answer every proof from O(log² n) reads.
    pub fn completed_by(leaf_index: u64) -> impl Iterator<Item = Subtree> {
        // Leaf u64::MAX would make a tree of 2^64 leaves: it completes nothing.
        let top = leaf_index.checked_add(1).map(u64::trailing_zeros);
        top.into_iter().flat_map(move |top| {
            (0..=top).map(move |level| Subtree {
                level,
                index: leaf_index >> level,
            })
        })
    }
}

/// Root of the first `size` leaves, asking `node` for the subtrees it needs.
pub fn root_with<E>(size: u64, mut node: impl FnMut(Subtree) -> Result<Hash, E>) -> Result<Hash, E>
where
    E: From<LedgerError>,
{
    if size == 0 {
        return Ok(empty_root());
    }
    range_root(0, size, &mut node)
}

/// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
///
/// ```
/// use clinvault::ledger::{LedgerError, MerkleTree, Subtree, inclusion_proof_with, root};
/// use clinvault::ledger::verify_inclusion;
///
/// let mut tree = MerkleTree::new();
/// for i in 0..10u8 {
///     tree.push_entry(&[i]);
/// }
/// // Stands in for a table of leaf hashes: one range query per subtree asked for.
/// let table = tree.leaf_hashes();
/// let proof = inclusion_proof_with(3, 10, |s: Subtree| -> Result<_, LedgerError> {
///     let r = s.leaves();
///     Ok(root(&table[r.start as usize..r.end as usize]))
/// })?;
/// verify_inclusion(3, 10, &table[3], &proof, &tree.root())?;
/// # Ok::<(), LedgerError>(())
/// ```
pub fn inclusion_proof_with<E>(
    index: u64,
    size: u64,
    mut node: impl FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E>
where
    E: From<LedgerError>,
{
    inclusion_ranges(index, size)?
        .into_iter()
        .map(|r| range_root(r.start, r.end, &mut node))
        .collect()
}

/// Consistency proof from the tree of `size1` leaves to the tree of `size2` leaves.
/// Equal sizes give an empty proof; `size1 == 0` is refused (see [`super::verify_consistency`]).
pub fn consistency_proof_with<E>(
    size1: u64,
    size2: u64,
    mut node: impl FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E>
where
    E: From<LedgerError>,
{
    consistency_ranges(size1, size2)?
        .into_iter()
        .map(|r| range_root(r.start, r.end, &mut node))
        .collect()
}

/// [`inclusion_proof_with`] over leaf hashes in memory (`leaf_hashes` may hold more than
/// `size`).
pub fn inclusion_proof(
    leaf_hashes: &[Hash],
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, LedgerError> {
    let leaves = first(leaf_hashes, size)?;
    inclusion_proof_with(index, size, |s| slice_node(leaves, s))
}

/// [`consistency_proof_with`] over leaf hashes in memory (`leaf_hashes` may hold more than
/// `size2`).
pub fn consistency_proof(
    leaf_hashes: &[Hash],
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, LedgerError> {
    let leaves = first(leaf_hashes, size2)?;
    consistency_proof_with(size1, size2, |s| slice_node(leaves, s))
}

fn first(leaf_hashes: &[Hash], size: u64) -> Result<&[Hash], LedgerError> {
    let too_small = || LedgerError::TreeTooSmall {
        size,
        have: leaf_hashes.len() as u64,
    };
    let n = usize::try_from(size).map_err(|_| too_small())?;
    leaf_hashes.get(..n).ok_or_else(too_small)
}

fn slice_node(leaves: &[Hash], s: Subtree) -> Result<Hash, LedgerError> {
    let r = s.leaves();
    let bad = LedgerError::BadRange {
        start: r.start,
        end: r.end,
    };
    let (Ok(a), Ok(b)) = (usize::try_from(r.start), usize::try_from(r.end)) else {
        return Err(bad);
    };
    leaves.get(a..b).map(root).ok_or(bad)
}

/// Root of leaves `start..end` (non-empty) from its perfect subtrees, largest first:
/// `MTH = H(p1, H(p2, … pk))`, the split RFC 9162 makes at the largest power of two.
fn range_root<E>(
    start: u64,
    end: u64,
    node: &mut impl FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Hash, E>
where
    E: From<LedgerError>,
{
    let bad = || LedgerError::BadRange { start, end };
    let mut remaining = end.checked_sub(start).filter(|&n| n > 0).ok_or_else(bad)?;
    let mut pos = start;
    let mut parts = Vec::with_capacity(remaining.count_ones() as usize);
    while remaining > 0 {
        let level = u64::BITS - 1 - remaining.leading_zeros();
        let width = 1u64 << level;
        if !pos.is_multiple_of(width) {
            return Err(bad().into());
        }
        parts.push(node(Subtree {
            level,
            index: pos >> level,
        })?);
        pos += width;
        remaining -= width;
    }
    let mut acc = parts.pop().ok_or_else(bad)?;
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// Largest power of two strictly below `n` (n >= 2).
fn split_point(n: u64) -> u64 {
    1u64 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// The leaf runs whose roots make the audit path of `index`, bottom-up (PATH, iteratively).
fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<Range<u64>>, LedgerError> {
    if size == 0 {
        return Err(LedgerError::EmptyTree);
    }
    if index >= size {
        return Err(LedgerError::IndexOutOfRange { index, size });
    }
    let (mut lo, mut hi) = (0u64, size);
    let mut siblings = Vec::new();
    while hi - lo > 1 {
        let mid = lo + split_point(hi - lo);
        if index < mid {
            siblings.push(mid..hi);
            hi = mid;
        } else {
            siblings.push(lo..mid);
            lo = mid;
        }
    }
    siblings.reverse();
    Ok(siblings)
}

/// The leaf runs whose roots make the consistency proof (SUBPROOF(m, D[n], true), iteratively).
fn consistency_ranges(size1: u64, size2: u64) -> Result<Vec<Range<u64>>, LedgerError> {
    if size1 == 0 {
        return Err(LedgerError::ConsistencyFromEmpty);
    }
    if size2 < size1 {
        return Err(LedgerError::Rollback { size1, size2 });
    }
    let (mut lo, mut hi) = (0u64, size2);
    let mut whole_old_tree = true;
    let mut siblings = Vec::new();
    // Walk down until the node spans exactly the old tree's last run, lo..size1.
    while hi != size1 {
        let mid = lo + split_point(hi - lo);
        if size1 <= mid {
            siblings.push(mid..hi);
            hi = mid;
        } else {
            siblings.push(lo..mid);
            lo = mid;
            whole_old_tree = false;
        }
    }
    siblings.reverse();
    // The verifier knows the old root; it needs this node only when it is a proper part.
    if !whole_old_tree {
        siblings.insert(0, lo..hi);
    }
    Ok(siblings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::leaf_hash;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn rfc_9162_example_paths() {
        // RFC 9162 §2.1.5: the tree of 7 leaves d0..d6.
        assert_eq!(inclusion_ranges(0, 7).unwrap(), [1..2, 2..4, 4..7]);
        assert_eq!(inclusion_ranges(3, 7).unwrap(), [2..3, 0..2, 4..7]);
        assert_eq!(inclusion_ranges(4, 7).unwrap(), [5..6, 6..7, 0..4]);
        assert_eq!(inclusion_ranges(6, 7).unwrap(), [4..6, 0..4]);
        assert_eq!(consistency_ranges(3, 7).unwrap(), [2..3, 3..4, 0..2, 4..7]);
        assert_eq!(
            consistency_ranges(4, 7).unwrap(),
            [Range { start: 4, end: 7 }]
        );
        assert_eq!(consistency_ranges(6, 7).unwrap(), [4..6, 6..7, 0..4]);
        assert!(consistency_ranges(7, 7).unwrap().is_empty());
    }

    #[test]
    fn range_root_matches_slice_root() {
        let l = leaves(37);
        for size in 1..=37u64 {
            let via_nodes = root_with(size, |s| slice_node(&l, s)).unwrap();
            assert_eq!(via_nodes, root(&l[..size as usize]), "size {size}");
        }
        assert_eq!(root_with(0, |s| slice_node(&l, s)).unwrap(), empty_root());
    }

    #[test]
    fn refusals() {
        let l = leaves(5);
        assert_eq!(inclusion_proof(&l, 0, 0), Err(LedgerError::EmptyTree));
        assert_eq!(
            inclusion_proof(&l, 5, 5),
            Err(LedgerError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            inclusion_proof(&l, 0, 6),
            Err(LedgerError::TreeTooSmall { size: 6, have: 5 })
        );
        assert_eq!(
            consistency_proof(&l, 0, 5),
            Err(LedgerError::ConsistencyFromEmpty)
        );
        assert_eq!(
            consistency_proof(&l, 4, 3),
            Err(LedgerError::Rollback { size1: 4, size2: 3 })
        );
        let mut never = |_| -> Result<Hash, LedgerError> { Ok([0; 32]) };
        assert!(range_root(3, 3, &mut never).is_err());
        assert!(range_root(1, 3, &mut never).is_err(), "1..3 is not aligned");
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let mut zero = |_| -> Result<Hash, LedgerError> { Ok([0; 32]) };
        for (i, n) in [(0, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 63, u64::MAX)] {
            assert_eq!(
                inclusion_proof_with(i, n, &mut zero).unwrap().len(),
                crate::ledger::inclusion_proof_len(i, n).unwrap()
            );
        }
        for (a, b) in [(1, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 63, u64::MAX)] {
            assert_eq!(
                consistency_proof_with(a, b, &mut zero).unwrap().len(),
                crate::ledger::consistency_proof_len(a, b).unwrap()
            );
        }
    }

    #[test]
    fn completed_subtrees() {
        let got: Vec<_> = Subtree::completed_by(5)
            .map(|s| (s.level(), s.index()))
            .collect();
        assert_eq!(got, [(0, 5), (1, 2)]);
        let got: Vec<_> = Subtree::completed_by(7)
            .map(|s| (s.level(), s.index()))
            .collect();
        assert_eq!(got, [(0, 7), (1, 3), (2, 1), (3, 0)]);
        assert_eq!(Subtree::completed_by(4).count(), 1);
        assert_eq!(Subtree::new(2, 1).unwrap().leaves(), 4..8);
        assert!(Subtree::new(64, 0).is_none());
        assert!(Subtree::new(63, 1).is_none());
        assert!(Subtree::new(0, u64::MAX).is_none());
        assert_eq!(Subtree::completed_by(u64::MAX).count(), 0);
    }
}
