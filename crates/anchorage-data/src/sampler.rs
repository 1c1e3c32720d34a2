//! Sampling orders, deterministic from (seed, epoch): a uniform shuffle (the HF Trainer's default
//! `RandomSampler`) and LLaVA's modality-length-grouped order (`--group_by_modality_length`),
//! ported from haotian-liu/LLaVA `llava/train/llava_trainer.py` (`split_to_even_chunks`,
//! `get_length_grouped_indices`, `get_modality_length_grouped_indices`) with our RNG in place of
//! torch's global generator.

use crate::rng::SplitMix64;

/// How an epoch's order is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// A uniform permutation.
    Random,
    /// LLaVA's modality-length grouping: every global batch is image-only or text-only (except the
    /// last, mixed one), and within a megabatch devices get similar total lengths.
    ModalityLengthGrouped,
}

/// The order of sample indices for one epoch.
///
/// `lengths` are LLaVA's modality lengths (positive with an image, negative text-only; see
/// [`crate::text::Record::modality_length`]); `batch_size` is the per-device micro-batch and
/// `world` is devices × gradient accumulation, as LLaVA passes them.
pub fn epoch_order(kind: SamplerKind, lengths: &[i64], batch_size: usize, world: usize, seed: u64, epoch: u64) -> Vec<usize> {
    match kind {
        SamplerKind::Random => SplitMix64::for_epoch(seed, epoch, 0).permutation(lengths.len()),
        SamplerKind::ModalityLengthGrouped => {
            modality_length_grouped(lengths, batch_size.max(1), world.max(1), seed, epoch)
        }
    }
}

/// `split_to_even_chunks`: deal indices (sorted longest first) to `k` chunks, each to the chunk
/// with the smallest total so far (first on ties); a full chunk takes no more. When the count does
/// not divide, deal round-robin instead.
pub fn split_to_even_chunks(indices: &[usize], lengths: &[i64], k: usize) -> Vec<Vec<usize>> {
    if indices.len() % k != 0 {
        return (0..k).map(|c| indices.iter().skip(c).step_by(k).copied().collect()).collect();
    }
    let per = indices.len() / k;
    let mut chunks = vec![Vec::with_capacity(per); k];
    // `None` is Python's float("inf"): a full chunk.
    let mut totals: Vec<Option<i64>> = vec![Some(0); k];
    for &i in indices {
        let mut best = 0;
        for c in 1..k {
            let better = match (totals[c], totals[best]) {
                (Some(a), Some(b)) => a < b,
                (Some(_), None) => true,
                _ => false,
            };
            if better {
                best = c;
            }
        }
        chunks[best].push(i);
        totals[best] = totals[best].map(|t| t + lengths[i]);
        if chunks[best].len() == per {
            totals[best] = None;
        }
    }
    chunks
}

/// `get_length_grouped_indices`: shuffle, cut into megabatches of `world * batch_size`, sort
/// each longest first (stable), split each into `world` even chunks, flatten.
pub fn length_grouped(lengths: &[i64], batch_size: usize, world: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let perm = rng.permutation(lengths.len());
    length_grouped_from(&perm, lengths, batch_size, world)
}

/// [`length_grouped`] with the shuffle given (`torch.randperm`'s result in LLaVA).
pub fn length_grouped_from(perm: &[usize], lengths: &[i64], batch_size: usize, world: usize) -> Vec<usize> {
    let mega = world * batch_size;
    let mut out = Vec::with_capacity(lengths.len());
    for mb in perm.chunks(mega) {
        let mut mb = mb.to_vec();
        mb.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
        for chunk in split_to_even_chunks(&mb, lengths, world) {
            out.extend(chunk);
        }
    }
    out
}

/// `get_modality_length_grouped_indices`, with our seeded streams as its three `randperm` calls.
fn modality_length_grouped(lengths: &[i64], batch_size: usize, world: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut calls = 0u64;
    let mut perm = |n: usize| {
        calls += 1;
        SplitMix64::for_epoch(seed, epoch, calls).permutation(n)
    };
    modality_length_grouped_with(lengths, batch_size, world, &mut perm)
}

