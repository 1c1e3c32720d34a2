//! `#[cube]` code only: progressive top-p selection by ranking (the anchor op), top-k by radix
//! select (the key/value op), and a vectorised row gather. Launches live in [`super::launch`].

// `#[cube]` bodies are expanded into kernel IR: a comptime `if` cannot merge with a runtime one, and
// `usize::div_ceil` has no cube expansion.
#![allow(clippy::collapsible_if, clippy::manual_div_ceil)]

use cubecl::prelude::*;

/// Progressive, de-duplicated top-`per_round` selection, one cube per row.
///
/// For row `r` (a sample for the anchor op, a `(batch, head)` pair for top-k) and each round `h` in
/// `0..rounds`, the `per_round` best tokens of `scores[r, h, :]` that no earlier round chose are
/// added to the chosen set (token 0 starts chosen when `cls_first`). The chosen tokens are written
/// to `out[r, :]` ascending. Tie-break: among equal scores the larger token index ranks higher,
/// exactly like the reference twin (`crate::mask::topk_mask`).
///
/// A token's rank is the number of unchosen tokens that beat it, so a round costs
/// `tokens^2 / CUBE_DIM_X` shared-memory comparisons per unit and never depends on sort stability.
/// A round's picks go to `picked` and join `chosen` only after a barrier, so every rank in a round
/// is counted against the same chosen set.
///
/// `scores` `[rows, rounds, tokens]` and `out` `[rows, n_out]` are contiguous.
#[cube(launch)]
pub fn progressive_topk_kernel<F: Float, I: Numeric>(
    scores: &Tensor<F>,
    out: &mut Tensor<I>,
    rows: usize,
    rounds: usize,
    per_round: usize,
    #[comptime] tokens: usize,
    #[comptime] cls_first: bool,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let unit = UNIT_POS_X as usize;
    let stride = CUBE_DIM_X as usize;
    let n_out = out.shape(1);

    let mut row_scores = SharedMemory::<F>::new(tokens);
    let mut chosen = SharedMemory::<u32>::new(tokens);
    let mut picked = SharedMemory::<u32>::new(tokens);

    let mut t = unit;
    while t < tokens {
        chosen[t] = 0u32;
        t += stride;
    }
    if cls_first {
        if unit == 0 {
            chosen[0] = 1u32;
        }
    }

    for h in 0..rounds {
        let base = (row * rounds + h) * tokens;
        let mut t = unit;
        while t < tokens {
            row_scores[t] = scores[base + t];
            t += stride;
        }
        sync_cube();

        let mut t = unit;
        while t < tokens {
            let mut pick = 0u32;
            if chosen[t] == 0u32 {
                let mine = row_scores[t];
                let mut rank = 0usize;
                for u in 0..tokens {
                    let other = row_scores[u];
                    let beats = other > mine || (other == mine && u > t);
                    if chosen[u] == 0u32 && beats {
                        rank += 1;
                    }
                }
                if rank < per_round {
                    pick = 1u32;
                }
            }
            picked[t] = pick;
            t += stride;
        }
        sync_cube();
        let mut t = unit;
        while t < tokens {
            chosen[t] = chosen[t] | picked[t];
            t += stride;
        }
        sync_cube();
    }

    // Compaction: a chosen token's slot is the number of chosen tokens before it.
    let mut t = unit;
    while t < tokens {
        if chosen[t] == 1u32 {
            let mut slot = 0usize;
            for u in 0..t {
                if chosen[u] == 1u32 {
                    slot += 1;
                }
            }
            if slot < n_out {
                out[row * n_out + slot] = I::cast_from(t as u32);
            }
        }
        t += stride;
    }
}

/// Row gather: `out[r, m, :] = input[r, indices[r, m], :]`, one unit per output vector of `N`
/// elements (rows are contiguous, so every access is a full-width, coalesced load/store).
///
/// `input` `[rows, tokens, width / N]`, `indices` `[rows, m]`, `out` `[rows, m, width / N]`, contiguous.
#[cube(launch)]
pub fn gather_rows_kernel<E: Numeric, I: Numeric, N: Size>(
    input: &Tensor<Vector<E, N>>,
    indices: &Tensor<I>,
    out: &mut Tensor<Vector<E, N>>,
    tokens: usize,
    #[define(E, I)] _dtypes: [StorageType; 2],
) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    // Shapes count elements; indexing and `len` count vectors of `N`.
    let vectors = out.shape(2) / out.vector_size();
    let m = out.shape(1);
    let col = pos % vectors;
    let slot = pos / vectors; // r * m + j
    let row = slot / m;
    let token = usize::cast_from(indices[slot]);
    out[pos] = input[(row * tokens + token) * vectors + col];
}

/// Order-preserving u32 key of a score: larger score, larger key (`-0.0` counts as `+0.0`, like the
/// float comparisons of the reference twin; NaN is unsupported).
#[cube]
fn score_key<F: Float>(score: F) -> u32 {
    let x = f32::cast_from(score);
    let x = select(x == 0.0f32, 0.0f32, x);
    let bits = u32::reinterpret(x);
    let sign = bits & 0x8000_0000u32;
    select(sign != 0u32, !bits, bits | 0x8000_0000u32)
}

