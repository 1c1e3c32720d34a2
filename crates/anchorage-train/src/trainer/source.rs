//! What the trainer reads: samples by index, ready for the model (ids, labels, pixels), or the
//! reason a sample is skipped.

use std::collections::BTreeMap;
use std::fmt;

/// One sample after templating, tokenisation and image preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: String,
    /// Token ids with LLaVA's `-200` image placeholder.
    pub input_ids: Vec<i64>,
    /// Labels, `-100` where not supervised.
    pub labels: Vec<i64>,
    /// `[3, S, S]` pixel values when the sample has an image.
    pub pixels: Option<Vec<f32>>,
}

/// Why a sample was skipped; counted by reason and reported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkipReason {
    /// Short machine name, e.g. `missing_image`, `corrupt_image`, `malformed`, `over_length`,
    /// `label_mismatch`.
    pub reason: String,
    /// Human detail (file, message).
    pub detail: String,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// A data set the trainer can index. Implementations must be deterministic: `get(i)` returns the
/// same sample every time, so a resumed run sees exactly what an uninterrupted one saw.
pub trait SampleSource: Send + Sync {
    /// Number of records.
    fn len(&self) -> usize;
    /// Whether there are no records.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The record at `index`, processed, or why it is skipped. `sample_id` names it in reports.
    fn get(&self, index: usize) -> Result<Sample, (String, SkipReason)>;
    /// LLaVA's modality lengths (word counts, negative for text-only) for the grouped sampler.
    fn modality_lengths(&self) -> Vec<i64>;
    /// Side of the square images.
    fn image_size(&self) -> usize;
}

/// Skipped samples: counts by reason and the first few ids of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkipLog {
    pub counts: BTreeMap<String, u64>,
    pub first_ids: BTreeMap<String, Vec<String>>,
}

impl SkipLog {
    /// Records a skip (every visit counts); returns true the first time a sample id is seen among
    /// the first `keep` distinct ids of its reason, i.e. when it should be logged.
    pub fn add(&mut self, id: &str, reason: &SkipReason, keep: usize) -> bool {
        *self.counts.entry(reason.reason.clone()).or_default() += 1;
        let ids = self.first_ids.entry(reason.reason.clone()).or_default();
        if ids.len() < keep && !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
            true
        } else {
            false
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}
