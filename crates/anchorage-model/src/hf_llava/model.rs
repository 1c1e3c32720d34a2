//! [`HfLlava`]: the composed [`Llava`] built from a llava-hf checkpoint, with what the
//! composed model does not express itself: several concatenated feature layers and LLaVA-NeXT's
//! AnyRes packing. Semantics of transformers 5.23 `LlavaModel.get_image_features` /
//! `LlavaNextModel.get_image_features` and `forward` (the image rows replace the image tokens;
//! positions 0..T; no padding).

use anchorage_vision::VisionRequest;
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};

use super::config::{HfLlavaConfig, LlavaKind, SelectStrategy};
use super::pack::{pack_image_features, AnyResGrid};
use super::HfLlavaError;
use crate::{splice_embeddings, Llava, SpliceInput, SplicePlan, IGNORE_INDEX, IMAGE_TOKEN_INDEX};
use anchorage_llm::LlmInput;

/// A llava-hf model: the composed model plus the checkpoint's config and `image_newline`.
#[derive(Debug, Clone)]
pub struct HfLlava<B: Backend> {
    /// Vision tower, projector (an `mlp` connector) and LLM, frozen, f32.
    pub model: Llava<B>,
    pub config: HfLlavaConfig,
    /// LLaVA-NeXT's `image_newline` `[D_text]`; `None` for LLaVA.
    pub image_newline: Option<Tensor<B, 1>>,
}

/// What one prompt with one image computes.
#[derive(Debug, Clone)]
pub struct HfLlavaOutput<B: Backend> {
    /// `[1, T, D]`: text embeddings with the image rows spliced in.
    pub inputs_embeds: Tensor<B, 3>,
    /// `[1, T, V]`.
    pub logits: Tensor<B, 3>,
}

