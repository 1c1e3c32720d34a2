//! `train inspect vision`: run a CLIP vision tower on one image and write what it computes.

use std::path::PathBuf;

use anchorage_data::{load_pixel_values, Aspect, ClipImageProcessor};
use anchorage_vision::{inspect_tensors, load_clip_vision, write_safetensors};
use anyhow::Context;
use burn::tensor::{Tensor, TensorData};
use clap::{Args, ValueEnum};

use crate::backend::Flex;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AspectArg {
    /// Resize the shortest edge, centre crop (LLaVA stage 1).
    Square,
    /// Pad to a square with the mean colour first (LLaVA stage 2, `image_aspect_ratio pad`).
    Pad,
}

#[derive(Debug, Args)]
pub struct VisionArgs {
    /// Local Hugging Face folder: config.json (CLIPVisionConfig or CLIPConfig) + safetensors,
    /// and preprocessor_config.json when present.
    #[arg(long)]
    pub model: PathBuf,
    /// Image file (PNG, JPEG, ...).
    #[arg(long)]
    pub image: PathBuf,
    /// How a non-square image becomes square.
    #[arg(long, value_enum, default_value = "square")]
    pub aspect: AspectArg,
    /// Run at S×S pixels instead of the tower's image_size: the processor resizes the shortest
    /// edge to S and centre-crops S×S (keeping preprocessor_config.json's mean/std), and the
    /// position embeddings are interpolated bicubically as transformers'
    /// `interpolate_pos_encoding=True` does. S must be a multiple of the patch size.
    #[arg(long, value_name = "S")]
    pub size: Option<u32>,
    /// Output safetensors: pixel_values [1,3,S,S], hidden_states.{i} [1,T,D] for i = 0..=L,
    /// cls_attention.{i} [1,H,T] for 0-based layer i, features [1,T-1,D] (select layer -2, CLS
    /// dropped); all f32.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: VisionArgs) -> anyhow::Result<()> {
    let device = Default::default();
    let (config, model) = load_clip_vision::<Flex>(&args.model, &device)?;
    if let Some(size) = args.size {
        if let Err(e) = config.check_input_size(size as usize, size as usize) {
            anyhow::bail!("--size {size}: {e} ({})", args.model.display());
        }
    }
    let processor = processor(&args, config.image_size)?;
    let aspect = match args.aspect {
        AspectArg::Square => Aspect::Square,
        AspectArg::Pad => Aspect::Pad,
    };
    let pixels = load_pixel_values(&args.image, aspect, &processor)?;
    let s = pixels.size;
    let pixel_values: Tensor<Flex, 4> =
        Tensor::from_data(TensorData::new(pixels.data, [1, 3, s, s]), &device);
    let tensors = inspect_tensors(&model, pixel_values, args.size.is_some())?;
    write_safetensors(&args.out, &tensors)?;
    tracing::info!(out = %args.out.display(), tensors = tensors.len(), "wrote vision inspection");
    Ok(())
}

/// The folder's preprocessor_config.json when present (else CLIP's at the tower's image_size),
/// at `--size` when given.
fn processor(args: &VisionArgs, image_size: usize) -> anyhow::Result<ClipImageProcessor> {
    let processor_file = args.model.join("preprocessor_config.json");
    let processor = if processor_file.is_file() {
        ClipImageProcessor::from_preprocessor_config(&processor_file)?
    } else {
        let size = u32::try_from(image_size).context("image_size does not fit in u32")?;
        ClipImageProcessor::with_size(size)
    };
    Ok(match args.size {
        Some(size) => processor.with_output_size(size),
        None => processor,
    })
}
