//! A small seeded RNG (SplitMix64) for sampling orders: deterministic across platforms and
//! independent of any global state, so an epoch's order is a pure function of (seed, epoch).

/// SplitMix64 (Steele, Lea, Flood 2014): one u64 of state, full period, good enough for shuffles.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A stream for `(seed, epoch, stream)`: distinct streams for distinct triples.
    pub fn for_epoch(seed: u64, epoch: u64, stream: u64) -> Self {
        let mut r = Self::new(seed ^ 0x9E37_79B9_7F4A_7C15);
        let a = r.next_u64() ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut r = Self::new(a);
        Self::new(r.next_u64() ^ stream.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift with rejection; `n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        loop {
            let x = self.next_u64();
            let m = (x as u128) * (n as u128);
            let low = m as u64;
            if low >= n || low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// A uniformly random permutation of `0..n` (Fisher-Yates), like `torch.randperm(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations_and_depend_on_seed_and_epoch() {
        let a = SplitMix64::for_epoch(1, 0, 0).permutation(100);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, SplitMix64::for_epoch(1, 0, 0).permutation(100));
        assert_ne!(a, SplitMix64::for_epoch(1, 1, 0).permutation(100));
        assert_ne!(a, SplitMix64::for_epoch(2, 0, 0).permutation(100));
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut r = SplitMix64::new(3);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            counts[r.below(5) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
