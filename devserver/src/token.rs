//! Cassandra's Murmur3Partitioner: the token of a partition key, evenly spread node
//! tokens and the ring that says which node owns a token.

/// The first multiplication constant of MurmurHash3 x64 128.
const C1: u64 = 0x87c3_7b91_1142_53d5;
/// The second multiplication constant of MurmurHash3 x64 128.
const C2: u64 = 0x4cf5_ad43_2745_937f;

/// The final avalanche of MurmurHash3 (Java's `>>>` is a logical shift).
fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Mixes the first 64-bit half of a block (or tail) into `h1`'s input.
fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

/// Mixes the second 64-bit half of a block (or tail) into `h2`'s input.
fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

/// Cassandra's MurmurHash3 x64 128 (`org.apache.cassandra.utils.MurmurHash.hash3_x64_128`):
/// the reference algorithm, except that the tail bytes are read as Java's signed bytes,
/// so a tail byte >= 0x80 is sign-extended before it is shifted into place.
pub fn murmur3_x64_128(key: &[u8], seed: u64) -> (u64, u64) {
    let mut h1 = seed;
    let mut h2 = seed;
    let mut blocks = key.chunks_exact(16);
    for block in &mut blocks {
        let (lo, hi) = block.split_at(8);
        let k1 = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
        let k2 = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
        h1 ^= mix_k1(k1);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(k2);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    // The signed-byte quirk: `((long) key.get(i)) << shift` sign-extends the byte.
    let signed = |i: usize| tail.get(i).map_or(0, |&b| b as i8 as i64 as u64);
    let mut k1 = 0u64;
    let mut k2 = 0u64;
    for i in (8..tail.len()).rev() {
        k2 ^= signed(i) << ((i - 8) * 8);
    }
    for i in (0..tail.len().min(8)).rev() {
        k1 ^= signed(i) << (i * 8);
    }
    if tail.len() > 8 {
        h2 ^= mix_k2(k2);
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(k1);
    }
    let len = key.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

/// The Murmur3Partitioner token of a partition key's bytes (as `SELECT token(k)` prints it):
/// the first 64 bits of the hash, with `Long.MIN_VALUE` (the ring's minimum, which no key
/// may have) mapped to `Long.MAX_VALUE`.
pub fn token(key: &[u8]) -> i64 {
    let t = murmur3_x64_128(key, 0).0 as i64;
    if t == i64::MIN {
        i64::MAX
    } else {
        t
    }
}

/// The partition key bytes Cassandra hashes: a single column's serialized value as it is;
/// a composite key's components each as `[short length][bytes][0x00]`.
pub fn partition_key(components: &[Vec<u8>]) -> Vec<u8> {
    match components {
        [one] => one.clone(),
        parts => {
            let mut out = Vec::new();
            for p in parts {
                // A component longer than 65535 bytes cannot be a key; its length is cut as
                // Cassandra's writeShortLength would.
                out.extend_from_slice(&(p.len() as u16).to_be_bytes());
                out.extend_from_slice(p);
                out.push(0);
            }
            out
        }
    }
}

/// The tokens of `nodes` nodes with `per_node` tokens each: the `nodes * per_node` evenly
/// spaced tokens of [-2^63, 2^63), interleaved, so token `k * nodes + i` belongs to node `i`.
pub fn evenly_spaced(nodes: usize, per_node: usize) -> Vec<Vec<i64>> {
    let total = (nodes * per_node) as i128;
    let mut out = vec![Vec::with_capacity(per_node); nodes];
    for k in 0..per_node {
        for (i, tokens) in out.iter_mut().enumerate() {
            let j = (k * nodes + i) as i128;
            let t = i64::MIN as i128 + (j << 64) / total;
            tokens.push(t as i64);
        }
    }
    out
}

/// Which node owns which token range.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// (token, node index), sorted by token.
    entries: Vec<(i64, usize)>,
}

impl Ring {
    /// The ring of nodes whose tokens are `tokens[i]` for node `i`.
    pub fn new(tokens: &[Vec<i64>]) -> Ring {
        let mut entries: Vec<(i64, usize)> = tokens
            .iter()
            .enumerate()
            .flat_map(|(i, ts)| ts.iter().map(move |&t| (t, i)))
            .collect();
        entries.sort_unstable();
        Ring { entries }
    }

    /// The node owning `token`: the node with the smallest token >= `token`, wrapping
    /// around to the smallest token of the ring. None for an empty ring.
    pub fn owner(&self, token: i64) -> Option<usize> {
        let i = self.entries.partition_point(|e| e.0 < token);
        self.entries
            .get(i)
            .or_else(|| self.entries.first())
            .map(|e| e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_of_int_one_is_cassandras() {
        // SELECT token(k) FROM t WHERE k = 1, for an int partition key.
        assert_eq!(token(&1i32.to_be_bytes()), -4069959284402364209);
    }

    #[test]
    fn tokens_agree_with_the_python_driver() {
        // cassandra.murmur3.murmur3(key) of cassandra-driver 3.30, which implements
        // Cassandra's variant (tails read as signed bytes).
        assert_eq!(token(b""), 0);
        assert_eq!(token(b"hello"), -3758069500696749310);
        // The composite key (int 1, text 'x').
        let key = partition_key(&[vec![0, 0, 0, 1], b"x".to_vec()]);
        assert_eq!(token(&key), 746584927563629270);
        assert_eq!(
            token(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x80]),
            7435426006283791941
        );
    }

    #[test]
    fn a_tail_byte_from_0x80_is_sign_extended() {
        // 17 bytes: one block, then a one-byte tail 0x80. Step by step, for a tail `k1`:
        let key: Vec<u8> = (1..=16).chain([0x80]).collect();
        let by_hand = |tail_k1: u64| {
            // The block, as two little-endian halves; h1 and h2 start at the seed 0.
            let k1 = u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]);
            let k2 = u64::from_le_bytes([9, 10, 11, 12, 13, 14, 15, 16]);
            let mut h1 = mix_k1(k1);
            h1 = h1.rotate_left(27).wrapping_mul(5).wrapping_add(0x52dc_e729);
            let mut h2 = mix_k2(k2);
            h2 = h2
                .rotate_left(31)
                .wrapping_add(h1)
                .wrapping_mul(5)
                .wrapping_add(0x3849_5ab5);
            // The tail (one byte, so only k1), then the length 17 and the final mix.
            h1 ^= mix_k1(tail_k1);
            h1 ^= 17;
            h2 ^= 17;
            h1 = h1.wrapping_add(h2);
            h2 = h2.wrapping_add(h1);
            h1 = fmix(h1);
            h2 = fmix(h2);
            h1.wrapping_add(h2)
        };
        // Java's (long) of the byte 0x80 is -128: all the high bits are set.
        let cassandra = by_hand(0xffff_ffff_ffff_ff80);
        assert_eq!(murmur3_x64_128(&key, 0).0, cassandra);
        assert_eq!(token(&key), cassandra as i64);
        // The reference MurmurHash3 reads the byte as 0x80 and hashes differently.
        assert_ne!(by_hand(0x80), cassandra);
    }

    #[test]
    fn composite_keys_are_length_prefixed_and_terminated() {
        assert_eq!(partition_key(&[vec![0, 0, 0, 1]]), vec![0, 0, 0, 1]);
        assert_eq!(
            partition_key(&[vec![0, 0, 0, 1], b"ab".to_vec()]),
            vec![0, 4, 0, 0, 0, 1, 0, 0, 2, b'a', b'b', 0]
        );
    }

    #[test]
    fn evenly_spaced_tokens_interleave() {
        let t = evenly_spaced(3, 4);
        assert_eq!(t.len(), 3);
        assert!(t.iter().all(|ts| ts.len() == 4));
        assert_eq!(t[0][0], i64::MIN);
        // 12 tokens, token j at -2^63 + j * 2^64 / 12 (rounded down): token 1 is node 1's
        // first, token 2 node 2's first, token 3 node 0's second (-2^62, exactly).
        assert_eq!(t[1][0], -7686143364045646507);
        assert_eq!(t[2][0], -6148914691236517206);
        assert_eq!(t[0][1], -4611686018427387904);
        assert_eq!(t[2][3], 7686143364045646506);
        let mut all: Vec<i64> = t.concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 12);
        let one = evenly_spaced(1, 4);
        assert_eq!(one[0], vec![i64::MIN, i64::MIN / 2, 0, i64::MAX / 2 + 1]);
    }

    #[test]
    fn ring_owner_is_the_next_token_wrapping() {
        let ring = Ring::new(&[vec![-100, 100], vec![0, 200]]);
        assert_eq!(ring.owner(-150), Some(0));
        assert_eq!(ring.owner(-100), Some(0));
        assert_eq!(ring.owner(-99), Some(1));
        assert_eq!(ring.owner(0), Some(1));
        assert_eq!(ring.owner(1), Some(0));
        assert_eq!(ring.owner(150), Some(1));
        assert_eq!(ring.owner(201), Some(0), "past the last token wraps");
        assert_eq!(ring.owner(i64::MAX), Some(0));
        assert_eq!(Ring::new(&[]).owner(5), None);
        // The interleaved ring of 3 nodes: each token range goes to the node after it.
        let tokens = evenly_spaced(3, 4);
        let ring = Ring::new(&tokens);
        assert_eq!(ring.owner(tokens[1][0]), Some(1));
        assert_eq!(ring.owner(tokens[1][0] - 1), Some(1));
        assert_eq!(ring.owner(tokens[1][0] + 1), Some(2));
        // token(int 1) lies between tokens 3 and 4 of 12: token 4 is node 1's second.
        let t = token(&1i32.to_be_bytes());
        assert!(tokens[0][1] < t && t <= tokens[1][1]);
        assert_eq!(ring.owner(t), Some(1));
    }
}
