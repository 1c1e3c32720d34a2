//! anchorage-data's [`LlavaDataset`] as the trainer's [`SampleSource`].

use anchorage_data::{FaultReason, LlavaDataset};

use super::source::{Sample, SampleSource, SkipReason};

impl SampleSource for LlavaDataset {
    fn len(&self) -> usize {
        LlavaDataset::len(self)
    }

    fn get(&self, index: usize) -> Result<Sample, (String, SkipReason)> {
        let s = LlavaDataset::get(self, index)
            .map_err(|(id, f)| (id, SkipReason { reason: f.reason.name().to_string(), detail: f.detail }))?;
        if s.mismatch {
            // LLaVA keeps such a sample with every label ignored: it adds no loss and no gradient,
            // so skipping it trains the same and lets it be counted.
            let reason = SkipReason {
                reason: FaultReason::TokenizationMismatch.name().to_string(),
                detail: "label rounds do not add up; LLaVA ignores every label".into(),
            };
            return Err((s.id, reason));
        }
        Ok(Sample { id: s.id, input_ids: s.input_ids, labels: s.labels, pixels: s.pixels.map(|p| p.data) })
    }

    fn modality_lengths(&self) -> Vec<i64> {
        LlavaDataset::modality_lengths(self)
    }

    fn image_size(&self) -> usize {
        LlavaDataset::image_size(self)
    }
}
