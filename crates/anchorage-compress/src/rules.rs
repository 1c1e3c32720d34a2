//! The token-scoring rules of FastV and HiMAP on plain head-mean attention maps, the keep count, and
//! the top-k selection with its tie-break. Standard library only, so the `train inspect prune`
//! command can use this very file (see `src/cli/inspect/prune.rs`).
//!
//! Every rule scores an image token by the attention it *receives*: the sum, over a set of query
//! rows, of the head-mean attention probability in the token's column.
//!
//! - last-token: the row of the last token (FastV's released code,
//!   pkunlp-icler/FastV `src/transformers/src/transformers/models/llama/modeling_llama.py`);
//! - text-to-image: every row after the image (HiMAP's shallow rule,
//!   ustc-hyin/HiMAP `src/LLaVA/llava/model/language_model/himap.py`);
//! - image-to-image: the rows of the image tokens themselves (HiMAP's deep rule, same file);
//! - average-received: every row of the sequence (FastV paper's rule as described secondarily; the
//!   sum ranks like the mean).
//!
//! Tie-break: the upstream code uses `torch.topk`, whose order among equal scores is unspecified.
//! Here scores sort descending and equal scores keep the lower position first; NaN ranks lowest.

use std::cmp::Ordering;
use std::ops::Range;

/// Which query rows score the image tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreRule {
    /// The last token's row (FastV, released code).
    LastToken,
    /// Every row after the image (HiMAP shallow).
    TextToImage,
    /// The image rows (HiMAP deep).
    ImageToImage,
    /// Every row (FastV paper).
    AverageReceived,
}

impl ScoreRule {
    /// The query rows this rule sums over, for a sequence of `len` tokens whose image tokens sit at
    /// the sorted positions `image`. An empty answer means the rule has no rows (for example
    /// text-to-image with the image at the end); callers then fall back to the last row.
    pub fn query_rows(self, len: usize, image: &[usize]) -> Vec<usize> {
        match self {
            Self::LastToken => len.checked_sub(1).into_iter().collect(),
            Self::TextToImage => match image.last() {
                Some(&end) => (end + 1..len).collect(),
                None => Vec::new(),
            },
            Self::ImageToImage => image.to_vec(),
            Self::AverageReceived => (0..len).collect(),
        }
    }
}

/// The number of image tokens a ratio keeps: `round(ratio * count)` with Python's `round` (half to
/// even, as FastV's `round(N_img * (1 - r))`), clamped to `0..=count`.
pub fn keep_count(ratio: f64, count: usize) -> usize {
    let x = ratio * count as f64;
    let floor = x.floor();
    let frac = x - floor;
    let rounded = if frac == 0.5 {
        if floor % 2.0 == 0.0 {
            floor
        } else {
            floor + 1.0
        }
    } else {
        x.round()
    };
    if rounded <= 0.0 {
        0
    } else {
        (rounded as usize).min(count)
    }
}

/// Head mean of one sample's attention `[heads, len, len]` (row-major) into `[len, len]`, in f64.
/// Returns `None` when `probs.len() != heads * len * len`.
pub fn head_mean(probs: &[f32], heads: usize, len: usize) -> Option<Vec<f64>> {
    if heads == 0 || probs.len() != heads * len * len {
        return None;
    }
    let mut out = vec![0.0f64; len * len];
    for h in 0..heads {
        for (o, &p) in out.iter_mut().zip(&probs[h * len * len..(h + 1) * len * len]) {
            *o += p as f64;
        }
    }
    for o in &mut out {
        *o /= heads as f64;
    }
    Some(out)
}

/// Scores of the `columns` as the sum over `rows` of `map[row * len + column]` (`map` is
/// `[len, len]`). Out-of-range entries count as 0.
pub fn column_scores(map: &[f64], len: usize, rows: &[usize], columns: &[usize]) -> Vec<f64> {
    columns
        .iter()
        .map(|&c| rows.iter().map(|&r| if r < len && c < len { map.get(r * len + c).copied().unwrap_or(0.0) } else { 0.0 }).sum())
        .collect()
}

