//! RFC 6962 / RFC 9162 Merkle tree hashing, kept as a compact range: the tree is never held in
//! memory, only the roots of the perfect subtrees that make it up (one per set bit of the tree
//! size, largest first). Appending a leaf merges equal-sized subtrees like a binary counter.

use aws_lc_rs::digest;

pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    sha256(&[&[]])
}

/// Leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0x00], data])
}

/// Interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The right edge of a Merkle tree of any size: enough to append leaves and compute the root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first; one per set bit of `size`.
    frontier: Vec<Hash>,
}

impl CompactRange {
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// Rebuilds a range from its stored form (`size` and the concatenated frontier hashes).
    pub fn from_parts(size: u64, frontier: &[u8]) -> Result<CompactRange, String> {
        let want = size.count_ones() as usize;
        if frontier.len() != want * 32 {
            return Err(format!(
                "a tree of size {size} has {want} frontier hashes, the stored frontier has {} bytes",
                frontier.len()
            ));
        }
        let frontier = frontier
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(CompactRange { size, frontier })
    }

    /// The frontier hashes concatenated, largest subtree first (the stored form).
    pub fn frontier_bytes(&self) -> Vec<u8> {
        self.frontier.concat()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf (its leaf hash).
    pub fn append(&mut self, leaf: Hash) {
        let mut h = leaf;
        // Each trailing 1 bit of the old size is a subtree of the same height as `h` on its left.
        let mut s = self.size;
        while s & 1 == 1 {
            let left = self.frontier.pop().expect("frontier matches the size");
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.frontier.push(h);
        self.size += 1;
    }

    /// The Merkle tree hash of the whole range (RFC 6962 section 2.1).
    pub fn root(&self) -> Hash {
        let mut it = self.frontier.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 section 2.1, written as the recursion it is: split at the largest power of two
    /// smaller than n.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    // The Certificate Transparency reference inputs and tree heads (RFC 6962 test vectors).
    const CT_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn matches_the_rfc6962_reference_roots() {
        assert_eq!(hex::encode(empty_root()), CT_ROOTS[0]);
        assert_eq!(hex::encode(CompactRange::new().root()), CT_ROOTS[0]);
        let leaves: Vec<Hash> = CT_LEAVES
            .iter()
            .map(|h| leaf_hash(&hex::decode(h).unwrap()))
            .collect();
        let mut range = CompactRange::new();
        for (n, leaf) in leaves.iter().enumerate() {
            range.append(*leaf);
            assert_eq!(
                hex::encode(range.root()),
                CT_ROOTS[n + 1],
                "compact range, size {}",
                n + 1
            );
            assert_eq!(
                hex::encode(naive_root(&leaves[..=n])),
                CT_ROOTS[n + 1],
                "naive, size {}",
                n + 1
            );
        }
    }

    #[test]
    fn compact_range_equals_naive_recursion_for_sizes_0_to_100() {
        let leaves: Vec<Hash> = (0..100u32)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect();
        let mut range = CompactRange::new();
        assert_eq!(range.root(), naive_root(&[]));
        for n in 1..=100 {
            range.append(leaves[n - 1]);
            assert_eq!(range.size(), n as u64);
            assert_eq!(range.root(), naive_root(&leaves[..n]), "size {n}");
            // The stored form round-trips.
            let again = CompactRange::from_parts(range.size(), &range.frontier_bytes()).unwrap();
            assert_eq!(again, range);
        }
    }

    #[test]
    fn stored_frontier_must_match_the_size() {
        assert!(CompactRange::from_parts(0, &[]).is_ok());
        assert!(CompactRange::from_parts(3, &[0u8; 32]).is_err());
        assert!(CompactRange::from_parts(3, &[0u8; 64]).is_ok());
        assert!(CompactRange::from_parts(4, &[0u8; 33]).is_err());
    }
}
