//! The keyed hash behind every draw of `assign` (defined in docs/assignment-algorithm.md).
//!
//! There is no random stream: every random choice is the order of MD5 digests of short UTF-8
//! texts built from the seed, so that Rust, any SQL engine, or a reader with the design record
//! can recompute it.
//!
//! * Unit key: `MD5("{seed}:{id}")`, seed in unsigned decimal, id in its canonical text (the
//!   text written to the outputs: integers in plain decimal, text as is, UUIDs lowercase).
//!   Digests are compared as 128-bit big-endian integers, which is the order of their
//!   lowercase hex strings; ties (never seen in practice) go by participant id.
//! * Mask key: `MD5("mask:{seed}:{label}:{position}")`, orders the positions of one block mask
//!   (`label` = the stratum id, or `global` for the pooled leftovers).
//! * Pool key: `MD5("pool:{seed}:{id}")`, orders the pooled leftovers of misfit strategy
//!   `global` (a fresh key: the unit keys of leftovers are the largest of their stratum).
//!
//! The texts of different purposes cannot coincide: unit keys start with a digit, the others
//! with a word. Hashing reuses one buffer per thread; nothing is allocated per unit.

use std::cmp::Ordering;
use std::io::Write;

use md5::{Digest, Md5};

use super::data::Ids;

/// MD5 of `bytes` as a 128-bit big-endian integer (the order of its lowercase hex).
pub fn md5_u128(bytes: &[u8]) -> u128 {
    let d: [u8; 16] = Md5::digest(bytes).into();
    u128::from_be_bytes(d)
}

/// MD5 of up to [`LANES`] short messages at once (each at most [`SHORT`] bytes), with the same
/// digests as [`md5_u128`]. MD5 is a chain of 64 dependent steps, so one message leaves most of
/// a core idle; eight independent ones side by side keep its execution units busy (the
/// compiler emits scalar code here, not vector instructions): about 2.5x the throughput of one
/// `Md5::digest` per message (`perf`, 5M unit keys). Only the first `n` lanes are used.
mod lanes {
    /// Messages hashed side by side.
    pub const LANES: usize = 8;
    /// The longest message that fits one 64-byte block with MD5's padding.
    pub const SHORT: usize = 55;

    type Lanes = [u32; LANES];

    /// MD5's per-step additive constants (RFC 1321, 3.4).
    const K: [u32; 64] = [
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391,
    ];
    const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

