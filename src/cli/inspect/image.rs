//! `train inspect image`: LLaVA's image path on one file, written as safetensors.

use std::path::PathBuf;

use anchorage_data::image::{load_pixel_values, write_pixel_values, ClipImageProcessor};
use anchorage_data::Aspect;
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AspectArg {
    /// Resize the shortest edge, centre crop (stage 1).
    Square,
    /// `expand2square` onto the CLIP mean colour first (stage 2).
    Pad,
}

impl From<AspectArg> for Aspect {
    fn from(a: AspectArg) -> Self {
        match a {
            AspectArg::Square => Aspect::Square,
            AspectArg::Pad => Aspect::Pad,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Image file (PNG or JPEG).
    #[arg(long)]
    pub image: PathBuf,
    /// Aspect mode.
    #[arg(long, value_enum)]
    pub aspect: AspectArg,
    /// Output side (shortest edge = crop = S, CLIP mean/std); default 336.
    #[arg(long, conflicts_with = "preprocessor_config")]
    pub size: Option<u32>,
    /// A Hugging Face preprocessor_config.json instead of --size.
    #[arg(long)]
    pub preprocessor_config: Option<PathBuf>,
    /// Output safetensors file with `pixel_values` [1, 3, S, S] f32.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let processor = match (&args.preprocessor_config, args.size) {
        (Some(path), _) => ClipImageProcessor::from_preprocessor_config(path)?,
        (None, Some(size)) if size > 0 => ClipImageProcessor::with_size(size),
        (None, Some(_)) => anyhow::bail!("--size must be positive"),
        (None, None) => ClipImageProcessor::clip_vit_l14_336(),
    };
    let pixels = load_pixel_values(&args.image, args.aspect.into(), &processor)?;
    write_pixel_values(&args.out, std::slice::from_ref(&pixels))?;
    tracing::info!(
        image = %args.image.display(),
        out = %args.out.display(),
        size = pixels.size,
        "wrote pixel_values [1, 3, {0}, {0}]",
        pixels.size
    );
    Ok(())
}