/// Indices (into `scores`) of the `k` best scores, returned in increasing index order. Ties keep
/// the lower index; NaN ranks below everything.
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let key = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { v };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| match key(scores[b]).partial_cmp(&key(scores[a])) {
        Some(Ordering::Equal) | None => a.cmp(&b),
        Some(o) => o,
    });
    order.truncate(k.min(scores.len()));
    order.sort_unstable();
    order
}

/// One whole selection on a full `[len, len]` head-mean map: the sorted positions kept, i.e. every
/// position outside `image` plus the `keep` best image positions under `rule`. Used by
/// `train inspect prune` and the golden tests.
pub fn prune_positions(map: &[f64], len: usize, image: Range<usize>, rule: ScoreRule, keep: usize) -> Vec<usize> {
    let image: Vec<usize> = image.filter(|&p| p < len).collect();
    let mut rows = rule.query_rows(len, &image);
    if rows.is_empty() {
        rows = len.checked_sub(1).into_iter().collect();
    }
    let scores = column_scores(map, len, &rows, &image);
    let chosen: Vec<usize> = top_k(&scores, keep).into_iter().map(|i| image[i]).collect();
    merge_kept(len, &image, &chosen)
}

/// All positions `0..len` that are not in `image`, plus `chosen`, sorted.
pub fn merge_kept(len: usize, image: &[usize], chosen: &[usize]) -> Vec<usize> {
    (0..len)
        .filter(|p| image.binary_search(p).is_err() || chosen.binary_search(p).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_count_rounds_half_to_even_like_python() {
        assert_eq!(keep_count(0.5, 5), 2);
        assert_eq!(keep_count(0.5, 7), 4);
        assert_eq!(keep_count(0.5, 576), 288);
        assert_eq!(keep_count(0.125, 576), 72);
        assert_eq!(keep_count(0.3, 10), 3);
        assert_eq!(keep_count(0.36, 10), 4);
        assert_eq!(keep_count(1.0, 9), 9);
        assert_eq!(keep_count(0.01, 9), 0);
    }

    #[test]
    fn top_k_breaks_ties_by_lower_index_and_sinks_nan() {
        let scores = [0.5, f64::NAN, 0.9, 0.5, 0.1, 0.9];
        assert_eq!(top_k(&scores, 3), vec![0, 2, 5]);
        assert_eq!(top_k(&scores, 4), vec![0, 2, 3, 5]);
        assert_eq!(top_k(&scores, 10).len(), 6);
        assert_eq!(top_k(&scores, 0), Vec::<usize>::new());
    }

    #[test]
    fn rules_pick_their_rows() {
        let image = [2, 3, 4];
        assert_eq!(ScoreRule::LastToken.query_rows(7, &image), vec![6]);
        assert_eq!(ScoreRule::TextToImage.query_rows(7, &image), vec![5, 6]);
        assert_eq!(ScoreRule::ImageToImage.query_rows(7, &image), vec![2, 3, 4]);
        assert_eq!(ScoreRule::AverageReceived.query_rows(3, &image), vec![0, 1, 2]);
        assert!(ScoreRule::TextToImage.query_rows(5, &image).is_empty());
    }

    #[test]
    fn prune_keeps_text_and_best_image_columns() {
        // 5 tokens, image at 1..4; the last row prefers column 3, then 1.
        let len = 5;
        let mut map = vec![0.0; len * len];
        map[4 * len + 1] = 0.3;
        map[4 * len + 2] = 0.1;
        map[4 * len + 3] = 0.6;
        assert_eq!(prune_positions(&map, len, 1..4, ScoreRule::LastToken, 2), vec![0, 1, 3, 4]);
        assert_eq!(prune_positions(&map, len, 1..4, ScoreRule::LastToken, 0), vec![0, 4]);
        let mean = head_mean(&[1.0, 3.0, 0.0, 0.0, 3.0, 1.0, 0.0, 0.0], 2, 2).unwrap();
        assert_eq!(mean, vec![2.0, 2.0, 0.0, 0.0]);
        assert!(head_mean(&[1.0], 2, 2).is_none());
    }
}
