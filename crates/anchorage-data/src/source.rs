//! What a training step reads: a data set indexed by position, each index either a [`Sample`]
//! ready for the model or [`Skipped`] with the fault that makes it unusable.

use crate::dataset::{LlavaDataset, Sample};
use crate::{FaultReason, SampleFault};

/// A sample that cannot be used: its id (or `#index`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub id: String,
    pub fault: SampleFault,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sample {}: {}", self.id, self.fault)
    }
}

/// A sample ready for the model, or why it is skipped.
pub type SampleResult = Result<Sample, Skipped>;

/// A data set the step loader can index. Implementations must be deterministic: `load(i)` returns
/// the same sample every time, so a resumed run sees exactly what an uninterrupted one saw.
pub trait SampleSource: Send + Sync {
    /// Number of records.
    fn len(&self) -> usize;
    /// Whether there are no records.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The record at `index`, processed, or why it is skipped.
    fn load(&self, index: usize) -> SampleResult;
    /// LLaVA's modality lengths (word counts, negative for text-only) for the grouped sampler.
    fn modality_lengths(&self) -> Vec<i64>;
    /// Side of the square images.
    fn image_size(&self) -> usize;
    /// Token id for padding and for the placeholder slots before embedding.
    fn pad_id(&self) -> i64;
}

impl SampleSource for LlavaDataset {
    fn len(&self) -> usize {
        LlavaDataset::len(self)
    }

    fn load(&self, index: usize) -> SampleResult {
        let s = self.get(index).map_err(|(id, fault)| Skipped { id, fault })?;
        if s.mismatch {
            // LLaVA keeps such a sample with every label ignored: it adds no loss and no gradient,
            // so skipping it trains the same and lets it be counted.
            let detail = "label rounds do not add up; LLaVA ignores every label";
            return Err(Skipped { id: s.id, fault: SampleFault::new(FaultReason::TokenizationMismatch, detail) });
        }
        Ok(s)
    }

    fn modality_lengths(&self) -> Vec<i64> {
        LlavaDataset::modality_lengths(self)
    }

    fn image_size(&self) -> usize {
        LlavaDataset::image_size(self)
    }

    fn pad_id(&self) -> i64 {
        LlavaDataset::pad_id(self)
    }
}
