//! RFC 6962/9162 hashing: leaves and interior nodes are domain-separated by a prefix byte, so
//! a leaf can never pass for a node (second-preimage attacks on the tree).

use sha2::{Digest, Sha256};

use super::Hash;

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Merkle tree hash of `leaf_hashes` (RFC 9162 §2.1.1). Pairing level by level and carrying
/// an odd last node up unchanged gives the same root as splitting at the largest power of two.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = leaf_hashes.to_vec();
    while level.len() > 1 {
        let (pairs, odd) = level.as_chunks::<2>();
        let mut next: Vec<Hash> = pairs.iter().map(|[l, r]| node_hash(l, r)).collect();
        next.extend_from_slice(odd);
        level = next;
    }
    level.first().copied().unwrap_or_else(empty_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162 §2.1.1 as written: split at the largest power of two below n.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn root_matches_the_rfc_definition() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 0..=leaves.len() {
            assert_eq!(root(&leaves[..n]), mth(&leaves[..n]), "size {n}");
        }
    }

    #[test]
    fn known_hashes() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 6962 test tree, leaf 0 is the empty entry.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