    /// One step in every lane: `a = b + ((a + f(b, c, d) + m + k) <<< s)`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn step(
        f: impl Fn(u32, u32, u32) -> u32,
        a: &mut Lanes,
        b: &Lanes,
        c: &Lanes,
        d: &Lanes,
        m: &Lanes,
        k: u32,
        s: u32,
    ) {
        for l in 0..LANES {
            a[l] = f(b[l], c[l], d[l])
                .wrapping_add(a[l])
                .wrapping_add(m[l])
                .wrapping_add(k)
                .rotate_left(s)
                .wrapping_add(b[l]);
        }
    }

    /// A block buffer: `len[i]` bytes of message i (at most [`SHORT`]) at `block[i]`.
    pub struct Batch {
        pub block: [[u8; 64]; LANES],
        pub len: [usize; LANES],
    }

    impl Batch {
        pub fn new() -> Batch {
            Batch {
                block: [[0; 64]; LANES],
                len: [0; LANES],
            }
        }

        /// The digests of the first `n` messages as 128-bit big-endian integers.
        pub fn digests(&mut self, n: usize) -> [u128; LANES] {
            // Padding: 0x80, zeros, the bit length (little-endian) in the last 8 bytes.
            for i in 0..LANES {
                let len = if i < n { self.len[i] } else { 0 };
                let b = &mut self.block[i];
                b[len] = 0x80;
                b[len + 1..56].fill(0);
                b[56..].copy_from_slice(&(len as u64 * 8).to_le_bytes());
            }
            let mut w = [[0u32; LANES]; 16];
            for (l, b) in self.block.iter().enumerate() {
                for (j, word) in w.iter_mut().enumerate() {
                    word[l] =
                        u32::from_le_bytes([b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]]);
                }
            }
            let (mut a, mut b, mut c, mut d) = (
                [INIT[0]; LANES],
                [INIT[1]; LANES],
                [INIT[2]; LANES],
                [INIT[3]; LANES],
            );
            let f = |x: u32, y: u32, z: u32| (x & y) | (!x & z);
            for i in (0..16).step_by(4) {
                step(f, &mut a, &b, &c, &d, &w[i], K[i], 7);
                step(f, &mut d, &a, &b, &c, &w[i + 1], K[i + 1], 12);
                step(f, &mut c, &d, &a, &b, &w[i + 2], K[i + 2], 17);
                step(f, &mut b, &c, &d, &a, &w[i + 3], K[i + 3], 22);
            }
            let g = |x: u32, y: u32, z: u32| (x & z) | (y & !z);
            let m = |i: usize| (5 * i + 1) % 16;
            for i in (16..32).step_by(4) {
                step(g, &mut a, &b, &c, &d, &w[m(i)], K[i], 5);
                step(g, &mut d, &a, &b, &c, &w[m(i + 1)], K[i + 1], 9);
                step(g, &mut c, &d, &a, &b, &w[m(i + 2)], K[i + 2], 14);
                step(g, &mut b, &c, &d, &a, &w[m(i + 3)], K[i + 3], 20);
            }
            let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
            let m = |i: usize| (3 * i + 5) % 16;
            for i in (32..48).step_by(4) {
                step(h, &mut a, &b, &c, &d, &w[m(i)], K[i], 4);
                step(h, &mut d, &a, &b, &c, &w[m(i + 1)], K[i + 1], 11);
                step(h, &mut c, &d, &a, &b, &w[m(i + 2)], K[i + 2], 16);
                step(h, &mut b, &c, &d, &a, &w[m(i + 3)], K[i + 3], 23);
            }
            let ii = |x: u32, y: u32, z: u32| y ^ (x | !z);
            let m = |i: usize| (7 * i) % 16;
            for i in (48..64).step_by(4) {
                step(ii, &mut a, &b, &c, &d, &w[m(i)], K[i], 6);
                step(ii, &mut d, &a, &b, &c, &w[m(i + 1)], K[i + 1], 10);
                step(ii, &mut c, &d, &a, &b, &w[m(i + 2)], K[i + 2], 15);
                step(ii, &mut b, &c, &d, &a, &w[m(i + 3)], K[i + 3], 21);
            }
            // The digest is the state words in little-endian order; read big-endian.
            std::array::from_fn(|l| {
                let word = |x: u32, y: u32| u128::from(x.wrapping_add(y).swap_bytes());
                word(a[l], INIT[0]) << 96
                    | word(b[l], INIT[1]) << 64
                    | word(c[l], INIT[2]) << 32
                    | word(d[l], INIT[3])
            })
        }
    }
}

/// Call `emit(row, MD5("{prefix}{id}"))` for every row in `rows`, in order, hashing short
/// texts [`lanes::LANES`] at a time (longer ones one by one, with the same result).
pub fn hash_rows(
    prefix: &[u8],
    ids: &Ids,
    rows: impl Iterator<Item = usize>,
    mut emit: impl FnMut(usize, u128),
) {
    use lanes::{Batch, LANES, SHORT};
    let mut batch = Batch::new();
    let mut pending = [0usize; LANES];
    let mut n = 0;
    let mut text = Vec::with_capacity(128);
    text.extend_from_slice(prefix);
    for row in rows {
        text.truncate(prefix.len());
        ids.write_text(row, &mut text);
        if text.len() > SHORT {
            // Keep the order of `emit` calls: flush the batch first.
            for (l, k) in batch.digests(n).into_iter().take(n).enumerate() {
                emit(pending[l], k);
            }
            n = 0;
            emit(row, md5_u128(&text));
            continue;
        }
        batch.block[n][..text.len()].copy_from_slice(&text);
        batch.len[n] = text.len();
        pending[n] = row;
        n += 1;
        if n == LANES {
            for (l, k) in batch.digests(n).into_iter().enumerate() {
                emit(pending[l], k);
            }
            n = 0;
        }
    }
    if n > 0 {
        for (l, k) in batch.digests(n).into_iter().take(n).enumerate() {
            emit(pending[l], k);
        }
    }
}

/// A 128-bit key as 32 lowercase hex digits (the text form of every key).
pub fn hex128(k: u128) -> String {
    format!("{k:032x}")
}

/// Builds `"{prefix}{id}{suffix}"` texts in one reused buffer and hashes them.
pub struct Keyer {
    buf: Vec<u8>,
    prefix: usize,
}

impl Keyer {
    /// Unit keys `MD5("{seed}:{id}")`.
    pub fn unit(seed: u64) -> Keyer {
        Keyer::with_prefix(format!("{seed}:").as_bytes())
    }

    /// Pool keys `MD5("pool:{seed}:{id}")`.
    pub fn pool(seed: u64) -> Keyer {
        Keyer::with_prefix(format!("pool:{seed}:").as_bytes())
    }

