//! The causal language-model loss over supervised tokens, with an explicit mask.

use burn::tensor::{activation::log_softmax, backend::Backend, Int, Tensor, TensorData};

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
    // The logits are the "hidden states" of an identity head.
    let vocab = logits.dims()[2];
    causal_lm_loss_from_hidden(logits, vocab, |rows| rows, labels, mask)
}

/// The positions whose logits [`causal_lm_loss`] counts, as rows of the flattened `[batch * len]`
/// hidden states, and the label each predicts (the next position's).
fn supervised_rows(batch: usize, len: usize, vocab: usize, labels: &[i64], mask: &[bool]) -> (Vec<i64>, Vec<i64>) {
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for b in 0..batch {
        for t in 1..len {
            let i = b * len + t;
            if mask[i] && labels[i] >= 0 && (labels[i] as usize) < vocab {
                rows.push((i - 1) as i64);
                targets.push(labels[i]);
            }
        }
    }
    (rows, targets)
}

/// [`causal_lm_loss`] from the (normed) hidden states, with the output `head` (`[n, hidden]` →
/// `[n, vocab]`) applied to the supervised positions only. The terms are the same; the logits
/// and the log-softmax of every unsupervised position (most of a LLaVA sequence: the prompt, the
/// image tokens, the padding) are never computed, forward or backward.
///
/// # Shapes
/// `hidden` `[batch, len, hidden]`, `labels` and `mask` `[batch * len]` row-major → a scalar sum.
pub fn causal_lm_loss_from_hidden<B: Backend>(
    hidden: Tensor<B, 3>,
    vocab: usize,
    head: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
    labels: &[i64],
    mask: &[bool],
) -> Result<LossParts<B>, ModelError> {
    let [batch, len, width] = hidden.dims();
    if labels.len() != batch * len || mask.len() != batch * len {
        return Err(ModelError::Shape { what: "labels", expected: vec![batch * len], found: vec![labels.len(), mask.len()] });
    }
    let (rows, targets) = supervised_rows(batch, len, vocab, labels, mask);
    let count = rows.len();
    if count == 0 {
        return Ok(LossParts { sum: hidden.sum().reshape([1]) * 0.0, count: 0 });
    }
    let device = hidden.device();
    let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [count]), &device);
    let logits = head(hidden.reshape([batch * len, width]).select(0, rows));
    let [_, got] = logits.dims();
    if got != vocab {
        return Err(ModelError::Shape { what: "head output", expected: vec![count, vocab], found: vec![count, got] });
    }
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [count, 1]), &device);
    let sum = log_softmax(logits, 1).gather(1, targets).sum().neg();
    Ok(LossParts { sum, count })
}
