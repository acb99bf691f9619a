// Fuzz entry points for `ledger/`, shared by the cargo-fuzz targets and the corpus replay in
// `cargo test` (tests/fuzz_corpus_ledger.rs). Each takes arbitrary bytes and must return
// without panicking; the proof targets also check that a verifier accepts a proof exactly
// when it is the one true proof (proofs are unique short of a SHA-256 collision).

use clinvault::ledger::{
    ENTRY_PREFIX, Entry, MerkleTree, leaf_hash, verify_consistency, verify_inclusion,
};

/// Leaves in the reference tree the "real tree" modes draw from.
pub const TREE_LEAVES: u64 = 257;

thread_local! {
    static TREE: MerkleTree = {
        let mut t = MerkleTree::new();
        for i in 0..TREE_LEAVES {
            t.push_entry(&i.to_be_bytes());
        }
        t
    };
}

/// Reads the fuzzer's bytes front to back; past the end everything is zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head.to_vec()
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.bytes(8);
        b[..got.len()].copy_from_slice(&got);
        u64::from_le_bytes(b)
    }

    /// A length byte, then that many bytes: hashes of any length up to 255.
    fn sized(&mut self) -> Vec<u8> {
        let n = self.byte();
        self.bytes(n.into())
    }

    fn elements(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !self.0.is_empty() {
            out.push(self.sized());
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Applies edits read from `input` to a proof: each is an op byte and a position byte.
fn edit(proof: &[[u8; 32]], input: &mut Input<'_>) -> Vec<Vec<u8>> {
    let mut p: Vec<Vec<u8>> = proof.iter().map(|h| h.to_vec()).collect();
    while !input.is_empty() {
        let op = input.byte();
        let at = usize::from(input.byte());
        let n = p.len().max(1);
        match op % 5 {
            0 => {
                let mask = input.byte().max(1);
                if let Some(b) = p
                    .get_mut(at % n)
                    .and_then(|h| h.get_mut(usize::from(op / 5) % 32))
                {
                    *b ^= mask;
                }
            }
            1 if !p.is_empty() => {
                let i = at % p.len();
                p.remove(i);
            }
            2 => {
                let i = at % (p.len() + 1);
                p.insert(i, input.bytes(32));
            }
            3 => {
                if let Some(h) = p.get_mut(at % n) {
                    h.resize(usize::from(op / 5) % 40, 0);
                }
            }
            4 if !p.is_empty() => {
                let n = p.len();
                p.swap(at % n, usize::from(op) % n);
            }
            _ => {}
        }
    }
    p
}

fn as_vecs(proof: &[[u8; 32]]) -> Vec<Vec<u8>> {
    proof.iter().map(|h| h.to_vec()).collect()
}

/// Entry bytes as given, and after the prefix (so the fuzzer reaches the bodies at once).
pub fn ledger_entry(data: &[u8]) {
    if let Ok(e) = Entry::from_bytes(data) {
        assert_eq!(
            e.to_bytes(),
            data,
            "decode then encode must give the same bytes"
        );
    }
    let prefixed = [ENTRY_PREFIX, data].concat();
    if let Ok(e) = Entry::from_bytes(&prefixed) {
        assert_eq!(e.to_bytes(), prefixed);
        assert_eq!(e.leaf_hash(), leaf_hash(&prefixed));
    }
}

/// Byte 0 even: raw inputs (index, size, leaf, root, proof of any lengths).
/// Byte 0 odd: a real tree; a claimed (index, size) and a proof edited from the true proof
/// of another (index, size); it must verify exactly when it equals the claim's true proof.
pub fn ledger_inclusion(data: &[u8]) {
    let mut input = Input(data);
    if input.byte() & 1 == 0 {
        let (index, size) = (input.u64(), input.u64());
        let leaf = input.sized();
        let root = input.sized();
        let proof = input.elements();
        let _ = verify_inclusion(index, size, &leaf, &proof, &root);
        return;
    }
    TREE.with(|t| {
        let size = 1 + input.u64() % TREE_LEAVES;
        let index = input.u64() % size;
        let claimed_size = 1 + input.u64() % TREE_LEAVES;
        let claimed_index = input.u64() % (claimed_size + 1); // may be out of range
        let Ok(source) = t.inclusion_proof(index, size) else {
            return;
        };
        let proof = edit(&source, &mut input);
        let leaf = t.leaf_hash(claimed_index).unwrap_or([0; 32]);
        let root = t.root_at(claimed_size).unwrap();
        let accepted = verify_inclusion(claimed_index, claimed_size, &leaf, &proof, &root).is_ok();
        let truth = t
            .inclusion_proof(claimed_index, claimed_size)
            .map(|p| as_vecs(&p));
        assert_eq!(
            accepted,
            truth == Ok(proof),
            "inclusion verifier disagrees with the tree"
        );
    });
}

/// Byte 0 even: raw inputs (sizes, roots, proof of any lengths).
/// Byte 0 odd: a real tree, as for inclusion.
pub fn ledger_consistency(data: &[u8]) {
    let mut input = Input(data);
    if input.byte() & 1 == 0 {
        let (size1, size2) = (input.u64(), input.u64());
        let root1 = input.sized();
        let root2 = input.sized();
        let proof = input.elements();
        let _ = verify_consistency(size1, size2, &root1, &root2, &proof);
        return;
    }
    TREE.with(|t| {
        let size2 = 1 + input.u64() % TREE_LEAVES;
        let size1 = 1 + input.u64() % size2;
        let claimed2 = input.u64() % (TREE_LEAVES + 1);
        let claimed1 = input.u64() % (TREE_LEAVES + 1); // may be 0 or above claimed2
        let Ok(source) = t.consistency_proof(size1, size2) else {
            return;
        };
        let proof = edit(&source, &mut input);
        let (r1, r2) = (t.root_at(claimed1).unwrap(), t.root_at(claimed2).unwrap());
        let accepted = verify_consistency(claimed1, claimed2, &r1, &r2, &proof).is_ok();
        let truth = t.consistency_proof(claimed1, claimed2).map(|p| as_vecs(&p));
        assert_eq!(
            accepted,
            truth == Ok(proof),
            "consistency verifier disagrees with the tree"
        );
    });
}
