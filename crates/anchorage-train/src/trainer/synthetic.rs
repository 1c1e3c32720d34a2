//! A synthetic caption data set for benchmarks (`train bench step`): every sample is `<s> <image>`
//! followed by `text_len` supervised caption tokens, with a deterministic pseudo-random image, so
//! a training step can be timed at any model size without data files or a tokenizer.

use super::source::{Sample, SampleSource, SkipReason};

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

/// SplitMix64: a tiny, well-mixed deterministic generator.
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

    fn get(&self, index: usize) -> Result<Sample, (String, SkipReason)> {
        let seed = (index as u64) << 32;
        let span = self.vocab.saturating_sub(3).max(1) as u64;
        let caption: Vec<i64> = (0..self.text_len as u64).map(|j| 3 + (mix(seed + j) % span) as i64).collect();
        let mut input_ids = vec![1, anchorage_model::IMAGE_TOKEN_INDEX];
        input_ids.extend(&caption);
        let mut labels = vec![anchorage_model::IGNORE_INDEX; 2];
        labels.extend(&caption);
        let pixels = (0..3 * self.image_size * self.image_size)
            .map(|p| (mix(seed ^ 0xABCD_0000_0000 ^ p as u64) >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect();
        Ok(Sample { id: format!("synthetic-{index}"), input_ids, labels, pixels: Some(pixels) })
    }

    fn modality_lengths(&self) -> Vec<i64> {
        vec![self.text_len as i64; self.len]
    }

    fn image_size(&self) -> usize {
        self.image_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_deterministic_supervised_captions_after_one_image() {
        let s = SyntheticSource { len: 4, text_len: 5, vocab: 100, image_size: 8 };
        let a = s.get(2).unwrap();
        assert_eq!(a, s.get(2).unwrap());
        assert_ne!(a.input_ids, s.get(3).unwrap().input_ids);
        assert_eq!(a.input_ids.len(), 7);
        assert_eq!(&a.input_ids[..2], &[1, anchorage_model::IMAGE_TOKEN_INDEX]);
        assert!(a.input_ids[2..].iter().all(|&t| (3..100).contains(&t)));
        assert_eq!(&a.labels[2..], &a.input_ids[2..]);
        let px = a.pixels.unwrap();
        assert_eq!(px.len(), 3 * 64);
        assert!(px.iter().all(|v| (-1.0..1.0).contains(v)));
    }
}
