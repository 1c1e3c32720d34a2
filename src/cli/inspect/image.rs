//! `train inspect image`: LLaVA's image path on one file, written as safetensors.

use std::path::PathBuf;

use anchorage_data::image::{
    load_pixel_values, write_anyres_pixel_values, write_pixel_values, AnyResProcessor,
    ClipImageProcessor,
};
use anchorage_data::Aspect;
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AspectArg {
    /// Resize the shortest edge, centre crop (stage 1).
    Square,
    /// `expand2square` onto the CLIP mean colour first (stage 2).
    Pad,
    /// LLaVA-NeXT's AnyRes tiling (LlavaNextImageProcessor, PIL backend); needs
    /// --preprocessor-config for `image_grid_pinpoints` and the CLIP settings.
    Anyres,
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
    /// A Hugging Face preprocessor_config.json instead of --size (with `--aspect anyres`, a
    /// LLaVA-NeXT one with `image_grid_pinpoints`).
    #[arg(long)]
    pub preprocessor_config: Option<PathBuf>,
    /// Output safetensors file: `pixel_values` [1, 3, S, S] f32; for anyres `pixel_values`
    /// [1, P, 3, S, S] f32 (P = 1 + tiles) and `image_sizes` [1, 2] i64 (height, width).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let aspect = match args.aspect {
        AspectArg::Square => Aspect::Square,
        AspectArg::Pad => Aspect::Pad,
        AspectArg::Anyres => return run_anyres(&args),
    };
    let processor = match (&args.preprocessor_config, args.size) {
        (Some(path), _) => ClipImageProcessor::from_preprocessor_config(path)?,
        (None, Some(size)) if size > 0 => ClipImageProcessor::with_size(size),
        (None, Some(_)) => anyhow::bail!("--size must be positive"),
        (None, None) => ClipImageProcessor::clip_vit_l14_336(),
    };
    let pixels = load_pixel_values(&args.image, aspect, &processor)?;
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

fn run_anyres(args: &ImageArgs) -> anyhow::Result<()> {
    let Some(config) = &args.preprocessor_config else {
        anyhow::bail!(
            "--aspect anyres needs --preprocessor-config (a LLaVA-NeXT preprocessor_config.json with \
             image_grid_pinpoints)"
        );
    };
    let processor = AnyResProcessor::from_preprocessor_config(config)?;
    let pixels = processor.preprocess_file(&args.image)?;
    write_anyres_pixel_values(&args.out, std::slice::from_ref(&pixels))?;
    let s = processor.tile_size();
    tracing::info!(
        image = %args.image.display(),
        out = %args.out.display(),
        best_resolution = ?pixels.best_resolution,
        "wrote pixel_values [1, {}, 3, {s}, {s}] and image_sizes [1, 2] = {:?}",
        pixels.tiles.len(),
        pixels.image_size
    );
    Ok(())
}
