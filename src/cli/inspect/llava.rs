//! `train inspect llava`: a Hugging Face LLaVA / LLaVA-NeXT folder run on one image and a prompt,
//! writing what transformers computes (see anchorage-model's `hf_llava`).

use std::path::PathBuf;

use anchorage_model::hf_llava::{inspect_tensors, HfImageProcessor, HfLlava};
use anchorage_vision::write_safetensors;
use anyhow::Context;
use clap::Args;

use crate::backend::Flex;

#[derive(Debug, Args)]
pub struct LlavaArgs {
    /// llava-hf folder: config.json (LlavaForConditionalGeneration or
    /// LlavaNextForConditionalGeneration), safetensors (one file or sharded with
    /// model.safetensors.index.json) and preprocessor_config.json.
    #[arg(long)]
    pub model: PathBuf,
    /// Image file (PNG, JPEG, ...).
    #[arg(long)]
    pub image: PathBuf,
    /// Token ids, comma-separated, with exactly one -200 at the image position (expanded into the
    /// image's rows).
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        allow_hyphen_values = true
    )]
    pub ids: Vec<i64>,
    /// Output safetensors: pixel_values (llava [1,3,S,S]; llava_next [1,P,3,S,S] and image_sizes
    /// [1,2] i64), image_features [T_img,D], inputs_embeds [1,T,D], logits [1,T,V]; f32.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: LlavaArgs) -> anyhow::Result<()> {
    let device = Default::default();
    let model = HfLlava::<Flex>::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let processor = HfImageProcessor::read(&args.model, &model.config)?;
    let tensors = inspect_tensors(&model, &processor, &args.image, &args.ids, &device)?;
    write_safetensors(&args.out, &tensors)?;
    tracing::info!(out = %args.out.display(), tokens = tensors.len(), "wrote llava inspection");
    Ok(())
}
