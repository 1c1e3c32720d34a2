//! What a [`LayerHooks`](crate::LayerHooks) method returns when it fails, and what the seam says
//! when a hook's request contradicts the current sequence. Either way the forward stops with
//! [`LlmError::Hook`](crate::LlmError::Hook): a compression that cannot run must not turn into an
//! uncompressed forward that looks like a compressed one.

use std::error::Error;

/// A hook failed, or asked for something the seam cannot do, at decoder layer `layer` (0-based).
/// `source` is the policy's own typed error (anchorage-llm does not know the policy crates), or a
/// [`BadRequest`] when the seam rejected the request.
#[derive(Debug, thiserror::Error)]
#[error("compression hook at layer {layer}{}: {source}", at_sample(.sample))]
pub struct HookError {
    pub layer: usize,
    /// The sample the problem is about, when it is about one.
    pub sample: Option<usize>,
    #[source]
    pub source: Box<dyn Error + Send + Sync + 'static>,
}

fn at_sample(sample: &Option<usize>) -> String {
    sample.map_or_else(String::new, |s| format!(", sample {s}"))
}

impl HookError {
    /// A failure at `layer` that concerns the batch as a whole.
    pub fn new(layer: usize, source: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self {
            layer,
            sample: None,
            source: source.into(),
        }
    }

    /// The same failure, naming the sample it is about.
    pub fn in_sample(mut self, sample: usize) -> Self {
        self.sample = Some(sample);
        self
    }
}

/// The seam's own objection to a [`LayerRequest`](crate::LayerRequest) or a keep list: which part
/// (`rows`, `kv keep`, `kv pool`, `after_layer keep`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {message}")]
pub struct BadRequest {
    pub what: &'static str,
    pub message: String,
}

impl BadRequest {
    /// The [`HookError`] for a bad request at `layer`.
    pub(crate) fn at(layer: usize, what: &'static str, message: String) -> HookError {
        HookError::new(layer, Self { what, message })
    }
}
