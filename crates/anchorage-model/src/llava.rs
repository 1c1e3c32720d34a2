//! One training forward of the LLaVA-style model: the frozen vision tower (no autodiff, only up to
//! the select layer) → the connector → the splice into the text embeddings → the LLM with the
//! recipe's compression hooks → the masked causal-LM loss.

use anchorage_connectors::Connector;
use anchorage_llm::{LayerHooks, Llm, LlmInput};
use anchorage_vision::{select_features, ClipVisionModel, FeatureSelect, VisionRequest};
use burn::tensor::{backend::AutodiffBackend, Bool, FloatDType, Int, Tensor, TensorData};

use crate::{causal_lm_loss, splice_embeddings, LossParts, ModelError, SpliceInput, SplicePlan};

/// How image features are taken from the vision tower (LLaVA's `mm_vision_select_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionSelect {
    /// transformers `hidden_states` index, negative from the end (LLaVA: -2).
    pub layer: i64,
    pub feature: FeatureSelect,
    /// 0-based encoder layer whose CLS attention row the connector needs (AcFormer: the layer
    /// that produces the selected hidden state), or `None`.
    pub cls_attention_layer: Option<usize>,
}

impl VisionSelect {
    /// LLaVA/AcFormer conventions: the CLS attention comes from the layer whose output is the
    /// selected hidden state (`hidden_states[i]` is the output of 0-based layer `i - 1`).
    pub fn new<B: burn::tensor::backend::Backend>(
        vision: &ClipVisionModel<B>,
        layer: i64,
        feature: FeatureSelect,
        needs_cls_attention: bool,
    ) -> Result<Self, ModelError> {
        let hidden_index = vision.resolve_select_layer(layer)?;
        let cls_attention_layer = match (needs_cls_attention, hidden_index) {
            (false, _) => None,
            (true, 0) => {
                return Err(ModelError::Shape { what: "select layer with CLS attention (must be ≥ 1)", expected: vec![1], found: vec![0] })
            }
            (true, i) => Some(i - 1),
        };
        Ok(Self { layer, feature, cls_attention_layer })
    }
}

/// Image features for the connector, computed without autodiff and lifted into the training graph.
///
/// # Shapes
/// `pixels [images, 3, S, S]` → `features [images, T or T-1, d_vision]`, `cls_attention Option<[images, heads, T]>`
pub fn encode_images<B: AutodiffBackend>(
    vision: &ClipVisionModel<B::InnerBackend>,
    select: &VisionSelect,
    pixels: Tensor<B::InnerBackend, 4>,
) -> Result<(Tensor<B, 3>, Option<Tensor<B, 3>>), ModelError> {
    let mut request = VisionRequest::select(select.layer);
    if let Some(layer) = select.cls_attention_layer {
        request = request.with_cls_attention(layer);
    }
    let out = vision.forward(pixels, &request)?;
    // The tower may compute in bf16/f16; the trainable connector keeps f32 weights and inputs.
    let features = select_features(out.selected, select.feature).cast(FloatDType::F32);
    let cls = out.cls_attention.into_iter().next().map(|(_, a)| Tensor::from_inner(a.cast(FloatDType::F32)));
    Ok((Tensor::from_inner(features), cls))
}

/// A micro-batch as the model sees it: token ids with placeholders and labels per sample, which
/// image each placeholder uses, and the images.
#[derive(Debug, Clone)]
pub struct MicroBatch<'a> {
    pub samples: Vec<SpliceInput<'a>>,
    /// Maximum length after splicing.
    pub max_len: usize,
    /// Id used for padding and placeholder slots before embedding.
    pub pad_id: i64,
}

/// The result of one forward: the loss parts and the batch's token counts for throughput.
pub struct ForwardOutput<B: AutodiffBackend> {
    pub loss: LossParts<B>,
    /// Real tokens after splicing (sum over samples).
    pub tokens: usize,
}

/// Connector → splice → LLM → loss for one micro-batch whose image features are already encoded.
pub fn forward_loss<B: AutodiffBackend>(
    connector: &Connector<B>,
    llm: &Llm<B>,
    batch: &MicroBatch<'_>,
    features: Tensor<B, 3>,
    cls_attention: Option<Tensor<B, 3>>,
    hooks: &mut dyn LayerHooks<B>,
) -> Result<ForwardOutput<B>, ModelError> {
    let device = features.device();
    let num_images = features.dims()[0];
    let image_features = connector.forward(features, cls_attention)?;
    let image_tokens = image_features.dims()[1];
    let plan = SplicePlan::new(&batch.samples, image_tokens, num_images, batch.max_len, batch.pad_id)?;
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(plan.text_ids.clone(), [plan.batch, plan.text_len]), &device);
    let text_embeds = llm.embed(ids);
    // Image tokens enter the LLM in its own dtype (bf16 towers), as LLaVA casts them.
    let image_features = image_features.cast(text_embeds.dtype());
    let embeds = splice_embeddings(&plan, text_embeds, image_features)?;
    let input = LlmInput {
        embeds,
        attention_mask: Tensor::<B, 2, Bool>::from_data(TensorData::new(plan.attention_mask.clone(), [plan.batch, plan.len]), &device),
        position_ids: Tensor::<B, 2, Int>::from_data(TensorData::new(plan.position_ids.clone(), [plan.batch, plan.len]), &device),
        // The LLM sees one image span per sample (LLaVA-1.5 has at most one image per sample).
        image_spans: plan.image_spans.iter().map(|s| s.first().map_or(0..0, |s| s.start..s.start + s.len)).collect(),
    };
    let out = llm.forward_embeds(input, hooks)?;
    let logits = llm.logits(out.hidden);
    let [b, kept_len, _] = logits.dims();
    // A hook may have dropped positions: realign labels with the surviving original indices.
    let (labels, mask) = if kept_len == plan.len {
        (plan.labels.clone(), plan.label_mask())
    } else {
        let mut labels = vec![crate::IGNORE_INDEX; b * kept_len];
        for (s, layout) in out.layout.samples.iter().enumerate() {
            for (cur, &orig) in layout.index.iter().enumerate() {
                labels[s * kept_len + cur] = plan.labels[s * plan.len + orig];
            }
        }
        let mask = labels.iter().map(|&l| l != crate::IGNORE_INDEX).collect();
        (labels, mask)
    };
    let loss = causal_lm_loss(logits, &labels, &mask)?;
    Ok(ForwardOutput { loss, tokens: plan.lengths.iter().sum() })
}
