//! The composed model: the frozen vision tower (no autodiff, only up to the select layer) → the
//! connector → LLaVA's splice into the text embeddings → the LLM with the spec's compression
//! hooks → the masked causal-LM loss, or greedy generation (`generate.rs`).
//!
//! `Llava<B, V>` computes the connector and the LLM on `B` and the vision tower on `V`: for
//! training `B` is an autodiff backend and `V` its inner backend (the tower never enters the
//! graph); for evaluation both are the same plain backend ([`Llava::into_inference`]).

use anchorage_compress::{CompressionPolicy, Compressor};
use anchorage_connectors::{Connector, ConnectorConfig};
use anchorage_data::Sample;
use anchorage_llm::{Llm, LlmInput};
use anchorage_vision::{select_features, ClipVisionModel, FeatureSelect, VisionRequest};
use burn::module::{AutodiffModule, Module, Param};
use anchorage_connectors::ConnectorConfig as Kind;
use anchorage_data::image::TilePacking;
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Bool, Distribution, FloatDType, Int, Tensor, TensorData};

use crate::anyres_pack::{pack_batch, stack_views, BatchViews, ImageViews};
use crate::batch::{stack_images, ImageInput};
use crate::spec::LlmTraining;
use crate::{causal_lm_loss_from_hidden, splice_rows, LossParts, ModelError, SpliceInput, SplicePlan};

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
    pub fn new<B: Backend>(vision: &ClipVisionModel<B>, layer: i64, feature: FeatureSelect, needs_cls_attention: bool) -> Result<Self, ModelError> {
        let hidden_index = vision.resolve_select_layer(layer)?;
        let cls_attention_layer = match (needs_cls_attention, hidden_index) {
            (false, _) => None,
            (true, 0) => return Err(ModelError::Spec { key: "vision.select_layer".into(), message: "must select hidden state 1 or later when the connector needs the CLS attention".into() }),
            (true, i) => Some(i - 1),
        };
        Ok(Self { layer, feature, cls_attention_layer })
    }
}

/// Everything the optimizer sees: the connector, and the LLM (whose parameters get gradients only
/// when it trains: in full, or its LoRA adapters on a frozen base; frozen otherwise).
#[derive(Module, Debug)]
pub struct Trainable<B: Backend> {
    pub connector: Connector<B>,
    pub llm: Llm<B>,
    /// LLaVA-NeXT's `image_newline` `[d_llm]`, trained with the connector: present only when the
    /// model packs AnyRes tiles ([`Llava::with_image_newline`]).
    pub image_newline: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Trainable<B> {
    /// The connector and the LLM, without `image_newline`.
    pub fn new(connector: Connector<B>, llm: Llm<B>) -> Self {
        Self { connector, llm, image_newline: None }
    }
}

/// The LLaVA model. Build it with [`LlavaSpec::build`](crate::LlavaSpec::build).
#[derive(Debug, Clone)]
pub struct Llava<B: Backend, V: Backend = B> {
    /// The frozen vision tower.
    pub vision: ClipVisionModel<V>,
    pub trainable: Trainable<B>,
    /// How the LLM trains; decides what a checkpoint holds ([`crate::CheckpointWeights`]).
    pub training: LlmTraining,
    pub select: VisionSelect,
    pub compression: CompressionPolicy,
    pub connector_config: ConnectorConfig,
    /// Side of the square images the model takes (the tower's own, or `[vision] image_size`).
    pub image_size: usize,
    /// Visual tokens one image becomes after the connector.
    pub image_tokens: usize,
    /// Where the model lives.
    pub device: B::Device,
    /// A fully trained bf16 LLM is kept in f32, the master copy AdamW steps (as LLaVA's DeepSpeed
    /// keeps one), and cast to this dtype for each training forward ([`Self::forward_loss`]) and
    /// once for evaluation ([`Self::into_compute_dtype`]). `None`: the LLM computes in the dtype
    /// it is stored in.
    pub llm_compute: Option<FloatDType>,
}

/// The result of one training forward: the loss parts and the batch's token count.
pub struct ForwardOutput<B: Backend> {
    pub loss: LossParts<B>,
    /// Real tokens after splicing (sum over samples).
    pub tokens: usize,
    /// Time spent in the vision tower.
    pub vision_time: std::time::Duration,
}

/// A batch as the LLM sees it after splicing, and how it was laid out.
pub(crate) struct Spliced<B: Backend> {
    pub(crate) input: LlmInput<B>,
    pub(crate) plan: SplicePlan,
}

impl<B: Backend, V: Backend<Device = B::Device>> Llava<B, V> {
    pub fn llm(&self) -> &Llm<B> {
        &self.trainable.llm
    }

