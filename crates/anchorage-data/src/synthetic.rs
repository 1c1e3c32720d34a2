//! A synthetic caption data set for benchmarks (`train bench step`): every sample is `<s> <image>`
//! followed by `text_len` supervised caption tokens, with a deterministic pseudo-random image, so
//! a training step can be timed at any model size without data files or a tokenizer.

use crate::dataset::Sample;
use crate::image::PixelValues;
use crate::source::{SampleResult, SampleSource};
use crate::text::{IGNORE_INDEX, IMAGE_TOKEN_INDEX};

/// `len` samples of the same shape.
#[derive(Debug, Clone)]
pub struct SyntheticSource {
    pub len: usize,
    /// Caption tokens per sample (all supervised).
    pub text_len: usize,
    /// Caption ids are drawn from `3..vocab` (0 pad, 1 BOS, 2 EOS).
    pub vocab: usize,
    /// Side of the square images.
    pub image_size: usize,
}

/// SplitMix64's output function: a tiny, well-mixed deterministic hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SampleSource for SyntheticSource {
    fn len(&self) -> usize {
        self.len
    }

    fn load(&self, index: usize) -> SampleResult {
        let seed = (index as u64) << 32;
        let span = self.vocab.saturating_sub(3).max(1) as u64;
        let caption: Vec<i64> = (0..self.text_len as u64).map(|j| 3 + (mix(seed + j) % span) as i64).collect();
        let mut input_ids = vec![1, IMAGE_TOKEN_INDEX];
        input_ids.extend(&caption);
        let mut labels = vec![IGNORE_INDEX; 2];
        labels.extend(&caption);
        let data = (0..3 * self.image_size * self.image_size)
            .map(|p| (mix(seed ^ 0xABCD_0000_0000 ^ p as u64) >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect();
        let pixels = Some(PixelValues { size: self.image_size, data });
        Ok(Sample { id: format!("synthetic-{index}"), input_ids, labels, pixels, anyres: None, mismatch: false })
    }

    fn modality_lengths(&self) -> Vec<i64> {
        vec![self.text_len as i64; self.len]
    }

    fn image_size(&self) -> usize {
        self.image_size
    }

    fn pad_id(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_deterministic_supervised_captions_after_one_image() {
        let s = SyntheticSource { len: 4, text_len: 5, vocab: 100, image_size: 8 };
        let a = s.load(2).unwrap();
        assert_eq!(a, s.load(2).unwrap());
        assert_ne!(a.input_ids, s.load(3).unwrap().input_ids);
        assert_eq!(a.input_ids.len(), 7);
        assert_eq!(&a.input_ids[..2], &[1, IMAGE_TOKEN_INDEX]);
        assert!(a.input_ids[2..].iter().all(|&t| (3..100).contains(&t)));
        assert_eq!(&a.labels[2..], &a.input_ids[2..]);
        let px = a.pixels.unwrap();
        assert_eq!(px.data.len(), 3 * 64);
        assert!(px.data.iter().all(|v| (-1.0..1.0).contains(v)));
    }
}
