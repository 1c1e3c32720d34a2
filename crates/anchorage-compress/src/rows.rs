//! Reading the head-mean attention rows the LLM seam hands a hook into per-sample image scores.

use anchorage_llm::{AttentionRows, SampleLayout, SeqLayout};
use burn::prelude::*;

use crate::error::CompressError;
use crate::rules::top_k;

/// Per sample, the sum over its requested rows of the attention each of `columns[b]` receives.
///
/// # Shapes
/// `rows.probs [batch, max_rows, padded_len]` -> `batch` score lists, `columns[b].len()` each
pub fn received_scores<B: Backend>(
    layout: &SeqLayout,
    rows: AttentionRows<B>,
    columns: &[Vec<usize>],
) -> Result<Vec<Vec<f64>>, CompressError> {
    let dims = rows.probs.dims();
    let batch = layout.samples.len();
    let row_counts_fit = rows.rows.iter().all(|r| r.len() <= dims[1]);
    if dims[0] != batch || dims[2] != layout.padded_len || rows.rows.len() != batch || columns.len() != batch || !row_counts_fit {
        return Err(CompressError::RowsShape {
            expected: format!("[{batch}, rows, {}] for {batch} samples", layout.padded_len),
            found: dims.to_vec(),
        });
    }
    let [_, max_rows, len] = dims;
    let data = rows.probs.into_data().convert::<f32>();
    let values = data.to_vec::<f32>().map_err(|e| CompressError::ReadRows { message: format!("{e:?}") })?;
    Ok((0..batch)
        .map(|b| {
            let count = rows.rows[b].len();
            columns[b]
                .iter()
                .map(|&c| {
                    (0..count)
                        .map(|r| values.get((b * max_rows + r) * len + c).copied().unwrap_or(0.0) as f64)
                        .sum()
                })
                .collect()
        })
        .collect())
}

/// The current indices of a sample's image tokens, and the count its ratio keeps of the
/// sample's *original* image-token count.
pub fn image_and_count(sample: &SampleLayout, ratio: f64) -> (Vec<usize>, usize) {
    let image = sample.image_positions();
    let k = crate::rules::keep_count(ratio, sample.image.len()).min(image.len());
    (image, k)
}

/// Current positions kept: every non-image position plus the `k` best-scored image positions.
pub fn keep_best(sample: &SampleLayout, image: &[usize], scores: &[f64], k: usize) -> Vec<usize> {
    let chosen: Vec<usize> = top_k(scores, k).into_iter().map(|i| image[i]).collect();
    crate::rules::merge_kept(sample.len(), image, &chosen)
}

/// A request row list that the seam accepts: `wanted`, or the last row when `wanted` is empty
/// (no row at all for a sample without real tokens).
pub fn rows_or_last(sample: &SampleLayout, wanted: Vec<usize>) -> Vec<usize> {
    if wanted.is_empty() {
        sample.len().checked_sub(1).into_iter().collect()
    } else {
        wanted
    }
}
