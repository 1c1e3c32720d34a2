use std::path::PathBuf;

use anchorage_data::{Aspect, Template};
use serde::{Deserialize, Serialize};

/// `[data]`: which data set, how its records become tokens and pixels, and how faults are handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A manifest under `data-manifests/`.
    pub manifest: PathBuf,
    /// Local folder holding the manifest's files; defaults to the manifest's own `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Conversation template; defaults to the manifest's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// Aspect mode; defaults to the manifest's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect: Option<Aspect>,
    /// Maximum sequence length in tokens, before and after splicing the image tokens.
    #[serde(default = "max_len")]
    pub max_length: usize,
    /// Threads decoding and preprocessing images.
    #[serde(default = "workers")]
    pub workers: usize,
    /// Stop at the first bad sample instead of skipping and counting it.
    #[serde(default)]
    pub strict: bool,
    /// LLaVA's modality-length-grouped sampler (`--group_by_modality_length`).
    #[serde(default)]
    pub group_by_modality_length: bool,
    /// How many skipped samples of each reason are logged by id.
    #[serde(default = "log_skipped")]
    pub log_skipped: usize,
}

fn max_len() -> usize {
    2048
}
fn workers() -> usize {
    4
}
fn log_skipped() -> usize {
    10
}
