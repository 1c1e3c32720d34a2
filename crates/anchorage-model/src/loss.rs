//! The causal language-model loss over supervised tokens, with an explicit mask.

use burn::tensor::{activation::log_softmax, backend::Backend, Bool, Int, Tensor, TensorData};

use crate::ModelError;

/// The summed loss and the number of supervised tokens it covers, so the caller chooses the
/// mean: per micro-batch (`sum / count`, LLaVA/transformers) or over the global batch.
#[derive(Debug, Clone)]
pub struct LossParts<B: Backend> {
    pub sum: Tensor<B, 1>,
    pub count: usize,
}

impl<B: Backend> LossParts<B> {
    /// The token mean; 0 (still connected to the graph) when no token is supervised.
    pub fn mean(self) -> Tensor<B, 1> {
        self.sum / (self.count.max(1) as f32)
    }
}

/// Next-token cross entropy: the logits at position t predict the label at t + 1 (transformers'
/// shift), summed over the positions whose (shifted) label mask is true.
///
/// # Shapes
/// `logits` `[batch, len, vocab]`, `labels` and `mask` `[batch * len]` row-major → a scalar sum.
pub fn causal_lm_loss<B: Backend>(
    logits: Tensor<B, 3>,
    labels: &[i64],
    mask: &[bool],
) -> Result<LossParts<B>, ModelError> {
    let [batch, len, vocab] = logits.dims();
    if labels.len() != batch * len || mask.len() != batch * len {
        return Err(ModelError::Shape { what: "labels", expected: vec![batch * len], found: vec![labels.len(), mask.len()] });
    }
    let device = logits.device();
    if len < 2 {
        return Ok(LossParts { sum: logits.sum().reshape([1]) * 0.0, count: 0 });
    }
    let n = len - 1;
    let mut targets = Vec::with_capacity(batch * n);
    let mut keep = Vec::with_capacity(batch * n);
    for b in 0..batch {
        for t in 1..len {
            let i = b * len + t;
            let on = mask[i] && labels[i] >= 0 && (labels[i] as usize) < vocab;
            targets.push(if on { labels[i] } else { 0 });
            keep.push(on);
        }
    }
    let count = keep.iter().filter(|&&k| k).count();
    let logp = log_softmax(logits.slice([0..batch, 0..n, 0..vocab]), 2);
    let targets = Tensor::<B, 3, Int>::from_data(TensorData::new(targets, [batch, n, 1]), &device);
    let picked = logp.gather(2, targets).reshape([batch, n]);
    let keep = Tensor::<B, 2, Bool>::from_data(TensorData::new(keep, [batch, n]), &device);
    let sum = picked.mask_fill(keep.bool_not(), 0.0).sum().neg();
    Ok(LossParts { sum, count })
}
