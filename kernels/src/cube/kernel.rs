//! `#[cube]` code only: progressive top-p selection by radix select (the anchor op, and with one
//! round the key/value top-k) and a vectorised row gather. Launches live in [`super::launch`].

// `#[cube]` bodies are expanded into kernel IR: a comptime `if` cannot merge with a runtime one, and
// `usize::div_ceil` has no cube expansion; the helpers take the kernel's shared buffers and indices
// as arguments.
#![allow(clippy::collapsible_if, clippy::manual_div_ceil, clippy::too_many_arguments)]

use cubecl::prelude::*;

/// Units whose counts one group sum covers in the two-level sums of [`select_kernel`].
pub const GROUP: usize = 16;

/// Order-preserving u32 key of a score: larger score, larger key (`-0.0` counts as `+0.0`, like the
/// float comparisons of the reference twin; NaN is unsupported). Key 0 (a NaN pattern) is free and
/// marks tokens that may not be chosen.
#[cube]
fn score_key<F: Float>(score: F) -> u32 {
    let x = f32::cast_from(score);
    let x = select(x == 0.0f32, 0.0f32, x);
    let bits = u32::reinterpret(x);
    let sign = bits & 0x8000_0000u32;
    select(sign != 0u32, !bits, bits | 0x8000_0000u32)
}

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

/// One round's choice once the k-th largest key `kth` is known: every key above it, and of the keys
/// equal to it the `need` with the largest indices (suffix sums of the per-unit tie counts over
/// the units' contiguous chunks `[start, end)`). Uses `partial[0 .. units]`.
#[cube]
fn take_round(
    keys: &SharedMemory<u32>,
    chosen: &mut SharedMemory<u32>,
    partial: &mut SharedMemory<u32>,
    kth: u32,
    need: u32,
    start: usize,
    end: usize,
    unit: usize,
    units: usize,
) {
    let mut ties = 0u32;
    for t in start..end {
        if keys[t] == kth {
            ties += 1u32;
        }
    }
    partial[unit] = ties;
    sync_cube();
    let mut after = 0u32;
    for v in (unit + 1)..units {
        after += partial[v];
    }
    let mut i = end;
    while i > start {
        i -= 1;
        let key = keys[i];
        if key > kth {
            chosen[i] = 1u32;
        }
        if key == kth {
            if after < need {
                chosen[i] = 1u32;
            }
            after += 1u32;
        }
    }
}

/// Compaction: writes row `row`'s chosen tokens to `out[row, :]` ascending; a chosen token's slot
/// is the number of chosen tokens before it (prefix sums of the per-unit counts in
/// `partial[max_units ..]`).
#[cube]
fn write_chosen<I: Numeric>(
    chosen: &SharedMemory<u32>,
    partial: &mut SharedMemory<u32>,
    out: &mut Tensor<I>,
    row: usize,
    n_out: usize,
    start: usize,
    end: usize,
    unit: usize,
    max_units: usize,
) {
    let mut kept = 0u32;
    for t in start..end {
        kept += chosen[t];
    }
    partial[max_units + unit] = kept;
    sync_cube();
    let mut slot = 0u32;
    for v in 0..unit {
        slot += partial[max_units + v];
    }
    for t in start..end {
        if chosen[t] == 1u32 {
            if (slot as usize) < n_out {
                out[row * n_out + slot as usize] = I::cast_from(t as u32);
            }
            slot += 1u32;
        }
    }
}

/// Progressive, de-duplicated top-`per_round` selection, one cube per row.
///
/// For row `r` (a sample for the anchor op, a `(batch, head)` pair for top-k) and each round `h` in
/// `0..rounds`, the `per_round` best tokens of `scores[r, h, :]` that no earlier round chose join
/// the chosen set (token 0 starts chosen when `cls_first`); the chosen tokens are written to
/// `out[r, :]` ascending. Tie-break: among equal scores the larger token index wins, exactly like the
/// reference twin (`crate::mask::topk_mask`). AcFormer's growing window adds the same set.
///
/// A round is a radix select: scores become order-preserving u32 keys (chosen tokens key 0), the
/// k-th largest key is found bit by bit from the top (32 passes; each counts, per unit, the
/// candidates whose next bit is 1 and sums the per-unit counts in two levels), the keys above it are
/// taken, and of the keys equal to it the `need` with the largest indices (suffix sums of per-unit
/// tie counts over contiguous per-unit chunks). About `32 * (tokens / units + 2 * GROUP)` steps per
/// unit and round, and no sort.
///
/// `scores` `[rows, rounds, tokens]` and `out` `[rows, n_out]` are contiguous; `CUBE_DIM_X <= max_units`;
/// `per_round` never exceeds the tokens left unchosen (the callers check it).
#[cube(launch)]
pub fn select_kernel<F: Float, I: Numeric>(
    scores: &Tensor<F>,
    out: &mut Tensor<I>,
    rows: usize,
    rounds: usize,
    per_round: usize,
    #[comptime] tokens: usize,
    #[comptime] max_units: usize,
    #[comptime] cls_first: bool,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let n_out = out.shape(1);

    let mut keys = SharedMemory::<u32>::new(tokens);
    let mut chosen = SharedMemory::<u32>::new(tokens);
    let mut partial = SharedMemory::<u32>::new(2 * max_units);
    let mut groups = SharedMemory::<u32>::new(2 * max_units / GROUP);

    // Unit u owns tokens [start, end) for the tie and compaction walks.
    let chunk = (tokens + units - 1) / units;
    let start = select(unit * chunk < tokens, unit * chunk, tokens);
    let end = select(start + chunk < tokens, start + chunk, tokens);

    for t in start..end {
        chosen[t] = 0u32;
    }
    if cls_first {
        if unit == 0 {
            chosen[0] = 1u32;
        }
    }
    sync_cube();

    for h in 0..rounds {
        let base = (row * rounds + h) * tokens;
        let mut t = unit;
        while t < tokens {
            keys[t] = select(chosen[t] != 0u32, 0u32, score_key::<F>(scores[base + t]));
            t += units;
        }
        sync_cube();

        // `prefix` grows into the k-th largest key; `need` ends as the number of tokens equal to
        // it that are taken (all larger keys were counted out on the way).
        let mut prefix = 0u32;
        let mut need = per_round as u32;
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

        // `partial` half 0 was last read in pass 30, before every unit reached pass 31's barriers.
        take_round(&keys, &mut chosen, &mut partial, prefix, need, start, end, unit, units);
        // `keys`, `chosen` and `partial` half 0 are rewritten next round.
        sync_cube();
    }

    write_chosen(&chosen, &mut partial, out, row, n_out, start, end, unit, max_units);
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

