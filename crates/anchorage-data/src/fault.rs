//! Why a sample cannot be used. Training skips such samples (counting them by reason and logging
//! the first ids) unless the recipe asks for strict mode; `train data check` lists them.

use serde::{Deserialize, Serialize};

/// The reasons a sample is skipped, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultReason {
    /// The referenced image file does not exist.
    MissingImage,
    /// The image exists but does not decode (truncated, not an image, unsupported format).
    CorruptImage,
    /// The image path is absolute or climbs out of the image root.
    BadImagePath,
    /// No conversations, an unknown role, roles out of order, `plain` with other than two turns
    /// or without `<image>` in the first.
    Malformed,
    /// Longer than the model's maximum length (after splicing the image tokens).
    OverLength,
    /// LLaVA's "tokenization mismatch": the label rounds do not add up; LLaVA ignores every
    /// label of such a sample.
    TokenizationMismatch,
}

impl FaultReason {
    pub const ALL: [FaultReason; 6] = [
        FaultReason::MissingImage,
        FaultReason::CorruptImage,
        FaultReason::BadImagePath,
        FaultReason::Malformed,
        FaultReason::OverLength,
        FaultReason::TokenizationMismatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultReason::MissingImage => "missing_image",
            FaultReason::CorruptImage => "corrupt_image",
            FaultReason::BadImagePath => "bad_image_path",
            FaultReason::Malformed => "malformed",
            FaultReason::OverLength => "over_length",
            FaultReason::TokenizationMismatch => "tokenization_mismatch",
        }
    }
}

/// A sample that cannot be used, with a message for the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleFault {
    pub reason: FaultReason,
    pub detail: String,
}

impl SampleFault {
    pub fn new(reason: FaultReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for SampleFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.name(), self.detail)
    }
}
