//! Collating samples into a padded batch of plain host buffers (the model crate makes tensors):
//! LLaVA's `DataCollatorForSupervisedDataset` (right padding with the pad id and -100, truncation
//! to `model_max_length`, `attention_mask = input_ids != pad_id`) plus the image stack, where
//! text-only samples get zeros as in LLaVA's `LazySupervisedDataset`.

use crate::dataset::Sample;
use crate::text::{IGNORE_INDEX, IMAGE_TOKEN_INDEX};

/// A padded micro-batch. Row-major buffers: `[batch, seq_len]` for tokens, `[batch, 3, S, S]` for
/// pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub ids: Vec<String>,
    pub batch: usize,
    pub seq_len: usize,
    /// `[batch, seq_len]`: pad id on padding, -200 where an image goes.
    pub input_ids: Vec<i64>,
    /// `[batch, seq_len]`: -100 where nothing is supervised (padding included).
    pub labels: Vec<i64>,
    /// `[batch, seq_len]`: `labels != -100`.
    pub label_mask: Vec<bool>,
    /// `[batch, seq_len]`: LLaVA's `input_ids != pad_id` (a genuine pad-id token is masked too).
    pub attention_mask: Vec<bool>,
    /// Side of the square images.
    pub image_size: usize,
    /// `[batch, 3, S, S]`, zeros for text-only samples.
    pub pixel_values: Vec<f32>,
    /// Whether each row has a real image.
    pub has_image: Vec<bool>,
    /// Per row, the positions of -200 in `input_ids`.
    pub image_positions: Vec<Vec<usize>>,
    /// Where to resume: the position in the epoch order after this batch's last sample.
    pub next_position: usize,
}

/// Pads and stacks `samples`.
///
/// # Shapes
/// `B × ([L_b] ids, [L_b] labels, [3, S, S]?)` -> `[B, max L_b]` ×4, `[B, 3, S, S]`
pub fn collate(samples: &[Sample], pad_id: i64, image_size: usize, max_len: usize, next_position: usize) -> Batch {
    let b = samples.len();
    let seq_len = samples.iter().map(|s| s.input_ids.len().min(max_len)).max().unwrap_or(0);
    let mut input_ids = vec![pad_id; b * seq_len];
    let mut labels = vec![IGNORE_INDEX; b * seq_len];
    let plane = 3 * image_size * image_size;
    let mut pixel_values = vec![0f32; b * plane];
    let mut has_image = Vec::with_capacity(b);
    let mut image_positions = Vec::with_capacity(b);
    for (r, s) in samples.iter().enumerate() {
        let n = s.input_ids.len().min(seq_len);
        input_ids[r * seq_len..r * seq_len + n].copy_from_slice(&s.input_ids[..n]);
        let nl = s.labels.len().min(seq_len);
        labels[r * seq_len..r * seq_len + nl].copy_from_slice(&s.labels[..nl]);
        image_positions.push(
            s.input_ids[..n].iter().enumerate().filter(|(_, &t)| t == IMAGE_TOKEN_INDEX).map(|(i, _)| i).collect(),
        );
        match &s.pixels {
            Some(p) if p.size == image_size => {
                pixel_values[r * plane..(r + 1) * plane].copy_from_slice(&p.data);
                has_image.push(true);
            }
            _ => has_image.push(false),
        }
    }
    let label_mask = labels.iter().map(|&l| l != IGNORE_INDEX).collect();
    let attention_mask = input_ids.iter().map(|&t| t != pad_id).collect();
    Batch {
        ids: samples.iter().map(|s| s.id.clone()).collect(),
        batch: b,
        seq_len,
        input_ids,
        labels,
        label_mask,
        attention_mask,
        image_size,
        pixel_values,
        has_image,
        image_positions,
        next_position,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PixelValues;

    fn sample(id: &str, ids: &[i64], labels: &[i64], px: Option<f32>) -> Sample {
        Sample {
            id: id.into(),
            input_ids: ids.to_vec(),
            labels: labels.to_vec(),
            pixels: px.map(|v| PixelValues { size: 2, data: vec![v; 12] }),
            mismatch: false,
        }
    }

    #[test]
    fn pads_right_masks_and_zero_images_for_text_only() {
        let s = [
            sample("a", &[1, -200, 5, 6], &[-100, -100, 5, 6], Some(0.5)),
            sample("b", &[1, 7], &[-100, 7], None),
        ];
        let b = collate(&s, 0, 2, 2048, 9);
        assert_eq!((b.batch, b.seq_len), (2, 4));
        assert_eq!(b.input_ids, vec![1, -200, 5, 6, 1, 7, 0, 0]);
        assert_eq!(b.labels, vec![-100, -100, 5, 6, -100, 7, -100, -100]);
        assert_eq!(b.label_mask, vec![false, false, true, true, false, true, false, false]);
        assert_eq!(b.attention_mask, vec![true, true, true, true, true, true, false, false]);
        assert_eq!(b.image_positions, vec![vec![1], vec![]]);
        assert_eq!(b.has_image, vec![true, false]);
        assert!(b.pixel_values[..12].iter().all(|&v| v == 0.5));
        assert!(b.pixel_values[12..].iter().all(|&v| v == 0.0));
        assert_eq!(b.next_position, 9);
        let t = collate(&s, 0, 2, 3, 9);
        assert_eq!(t.seq_len, 3);
        assert_eq!(t.input_ids, vec![1, -200, 5, 1, 7, 0]);
    }
}