/// `get_modality_length_grouped_indices` with its permutations supplied by `perm(n)`, called in
/// LLaVA's order: the image group's shuffle, the text group's, then the megabatch order (or once,
/// when every sample has the same modality).
pub fn modality_length_grouped_with(
    lengths: &[i64],
    batch_size: usize,
    world: usize,
    perm: &mut dyn FnMut(usize) -> Vec<usize>,
) -> Vec<usize> {
    let all_pos = lengths.iter().all(|&l| l > 0);
    let all_neg = lengths.iter().all(|&l| l < 0);
    if all_pos || all_neg {
        // As LLaVA does, the signed lengths: an all-text set sorts shortest first.
        return length_grouped_from(&perm(lengths.len()), lengths, batch_size, world);
    }
    // LLaVA asserts non-zero lengths; a zero (an empty record) joins the image group here.
    let (mm_idx, mm_len): (Vec<usize>, Vec<i64>) =
        lengths.iter().enumerate().filter(|(_, &l)| l >= 0).map(|(i, &l)| (i, l)).unzip();
    let (lang_idx, lang_len): (Vec<usize>, Vec<i64>) =
        lengths.iter().enumerate().filter(|(_, &l)| l < 0).map(|(i, &l)| (i, -l)).unzip();
    let mm: Vec<usize> = length_grouped_from(&perm(mm_len.len()), &mm_len, batch_size, world)
        .into_iter()
        .map(|i| mm_idx[i])
        .collect();
    let lang: Vec<usize> = length_grouped_from(&perm(lang_len.len()), &lang_len, batch_size, world)
        .into_iter()
        .map(|i| lang_idx[i])
        .collect();
    let mega = world * batch_size;
    let mm_mb: Vec<&[usize]> = mm.chunks(mega).collect();
    let lang_mb: Vec<&[usize]> = lang.chunks(mega).collect();
    let mut additional: Vec<usize> = Vec::new();
    additional.extend_from_slice(mm_mb.last().copied().unwrap_or(&[]));
    additional.extend_from_slice(lang_mb.last().copied().unwrap_or(&[]));
    let mut megabatches: Vec<&[usize]> = Vec::new();
    megabatches.extend_from_slice(&mm_mb[..mm_mb.len().saturating_sub(1)]);
    megabatches.extend_from_slice(&lang_mb[..lang_mb.len().saturating_sub(1)]);
    let order = perm(megabatches.len());
    let mut out = Vec::with_capacity(lengths.len());
    for p in order {
        out.extend_from_slice(megabatches[p]);
    }
    additional.sort_unstable();
    out.extend(additional);
    out
}

/// The indices one rank reads from a global order: consecutive blocks of `batch_size` go to ranks
/// `0, 1, ..., world_size - 1` in turn (accelerate's batch sharding of LLaVA's sampler).
pub fn rank_indices(order: &[usize], batch_size: usize, rank: usize, world_size: usize) -> Vec<usize> {
    order
        .chunks(batch_size.max(1))
        .enumerate()
        .filter(|(b, _)| b % world_size.max(1) == rank)
        .flat_map(|(_, c)| c.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(n_mm: usize, n_lang: usize) -> Vec<i64> {
        let mut v: Vec<i64> = (0..n_mm).map(|i| 5 + (i as i64 * 7) % 50).collect();
        v.extend((0..n_lang).map(|i| -(3 + (i as i64 * 11) % 80)));
        v
    }

    #[test]
    fn even_chunks_follow_llava() {
        // Sorted longest first: 10, 9, 1, 1 into 2 chunks of 2.
        let lens = [10i64, 9, 1, 1];
        assert_eq!(split_to_even_chunks(&[0, 1, 2, 3], &lens, 2), vec![vec![0, 3], vec![1, 2]]);
        // Not divisible: round-robin.
        assert_eq!(split_to_even_chunks(&[0, 1, 2], &lens, 2), vec![vec![0, 2], vec![1]]);
    }

    #[test]
    fn grouped_order_is_a_permutation_with_single_modality_megabatches() {
        let lens = lengths(37, 29);
        let (batch, world) = (4, 2);
        let order = epoch_order(SamplerKind::ModalityLengthGrouped, &lens, batch, world, 7, 0);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..lens.len()).collect::<Vec<_>>());
        let mega = batch * world;
        let full = (37 / mega) + (29 / mega);
        for mb in order.chunks(mega).take(full) {
            let mm = mb.iter().filter(|&&i| lens[i] > 0).count();
            assert!(mm == 0 || mm == mb.len(), "mixed megabatch {mb:?}");
        }
        // The last megabatch is the two remainders, sorted by index.
        let tail = &order[full * mega..];
        assert_eq!(tail.len(), 37 % mega + 29 % mega);
        assert!(tail.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn within_a_megabatch_each_device_chunk_is_longest_first_balanced() {
        let lens: Vec<i64> = (1..=16).collect();
        let order = epoch_order(SamplerKind::ModalityLengthGrouped, &lens, 4, 2, 1, 0);
        for mb in order.chunks(8) {
            let (a, b) = mb.split_at(4);
            let sa: i64 = a.iter().map(|&i| lens[i]).sum();
            let sb: i64 = b.iter().map(|&i| lens[i]).sum();
            assert!((sa - sb).abs() <= 16, "{sa} vs {sb}");
            assert!(a.windows(2).all(|w| lens[w[0]] >= lens[w[1]]));
        }
    }

    #[test]
    fn order_is_deterministic_per_seed_and_epoch() {
        let lens = lengths(20, 20);
        let a = epoch_order(SamplerKind::ModalityLengthGrouped, &lens, 2, 2, 3, 5);
        assert_eq!(a, epoch_order(SamplerKind::ModalityLengthGrouped, &lens, 2, 2, 3, 5));
        assert_ne!(a, epoch_order(SamplerKind::ModalityLengthGrouped, &lens, 2, 2, 3, 6));
        let r = epoch_order(SamplerKind::Random, &lens, 2, 2, 3, 5);
        assert_eq!(r, epoch_order(SamplerKind::Random, &lens, 2, 2, 3, 5));
    }

    #[test]
    fn ranks_take_alternate_blocks() {
        let order: Vec<usize> = (0..10).collect();
        assert_eq!(rank_indices(&order, 2, 0, 2), vec![0, 1, 4, 5, 8, 9]);
        assert_eq!(rank_indices(&order, 2, 1, 2), vec![2, 3, 6, 7]);
    }
}