    /// This model with the LLM's weights cast to `dtype` and no `llm_compute`: the compute copy of
    /// an f32 master LLM (under autodiff the casts are part of the graph).
    pub fn with_llm_cast(&self, dtype: FloatDType) -> Self {
        let mut view = self.clone();
        view.trainable.llm = crate::towers::cast_to(view.trainable.llm, dtype);
        view.llm_compute = None;
        view
    }

    /// An f32 master LLM cast once to its compute dtype (for evaluation and generation, which use
    /// the LLM as stored); any other model as it is.
    pub fn into_compute_dtype(mut self) -> Self {
        if let Some(dtype) = self.llm_compute.take() {
            self.trainable.llm = crate::towers::cast_to(self.trainable.llm, dtype);
        }
        self
    }

    /// The model for AnyRes training: a fresh trainable `image_newline` `[d_llm]`, drawn as
    /// LLaVA-NeXT draws it (`randn(d) / sqrt(d)`, llava/model/llava_arch.py
    /// `initialize_vision_modules`) from its own `seed`. Call it before loading a checkpoint
    /// that holds one.
    pub fn with_image_newline(mut self, seed: u64) -> Self {
        let d = self.llm().config.hidden_size;
        let _draws = crate::seeded::lock();
        B::seed(&self.device, seed);
        let draw = Tensor::<B, 1>::random([d], Distribution::Normal(0.0, 1.0), &self.device) / (d as f64).sqrt();
        self.trainable.image_newline = Some(Param::from_tensor(draw));
        self
    }

    pub fn connector(&self) -> &Connector<B> {
        &self.trainable.connector
    }

    /// A copy on another device (a data-parallel replica).
    pub fn fork(&self, device: &B::Device) -> Self {
        Self { vision: self.vision.clone().fork(device), trainable: self.trainable.clone().fork(device), device: device.clone(), ..self.clone() }
    }

    /// Fresh compression hooks for one forward or one generation.
    pub(crate) fn hooks(&self) -> Result<Compressor, ModelError> {
        Ok(self.compression.hooks(self.llm().config.num_hidden_layers)?)
    }

    /// The tower's features for the connector, in f32 (the tower may compute in bf16/f16; the
    /// trainable connector keeps f32 weights and inputs).
    ///
    /// # Shapes
    /// `pixels [images, 3, S, S]` → `features [images, T or T-1, d_vision]`, `cls_attention Option<[images, heads, T]>`
    pub fn encode_images(&self, pixels: Tensor<V, 4>) -> Result<(Tensor<V, 3>, Option<Tensor<V, 3>>), ModelError> {
        let mut request = VisionRequest::select(self.select.layer);
        if self.image_size != self.vision.image_size {
            // Another input side than the tower's (`[vision] image_size`): interpolated positions.
            request = request.with_interpolate_pos_encoding();
        }
        if let Some(layer) = self.select.cls_attention_layer {
            request = request.with_cls_attention(layer);
        }
        let out = self.vision.forward(pixels, &request)?;
        let features = select_features(out.selected, self.select.feature).cast(FloatDType::F32);
        let cls = out.cls_attention.into_iter().next().map(|(_, a)| a.cast(FloatDType::F32));
        Ok((features, cls))
    }