impl<B: Backend> HfLlava<B> {
    /// The tower's selected features: each `vision_feature_layer` hidden state, CLS dropped for
    /// the `default` strategy, concatenated on the feature dim in the config's order.
    ///
    /// # Shapes
    /// `pixels [N, 3, S, S]` -> `[N, tokens, D_vision · layers]`
    pub fn vision_features(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, HfLlavaError> {
        let vision = &self.model.vision;
        let indices = self
            .config
            .vision_feature_layers
            .iter()
            .map(|&l| vision.resolve_select_layer(l))
            .collect::<Result<Vec<_>, _>>()?;
        let deepest = indices.iter().copied().max().unwrap_or(0);
        let out = vision.forward(
            pixels,
            &VisionRequest::select(deepest as i64).with_all_hidden_states(),
        )?;
        let parts: Vec<Tensor<B, 3>> = indices
            .iter()
            .map(|&i| {
                let h = out.hidden_states[i].clone();
                let [n, t, d] = h.dims();
                match self.config.select_strategy {
                    SelectStrategy::Default => h.slice([0..n, 1..t, 0..d]),
                    SelectStrategy::Full => h,
                }
            })
            .collect();
        Ok(Tensor::cat(parts, 2))
    }

    /// The rows one image becomes. LLaVA: `pixels [1, 3, S, S]` -> `[tokens, D_text]`.
    /// LLaVA-NeXT: `pixels [P, 3, S, S]` (base image first, then the tiles row-major) and the
    /// image's `(height, width)` -> the packed rows; tiles past the count the config's pinpoints
    /// give are ignored, as transformers slices them off.
    pub fn image_features(
        &self,
        pixels: Tensor<B, 4>,
        image_size: Option<(usize, usize)>,
    ) -> Result<Tensor<B, 2>, HfLlavaError> {
        let [p, c, s, _] = pixels.dims();
        match (&self.config.kind, image_size) {
            (LlavaKind::Llava, _) => {
                if p != 1 {
                    return Err(HfLlavaError::Input(format!(
                        "llava takes one image [1, 3, S, S], found pixel_values {:?}",
                        pixels.dims()
                    )));
                }
                let rows = self
                    .model
                    .connector()
                    .forward(self.vision_features(pixels)?, None)?;
                let [_, t, d] = rows.dims();
                Ok(rows.reshape([t, d]))
            }
            (LlavaKind::LlavaNext { .. }, None) => Err(HfLlavaError::Input(
                "llava_next needs the image size (height, width) to pack its tiles".into(),
            )),
            (LlavaKind::LlavaNext { grid_pinpoints }, Some(size)) => {
                let grid = AnyResGrid::new(size, grid_pinpoints, self.config.vision.image_size)?;
                if p < grid.num_tiles {
                    return Err(HfLlavaError::Input(format!(
                        "pixel_values has {p} tiles; an image of {}x{} (height x width) needs {} with image_grid_pinpoints {grid_pinpoints:?}",
                        size.0, size.1, grid.num_tiles
                    )));
                }
                let pixels = pixels.slice([0..grid.num_tiles, 0..c, 0..s, 0..s]);
                let tiles = self
                    .model
                    .connector()
                    .forward(self.vision_features(pixels)?, None)?;
                let newline = self.image_newline.clone().ok_or_else(|| {
                    HfLlavaError::Input("llava_next model without image_newline".into())
                })?;
                pack_image_features(tiles, grid, self.config.vision.grid(), size, newline)
            }
        }
    }

    /// Splices `image_features [T_img, D]` in at the one `-200` of `ids` and runs the LLM.
    pub fn forward(
        &self,
        ids: &[i64],
        image_features: Tensor<B, 2>,
    ) -> Result<HfLlavaOutput<B>, HfLlavaError> {
        self.check_ids(ids)?;
        let [t_img, d] = image_features.dims();
        let labels = vec![IGNORE_INDEX; ids.len()];
        let sample = SpliceInput {
            input_ids: ids,
            labels: &labels,
            images: &[0],
        };
        let plan = SplicePlan::new(&[sample], t_img, 1, usize::MAX, 0)?;
        let device = image_features.device();
        let llm = self.model.llm();
        let text_ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(plan.text_ids.clone(), [plan.batch, plan.text_len]),
            &device,
        );
        let embeds = splice_embeddings(
            &plan,
            llm.embed(text_ids),
            image_features.reshape([1, t_img, d]),
        )?;
        let input = LlmInput {
            embeds: embeds.clone(),
            attention_mask: Tensor::<B, 2, Bool>::from_data(
                TensorData::new(plan.attention_mask.clone(), [plan.batch, plan.len]),
                &device,
            ),
            position_ids: Tensor::<B, 2, Int>::from_data(
                TensorData::new(plan.position_ids.clone(), [plan.batch, plan.len]),
                &device,
            ),
            image_spans: plan
                .image_spans
                .iter()
                .map(|s| s.first().map_or(0..0, |s| s.start..s.start + s.len))
                .collect(),
        };
        let mut hooks = self.model.hooks()?;
        let hidden = llm.forward_embeds(input, &mut hooks)?.hidden;
        Ok(HfLlavaOutput {
            inputs_embeds: embeds,
            logits: llm.logits(hidden),
        })
    }

    /// Exactly one `-200`; every other id in the vocabulary and not the image token itself
    /// (transformers would take it for an image row).
    pub fn check_ids(&self, ids: &[i64]) -> Result<(), HfLlavaError> {
        let images = ids.iter().filter(|&&t| t == IMAGE_TOKEN_INDEX).count();
        if images != 1 {
            return Err(HfLlavaError::Input(format!("ids must hold exactly one {IMAGE_TOKEN_INDEX} (the image position), found {images}")));
        }
        let vocab = self.config.text.vocab_size;
        for (i, &id) in ids.iter().enumerate() {
            if id == IMAGE_TOKEN_INDEX {
                continue;
            }
            if id < 0 || id as usize >= vocab {
                return Err(HfLlavaError::Input(format!(
                    "ids[{i}] = {id} is outside the vocabulary (0..{vocab})"
                )));
            }
            if id == self.config.image_token_id {
                return Err(HfLlavaError::Input(format!(
                    "ids[{i}] = {id} is the image token id; mark the image position with {IMAGE_TOKEN_INDEX} only"
                )));
            }
        }
        Ok(())
    }
}
