//! `#[cube]` code only: progressive top-p selection (the anchor op and plain top-k share it) and a
//! vectorised row gather. Launches live in [`super::launch`].

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