/// Units whose counts one group sum covers in the two-level sums of [`radix_topk_kernel`].
const GROUP: usize = 16;

/// Two-level sum of the per-unit counts `partial[base .. base + units]`, returned to every unit:
/// the first `units / GROUP` units sum a group each into `groups[group_base ..]`, then every unit
/// sums the group totals (broadcast reads). Call after the barrier that publishes `partial`.
#[cube]
fn sum_partials(partial: &SharedMemory<u32>, groups: &mut SharedMemory<u32>, base: usize, group_base: usize, unit: usize, units: usize) -> u32 {
    let n_groups = (units + GROUP - 1) / GROUP;
    if unit < n_groups {
        let start = unit * GROUP;
        let end = select(start + GROUP < units, start + GROUP, units);
        let mut sum = 0u32;
        for v in start..end {
            sum += partial[base + v];
        }
        groups[group_base + unit] = sum;
    }
    sync_cube();
    let mut total = 0u32;
    for g in 0..n_groups {
        total += groups[group_base + g];
    }
    total
}

/// Top-`k` per row by radix select, one cube per row: the `k` best tokens of `scores[r, :]` written
/// ascending to `out[r, :]`, ties to the larger index (as the reference twin).
///
/// The k-th largest key is found bit by bit from the top (32 passes; each counts, per unit, the
/// candidates whose next bit is 1 and sums the per-unit counts in two levels), so a row costs about
/// `32 * (tokens / units + 2 * 16)` steps per unit instead of the `tokens^2 / units` of ranking. Ties at
/// the k-th key are resolved and the survivors compacted over contiguous per-unit chunks with
/// prefix sums of per-unit counts.
///
/// `scores` `[rows, tokens]` and `out` `[rows, k]` are contiguous; `CUBE_DIM_X <= max_units`.
#[cube(launch)]
pub fn radix_topk_kernel<F: Float, I: Numeric>(
    scores: &Tensor<F>,
    out: &mut Tensor<I>,
    rows: usize,
    k: usize,
    #[comptime] tokens: usize,
    #[comptime] max_units: usize,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;

    let mut keys = SharedMemory::<u32>::new(tokens);
    let mut partial = SharedMemory::<u32>::new(2 * max_units);
    let mut groups = SharedMemory::<u32>::new(2 * max_units / GROUP);

    let mut t = unit;
    while t < tokens {
        keys[t] = score_key::<F>(scores[row * tokens + t]);
        t += units;
    }
    sync_cube();

    // Radix select: `prefix` grows into the k-th largest key; `need` ends as the number of tokens
    // equal to it that are kept (all larger keys were counted out on the way).
    let mut prefix = 0u32;
    let mut need = k as u32;
    for pass in 0..32u32 {
        let bit = 31u32 - pass;
        let candidate = prefix | (1u32 << bit);
        let top = candidate >> bit;
        let mut count = 0u32;
        let mut t = unit;
        while t < tokens {
            if (keys[t] >> bit) == top {
                count += 1u32;
            }
            t += units;
        }
        // Double-buffered: pass p + 1 writes the other halves while slow units still read these.
        let half = (pass % 2u32) as usize;
        partial[half * max_units + unit] = count;
        sync_cube();
        let total = sum_partials(&partial, &mut groups, half * max_units, half * (max_units / GROUP), unit, units);
        if total >= need {
            prefix = candidate;
        } else {
            need -= total;
        }
    }
    let kth = prefix;

    // Ties at the k-th key: keep the `need` with the largest indices. Unit u owns tokens
    // [u * chunk, (u + 1) * chunk); a suffix sum of per-unit tie counts gives each chunk its rank.
    let chunk = (tokens + units - 1) / units;
    let start = select(unit * chunk < tokens, unit * chunk, tokens);
    let end = select(start + chunk < tokens, start + chunk, tokens);
    let mut ties = 0u32;
    for t in start..end {
        if keys[t] == kth {
            ties += 1u32;
        }
    }
    // `partial` half 0 was last read in pass 30, before every unit reached pass 31's barriers.
    partial[unit] = ties;
    sync_cube();
    let mut after = 0u32;
    for v in (unit + 1)..units {
        after += partial[v];
    }
    // Walk the chunk from its end; keys[t] becomes the keep flag (only this unit touches its chunk).
    let mut i = end;
    while i > start {
        i -= 1;
        let key = keys[i];
        let mut keep = 0u32;
        if key > kth {
            keep = 1u32;
        }
        if key == kth {
            if after < need {
                keep = 1u32;
            }
            after += 1u32;
        }
        keys[i] = keep;
    }
    let mut kept = 0u32;
    for t in start..end {
        kept += keys[t];
    }
    partial[max_units + unit] = kept;
    sync_cube();
    let mut slot = 0u32;
    for v in 0..unit {
        slot += partial[max_units + v];
    }
    for t in start..end {
        if keys[t] == 1u32 {
            out[row * k + slot as usize] = I::cast_from(t as u32);
            slot += 1u32;
        }
    }
}