    /// Connector → splice: the LLM's input for `samples` whose images are already encoded.
    pub(crate) fn splice(&self, samples: &[SpliceInput<'_>], features: Tensor<B, 3>, cls: Option<Tensor<B, 3>>, max_len: usize, pad_id: i64) -> Result<Spliced<B>, ModelError> {
        let num_images = features.dims()[0];
        let image_features = self.connector().forward(features, cls)?;
        let [_, image_tokens, d] = image_features.dims();
        let plan = SplicePlan::new(samples, image_tokens, num_images, max_len, pad_id)?;
        self.spliced_input(plan, image_features.reshape([num_images * image_tokens, d]))
    }

    /// Connector per view → AnyRes packing per image → splice, for views already encoded
    /// (`images` says where each image's views are, see [`crate::anyres_pack`]).
    pub(crate) fn splice_anyres(&self, samples: &[SpliceInput<'_>], views: (Tensor<B, 3>, Option<Tensor<B, 3>>), images: &[ImageViews], max_len: usize, pad_id: i64) -> Result<Spliced<B>, ModelError> {
        let missing = || ModelError::Spec { key: "data.aspect".into(), message: "AnyRes packing needs the model's image_newline".into() };
        let newline = self.trainable.image_newline.as_ref().ok_or_else(missing)?;
        let image_features = self.connector().forward(views.0, views.1)?;
        let (rows, counts) = pack_batch(image_features, images, self.tile_packing(), newline.val())?;
        let plan = SplicePlan::with_image_tokens(samples, &counts, max_len, pad_id)?;
        self.spliced_input(plan, rows)
    }

    /// How this model packs an AnyRes image's views: LLaVA-NeXT's spatial packing for the MLP
    /// (its tokens are the tower's patch grid), fixed-count packing for the other connectors.
    pub fn tile_packing(&self) -> TilePacking {
        TilePacking::new(self.image_tokens, matches!(self.connector_config, Kind::Mlp(_)))
    }

    /// The text of `plan` embedded, with `image_rows` (the images' rows one after the other)
    /// spliced in.
    fn spliced_input(&self, plan: SplicePlan, image_rows: Tensor<B, 2>) -> Result<Spliced<B>, ModelError> {
        let device = image_rows.device();
        if let Some((at, id)) = self.llm().first_bad_id(&plan.text_ids) {
            return Err(ModelError::TokenId { sample: at / plan.text_len, id, vocab: self.llm().config.vocab_size });
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(plan.text_ids.clone(), [plan.batch, plan.text_len]), &device);
        let text_embeds = self.llm().embed(ids);
        // Image tokens enter the LLM in its own dtype (bf16 towers), as LLaVA casts them.
        let image_rows = image_rows.cast(text_embeds.dtype());
        let embeds = splice_rows(&plan, text_embeds, image_rows)?;
        let input = LlmInput {
            embeds,
            attention_mask: Tensor::<B, 2, Bool>::from_data(TensorData::new(plan.attention_mask.clone(), [plan.batch, plan.len]), &device),
            position_ids: Tensor::<B, 2, Int>::from_data(TensorData::new(plan.position_ids.clone(), [plan.batch, plan.len]), &device),
            // The LLM sees one image span per sample (LLaVA-1.5 has at most one image per sample).
            image_spans: plan.image_spans.iter().map(|s| s.first().map_or(0..0, |s| s.start..s.start + s.len)).collect(),
        };
        Ok(Spliced { input, plan })
    }

    /// The LLM with the spec's compression, then the loss over the supervised tokens.
    fn loss(&self, spliced: Spliced<B>) -> Result<(LossParts<B>, usize), ModelError> {
        let Spliced { input, plan } = spliced;
        let mut hooks = self.hooks()?;
        // A hook that fails fails the forward (LlmError::Hook), never leaving an uncompressed result.
        let out = self.llm().forward_embeds(input, &mut hooks)?;
        let hidden = out.hidden;
        let [b, kept_len, _] = hidden.dims();
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
        let llm = self.llm();
        let parts = causal_lm_loss_from_hidden(hidden, llm.config.vocab_size, |rows| llm.logits_rows(rows), &labels, &mask)?;
        Ok((parts, plan.lengths.iter().sum()))
    }
}

impl<B: AutodiffBackend> Llava<B, B::InnerBackend> {
    /// One training forward over a micro-batch of samples: images encoded without autodiff and
    /// lifted into the graph, then connector → splice (truncated to `max_len`) → LLM → loss.
    pub fn forward_loss(&self, samples: &[Sample], max_len: usize, pad_id: i64) -> Result<ForwardOutput<B>, ModelError> {
        if let Some(dtype) = self.llm_compute {
            // The f32 master weights cast for this forward: the casts are recorded in the graph,
            // so the gradients come back to the f32 parameters in f32.
            return self.with_llm_cast(dtype).forward_loss(samples, max_len, pad_id);
        }
        if self.trainable.image_newline.is_some() {
            return self.forward_loss_anyres(samples, max_len, pad_id);
        }
        let started = std::time::Instant::now();
        let inputs: Vec<ImageInput<'_>> = samples.iter().map(|s| ImageInput { input_ids: &s.input_ids, pixels: s.pixels.as_ref() }).collect();
        let (pixels, image_of) = stack_images::<B::InnerBackend>(&inputs, self.image_size, &self.device)?;
        let (features, cls) = self.encode_images(pixels)?;
        let vision_time = started.elapsed();
        let batch: Vec<SpliceInput<'_>> =
            samples.iter().zip(&image_of).map(|(s, img)| SpliceInput { input_ids: &s.input_ids, labels: &s.labels, images: img.as_slice() }).collect();
        let spliced = self.splice(&batch, Tensor::from_inner(features), cls.map(Tensor::from_inner), max_len, pad_id)?;
        let (loss, tokens) = self.loss(spliced)?;
        Ok(ForwardOutput { loss, tokens, vision_time })
    }

    /// [`Self::forward_loss`] for an AnyRes model: every view of the batch through the tower in
    /// one call, the connector per view, each image packed ([`crate::anyres_pack`]) to its own
    /// token count, then splice → LLM → loss.
    fn forward_loss_anyres(&self, samples: &[Sample], max_len: usize, pad_id: i64) -> Result<ForwardOutput<B>, ModelError> {
        let started = std::time::Instant::now();
        let BatchViews { pixels, images, image_of } = stack_views::<B::InnerBackend>(samples, self.image_size, &self.device)?;
        let (features, cls) = self.encode_images(pixels)?;
        let vision_time = started.elapsed();
        let batch: Vec<SpliceInput<'_>> =
            samples.iter().zip(&image_of).map(|(s, img)| SpliceInput { input_ids: &s.input_ids, labels: &s.labels, images: img.as_slice() }).collect();
        let views = (Tensor::from_inner(features), cls.map(Tensor::from_inner));
        let spliced = self.splice_anyres(&batch, views, &images, max_len, pad_id)?;
        let (loss, tokens) = self.loss(spliced)?;
        Ok(ForwardOutput { loss, tokens, vision_time })
    }

    /// The same model without autodiff, for evaluation and generation (an f32 master LLM cast to
    /// its compute dtype).
    pub fn into_inference(self) -> Llava<B::InnerBackend> {
        Llava {
            vision: self.vision,
            trainable: self.trainable.valid(),
            training: self.training,
            select: self.select,
            compression: self.compression,
            connector_config: self.connector_config,
            image_size: self.image_size,
            image_tokens: self.image_tokens,
            device: self.device,
            llm_compute: self.llm_compute,
        }
        .into_compute_dtype()
    }
}