    fn with_prefix(prefix: &[u8]) -> Keyer {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(prefix);
        Keyer {
            buf,
            prefix: prefix.len(),
        }
    }

    /// The key of row `row`.
    pub fn key(&mut self, ids: &Ids, row: usize) -> u128 {
        self.buf.truncate(self.prefix);
        ids.write_text(row, &mut self.buf);
        md5_u128(&self.buf)
    }
}

/// Threads used to hash millions of ids (the machine's cores, at most 8).
fn threads(n: usize) -> usize {
    if n < 50_000 {
        return 1;
    }
    std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// The sort key of every row, the high 64 bits of its unit key (rows with equal sort keys are
/// ordered by [`tie_break`]), and the sum of the full unit keys modulo 2^128 (the input
/// fingerprint's `unit_key_sum`). Hashed in parallel chunks of rows in row order, so that the
/// ids are read sequentially.
pub fn unit_keys(ids: &Ids, seed: u64) -> (Vec<u64>, u128) {
    let n = ids.len();
    let mut keys = vec![0u64; n];
    let chunk = n.div_ceil(threads(n)).max(1);
    let sum = std::thread::scope(|sc| {
        let handles: Vec<_> = keys
            .chunks_mut(chunk)
            .enumerate()
            .map(|(c, part)| {
                sc.spawn(move || {
                    let prefix = format!("{seed}:");
                    let base = c * chunk;
                    let mut sum = 0u128;
                    hash_rows(
                        prefix.as_bytes(),
                        ids,
                        base..base + part.len(),
                        |row, key| {
                            part[row - base] = (key >> 64) as u64;
                            sum = sum.wrapping_add(key);
                        },
                    );
                    sum
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("hashing thread panicked"))
            .fold(0u128, u128::wrapping_add)
    });
    (keys, sum)
}

/// The order of two rows with equal 64-bit sort keys: full unit keys, then participant ids.
pub fn tie_break(ids: &Ids, seed: u64, a: usize, b: usize) -> Ordering {
    let mut k = Keyer::unit(seed);
    let (ka, kb) = (k.key(ids, a), k.key(ids, b));
    ka.cmp(&kb).then_with(|| ids.cmp_rows(a, b))
}

/// Sort `(sort key, row)` pairs into unit-key order (ties by id, see [`tie_break`]).
pub fn sort_pairs(pairs: &mut [(u64, u32)], ids: &Ids, seed: u64) {
    // By sort key only: rows with equal sort keys are put in their exact order by `fix_ties`.
    pairs.sort_unstable_by_key(|p| p.0);
    fix_ties(pairs, ids, seed);
}

/// Sort each group `pairs[bounds[g]..bounds[g + 1]]` into unit-key order ([`sort_pairs`]),
/// the groups shared among threads in contiguous runs of about equal size.
pub fn sort_groups(pairs: &mut [(u64, u32)], bounds: &[usize], ids: &Ids, seed: u64) {
    let n = pairs.len();
    let t = threads(n);
    // Cut into at most t runs at group boundaries (`bounds` starts at 0 and ends at n).
    let mut cuts = vec![0usize];
    for &b in bounds {
        let last = *cuts.last().unwrap_or(&0);
        if cuts.len() < t && b > last && b >= cuts.len() * n / t {
            cuts.push(b);
        }
    }
    if cuts.last() != Some(&n) {
        cuts.push(n);
    }
    std::thread::scope(|sc| {
        let mut rest = pairs;
        let mut done = 0usize;
        for w in cuts.windows(2) {
            let (part, tail) = rest.split_at_mut(w[1] - done);
            rest = tail;
            let base = done;
            done = w[1];
            let groups: Vec<(usize, usize)> = bounds
                .windows(2)
                .filter(|g| g[0] >= w[0] && g[1] <= w[1])
                .map(|g| (g[0] - base, g[1] - base))
                .collect();
            sc.spawn(move || {
                for (a, b) in groups {
                    sort_pairs(&mut part[a..b], ids, seed);
                }
            });
        }
    });
}

/// Re-sort the runs of equal 64-bit sort keys by the exact rule.
fn fix_ties(pairs: &mut [(u64, u32)], ids: &Ids, seed: u64) {
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i + 1;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        if j - i > 1 {
            pairs[i..j].sort_by(|x, y| tie_break(ids, seed, x.1 as usize, y.1 as usize));
        }
        i = j;
    }
}

/// The rows with the `k` smallest unit keys (ties by id), in row order.
pub fn smallest(ids: &Ids, seed: u64, k: usize) -> Vec<u32> {
    let (keys, _) = unit_keys(ids, seed);
    let mut pairs: Vec<(u64, u32)> = keys
        .into_iter()
        .enumerate()
        .map(|(r, k)| (k, r as u32))
        .collect();
    if k < pairs.len() && k > 0 {
        pairs.select_nth_unstable(k - 1);
        // Rows sharing the k-th sort key may straddle the cut: order them exactly.
        let kth = pairs[k - 1].0;
        let (head, tail) = pairs.split_at_mut(k);
        if tail.iter().any(|p| p.0 == kth) {
            let mut tied: Vec<(u64, u32)> = head
                .iter()
                .chain(tail.iter())
                .filter(|p| p.0 == kth)
                .copied()
                .collect();
            fix_ties(&mut tied, ids, seed);
            let keep_tied = head.iter().filter(|p| p.0 == kth).count();
            let mut rows: Vec<u32> = head.iter().filter(|p| p.0 != kth).map(|p| p.1).collect();
            rows.extend(tied[..keep_tied].iter().map(|p| p.1));
            rows.sort_unstable();
            return rows;
        }
    }
    pairs.truncate(k);
    let mut rows: Vec<u32> = pairs.into_iter().map(|p| p.1).collect();
    rows.sort_unstable();
    rows
}

/// The positions `0..l` of a block mask in mask-key order: `MD5("mask:{seed}:{label}:{p}")`,
/// ties by position. The first r entries are a uniformly random draw without replacement.
pub fn mask_order(seed: u64, label: &str, l: usize) -> Vec<u32> {
    let mut buf = Vec::with_capacity(64);
    let _ = write!(buf, "mask:{seed}:{label}:");
    let prefix = buf.len();
    let mut keyed: Vec<(u128, u32)> = (0..l as u32)
        .map(|p| {
            buf.truncate(prefix);
            let _ = write!(buf, "{p}");
            (md5_u128(&buf), p)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|x| x.1).collect()
}

/// A fresh seed from the operating system's entropy (for runs without `--seed`).
pub fn fresh_seed() -> u64 {
    rand::random::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_known_answers() {
        // RFC 1321 appendix A.5 test suite.
        assert_eq!(hex128(md5_u128(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex128(md5_u128(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex128(md5_u128(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn lanes_hash_like_md5_at_every_length_and_batch_size() {
        // Texts of 0..=80 bytes (one block up to 55, then the one-by-one path), in batches that
        // fill all lanes, some of them, or are cut by a long text.
        let texts: Vec<String> = (0..=80)
            .map(|n| {
                (0..n)
                    .map(|i| char::from(b'a' + (i * 7 + n) as u8 % 26))
                    .collect()
            })
            .collect();
        let ids = Ids::Text {
            values: texts.clone(),
            numeric: false,
        };
        for prefix in [&b""[..], b"7:", b"pool:18446744073709551615:"] {
            for take in [1, 3, 8, 9, 17, 81] {
                let mut got = Vec::new();
                hash_rows(prefix, &ids, (0..take).rev(), |r, k| got.push((r, k)));
                let want: Vec<(usize, u128)> = (0..take)
                    .rev()
                    .map(|r| {
                        let mut t = prefix.to_vec();
                        t.extend_from_slice(texts[r].as_bytes());
                        (r, md5_u128(&t))
                    })
                    .collect();
                assert_eq!(got, want, "prefix {prefix:?}, {take} rows");
            }
        }
    }

    #[test]
    fn unit_key_hashes_seed_colon_id_text() {
        let ids = Ids::Int(vec![-7, 12]);
        let mut k = Keyer::unit(42);
        assert_eq!(k.key(&ids, 0), md5_u128(b"42:-7"));
        assert_eq!(k.key(&ids, 1), md5_u128(b"42:12"));
        let text = Ids::from_strings(vec!["Ab-9".into()]);
        assert_eq!(Keyer::unit(u64::MAX).key(&text, 0), {
            md5_u128(format!("{}:Ab-9", u64::MAX).as_bytes())
        });
        assert_eq!(Keyer::pool(3).key(&ids, 1), md5_u128(b"pool:3:12"));
    }

    #[test]
    fn u128_order_is_hex_order() {
        let ids = Ids::Int((0..200).collect());
        let mut k = Keyer::unit(5);
        let keys: Vec<u128> = (0..200).map(|r| k.key(&ids, r)).collect();
        let mut by_int = keys.clone();
        by_int.sort();
        let mut by_hex: Vec<String> = keys.iter().map(|k| hex128(*k)).collect();
        by_hex.sort();
        assert_eq!(
            by_int.iter().map(|k| hex128(*k)).collect::<Vec<_>>(),
            by_hex
        );
    }

    #[test]
    fn parallel_sort_keys_equal_serial_ones() {
        let ids = Ids::Int((0..120_000).map(|i| i * 7 - 3).collect());
        let (keys, sum) = unit_keys(&ids, 9);
        let mut k = Keyer::unit(9);
        for r in [0, 1, 59_999, 60_000, 119_999] {
            assert_eq!(keys[r], (k.key(&ids, r) >> 64) as u64);
        }
        let serial = (0..ids.len()).fold(0u128, |a, r| a.wrapping_add(k.key(&ids, r)));
        assert_eq!(sum, serial);
        let mut pairs: Vec<(u64, u32)> = (0..ids.len() as u32)
            .rev()
            .map(|r| (keys[r as usize], r))
            .collect();
        // Groups sorted each on its own, whichever thread sorts them.
        let bounds = [0, 1, 5, 70_000, 70_001, 119_000, 120_000];
        sort_groups(&mut pairs, &bounds, &ids, 9);
        for g in bounds.windows(2) {
            let part = &pairs[g[0]..g[1]];
            assert!(part.windows(2).all(|w| w[0] < w[1]), "group {g:?}");
            let mut rows: Vec<u32> = part.iter().map(|p| p.1).collect();
            rows.sort();
            let want: Vec<u32> = (g[0]..g[1])
                .map(|i| (ids.len() - 1 - i) as u32)
                .rev()
                .collect();
            assert_eq!(rows, want);
        }
    }

    #[test]
    fn equal_sort_keys_fall_back_to_full_keys_then_ids() {
        let ids = Ids::Int(vec![10, 11, 12]);
        let mut k = Keyer::unit(1);
        let full: Vec<u128> = (0..3).map(|r| k.key(&ids, r)).collect();
        // Pretend all three share their high 64 bits.
        let mut pairs = vec![(7u64, 2u32), (7, 0), (7, 1)];
        sort_pairs(&mut pairs, &ids, 1);
        let mut expect: Vec<u32> = vec![0, 1, 2];
        expect.sort_by_key(|r| full[*r as usize]);
        assert_eq!(pairs.iter().map(|p| p.1).collect::<Vec<_>>(), expect);
        assert_eq!(tie_break(&ids, 1, 1, 1), Ordering::Equal);
    }

    #[test]
    fn smallest_takes_the_lowest_keys() {
        let ids = Ids::from_strings((0..500).map(|i| format!("u{i}")).collect());
        let mut k = Keyer::unit(77);
        let mut all: Vec<(u128, u32)> = (0..500).map(|r| (k.key(&ids, r), r as u32)).collect();
        all.sort();
        for take in [1, 2, 250, 499, 500] {
            let mut want: Vec<u32> = all[..take].iter().map(|x| x.1).collect();
            want.sort();
            assert_eq!(smallest(&ids, 77, take), want, "k = {take}");
        }
    }

    #[test]
    fn mask_order_is_a_keyed_permutation() {
        let o = mask_order(42, "3", 10);
        let mut s = o.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        let key = |p: u32| md5_u128(format!("mask:42:3:{p}").as_bytes());
        assert!(o.windows(2).all(|w| key(w[0]) < key(w[1])));
        assert_ne!(o, mask_order(42, "4", 10));
        assert_ne!(o, mask_order(43, "3", 10));
    }

    #[test]
    fn sample_inclusion_frequency_is_k_over_n() {
        // 20 units, samples of 5 over 4000 fixed seeds: each unit is drawn with probability
        // 1/4; chi-square (1 df) per unit at 1e-4.
        use statrs::distribution::{ChiSquared, ContinuousCDF};
        let ids = Ids::Int((0..20).map(|i| i * 1_000_003).collect());
        let mut freq = [0u64; 20];
        for seed in 0..4000 {
            for r in smallest(&ids, seed, 5) {
                freq[r as usize] += 1;
            }
        }
        for (u, &f) in freq.iter().enumerate() {
            let (e_in, e_out) = (1000.0, 3000.0);
            let x2 = (f as f64 - e_in).powi(2) / e_in + ((4000 - f) as f64 - e_out).powi(2) / e_out;
            let p = 1.0 - ChiSquared::new(1.0).unwrap().cdf(x2);
            assert!(p > 1e-4, "unit {u}: {f} of 4000, p = {p}");
        }
    }
}
