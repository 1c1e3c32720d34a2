//! Batched greedy generation through the same composed model as training: images encoded, the
//! connector, the splice (right padding, positions per sample), then the LLM's prefill with the
//! spec's compression hooks and greedy decoding with the KV cache.

use std::time::{Duration, Instant};

use anchorage_compress::{FlopsReport, FlopsShape};
use anchorage_data::{AnyResViews, PixelValues};
use anchorage_llm::{GenerateOptions, KvCache};
use burn::tensor::{backend::Backend, Tensor};

use crate::anyres_pack::{stack_views_of, BatchViews, ViewsInput};
use crate::batch::{stack_images, ImageInput};
use crate::llava::Spliced;
use crate::{Llava, ModelError, SpliceInput};

/// One prompt: token ids with LLaVA's `-200` placeholder where the image goes, and its image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub input_ids: Vec<i64>,
    /// The image's (base) view.
    pub pixels: Option<PixelValues>,
    /// The image's AnyRes grid tiles, original size and grid, for a model that packs AnyRes
    /// (`image_newline` set); `None` there packs the base view alone, as LLaVA-NeXT packs a
    /// single view. A model without `image_newline` refuses them.
    pub anyres: Option<AnyResViews>,
}

/// What a generation produced and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New tokens of each prompt, a stop token included when one was produced.
    pub tokens: Vec<Vec<u32>>,
    /// Visual tokens that entered the LLM for each prompt (0 for a text-only prompt).
    pub visual_tokens: Vec<usize>,
    /// Length of each prompt after splicing.
    pub prompt_tokens: Vec<usize>,
    /// Keys/values (text and image) each decoder layer attended to for prompt 0 under
    /// compression (`None` without compression).
    pub kept_kv: Option<Vec<usize>>,
    /// Wall time of the image encoding + connector + splice, and of the LLM (prefill and decode).
    pub encode_time: Duration,
    pub llm_time: Duration,
    /// The part of `llm_time` spent in the prefill (the rest is decoding).
    pub prefill_time: Duration,
    /// Model FLOPs of the LLM's prefill, summed over the prompts (the project's FLOPs model,
    /// anchorage-compress `FlopsShape`; with compression as the policy ran).
    pub prefill_flops: f64,
}

impl<B: Backend> Llava<B> {
    /// Greedy answers for a batch of prompts: at most `max_new_tokens` each, stopping after any of
    /// `stop_tokens`. Prompts are right padded; each sample keeps its own positions, so a prompt's
    /// answer does not depend on the others in its batch.
    pub fn generate(&self, prompts: &[Prompt], max_new_tokens: usize, stop_tokens: &[u32], pad_id: i64) -> Result<Generation, ModelError> {
        if prompts.is_empty() {
            return Err(ModelError::EmptyBatch);
        }
        let started = Instant::now();
        let spliced = self.splice_prompts(prompts, pad_id)?;
        let visual_tokens = spliced.plan.image_spans.iter().map(|s| s.iter().map(|s| s.len).sum()).collect();
        let prompt_tokens = spliced.plan.lengths.clone();
        let encode_time = started.elapsed();

        let started = Instant::now();
        let mut hooks = self.hooks()?;
        let mut cache = KvCache::new(self.llm().num_layers());
        let options = GenerateOptions { max_new_tokens, stop_tokens: stop_tokens.to_vec() };
        let (tokens, prefill_time) = self.llm().generate_timed(spliced.input, &mut hooks, &mut cache, &options)?;
        let kept_kv = hooks.trace().map(|t| t.layers.iter().map(|l| l.first().map_or(0, |x| x.keys)).collect());
        let config = &self.llm().config;
        let shape = FlopsShape { hidden: config.hidden_size, intermediate: config.intermediate_size };
        let prefill_flops = (0..prompts.len())
            .map(|i| match hooks.trace() {
                Some(trace) => FlopsReport::from_trace(shape, trace, i).total_compressed(),
                None => config.num_hidden_layers as f64 * shape.full_layer(prompt_tokens[i]),
            })
            .sum();
        Ok(Generation { tokens, visual_tokens, prompt_tokens, kept_kv, encode_time, llm_time: started.elapsed(), prefill_time, prefill_flops })
    }

    /// The logits of the prefill [`Self::generate`] runs for `prompts` (same images, packing,
    /// splice and compression hooks), for checking generation against another code path.
    ///
    /// # Shapes
    /// `-> [prompts, longest spliced prompt (or what compression kept), vocab]`
    pub fn prefill_logits(&self, prompts: &[Prompt], pad_id: i64) -> Result<Tensor<B, 3>, ModelError> {
        if prompts.is_empty() {
            return Err(ModelError::EmptyBatch);
        }
        let spliced = self.splice_prompts(prompts, pad_id)?;
        let out = self.llm().forward_embeds(spliced.input, &mut self.hooks()?)?;
        Ok(self.llm().logits(out.hidden))
    }

    /// The LLM's input for `prompts`: their images encoded (every view in one tower call), the
    /// connector, and the splice; AnyRes models pack each image to its own token count as training
    /// does ([`crate::anyres_pack`], `Llava::splice_anyres`).
    pub(crate) fn splice_prompts(&self, prompts: &[Prompt], pad_id: i64) -> Result<Spliced<B>, ModelError> {
        let labels: Vec<Vec<i64>> = prompts.iter().map(|p| vec![crate::IGNORE_INDEX; p.input_ids.len()]).collect();
        if self.trainable.image_newline.is_some() {
            let inputs: Vec<ViewsInput<'_>> = prompts.iter().map(|p| ViewsInput { input_ids: &p.input_ids, pixels: p.pixels.as_ref(), anyres: p.anyres.as_ref() }).collect();
            let BatchViews { pixels, images, image_of } = stack_views_of::<B>(&inputs, self.image_size, &self.device)?;
            let views = self.encode_images(pixels)?;
            // No truncation: the longest prompt after splicing fits as is.
            return self.splice_anyres(&splice_inputs(prompts, &labels, &image_of), views, &images, usize::MAX, pad_id);
        }
        if prompts.iter().any(|p| p.anyres.is_some()) {
            let message = "a prompt carries AnyRes tiles but the model has no image_newline to pack them (not an AnyRes model)".into();
            return Err(ModelError::Spec { key: "data.aspect".into(), message });
        }
        let inputs: Vec<ImageInput<'_>> = prompts.iter().map(|p| ImageInput { input_ids: &p.input_ids, pixels: p.pixels.as_ref() }).collect();
        let (pixels, image_of) = stack_images::<B>(&inputs, self.image_size, &self.device)?;
        let (features, cls) = self.encode_images(pixels)?;
        self.splice(&splice_inputs(prompts, &labels, &image_of), features, cls, usize::MAX, pad_id)
    }
}

/// The splice's view of prompts without labels, each using the images `image_of` gives it.
fn splice_inputs<'a>(prompts: &'a [Prompt], labels: &'a [Vec<i64>], image_of: &'a [Vec<usize>]) -> Vec<SpliceInput<'a>> {
    prompts.iter().zip(labels).zip(image_of).map(|((p, l), img)| SpliceInput { input_ids: &p.input_ids, labels: l, images: img.as_slice() }).collect()
}
