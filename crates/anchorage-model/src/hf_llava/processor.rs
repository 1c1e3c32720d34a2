//! The folder's image processor, from `preprocessor_config.json`: for LLaVA a
//! `CLIPImageProcessor` (llava-hf's, no padding) or a `LlavaImageProcessor` whose `do_pad` pads
//! to a square with the mean colour first (transformers `models/llava/image_processing_pil_llava.py`);
//! for LLaVA-NeXT the AnyRes `LlavaNextImageProcessor`.

use std::path::Path;

use anchorage_data::image::{decode_rgb, preprocess_rgb, Rgb8Image};
use anchorage_data::{AnyResProcessor, Aspect, ClipImageProcessor};
use serde::Deserialize;

use super::config::{HfLlavaConfig, LlavaKind};
use super::HfLlavaError;

/// Pixels as the HF processor returns them for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedImage {
    /// `[P, 3, S, S]` row-major f32 (P = 1 for LLaVA).
    pub pixels: Vec<f32>,
    pub shape: [usize; 4],
    /// The image's `(height, width)` (LLaVA-NeXT's `image_sizes`).
    pub image_size: (usize, usize),
}

/// The processor of one llava-hf folder.
#[derive(Debug, Clone)]
pub enum HfImageProcessor {
    /// LLaVA: one square view.
    Clip {
        processor: ClipImageProcessor,
        aspect: Aspect,
    },
    /// LLaVA-NeXT: the base view, then the tiles of the best grid resolution.
    AnyRes(AnyResProcessor),
}

#[derive(Debug, Default, Deserialize)]
struct PadField {
    #[serde(default)]
    do_pad: Option<bool>,
}

impl HfImageProcessor {
    /// Reads `dir/preprocessor_config.json` (LLaVA without one: CLIP's at the tower's size).
    pub fn read(dir: &Path, config: &HfLlavaConfig) -> Result<Self, HfLlavaError> {
        let path = dir.join("preprocessor_config.json");
        match &config.kind {
            LlavaKind::Llava if !path.is_file() => Ok(Self::Clip {
                processor: ClipImageProcessor::with_size(config.vision.image_size as u32),
                aspect: Aspect::Square,
            }),
            LlavaKind::Llava => {
                let processor = ClipImageProcessor::from_preprocessor_config(&path)?;
                let text = std::fs::read_to_string(&path).map_err(|source| HfLlavaError::Io {
                    path: path.clone(),
                    source,
                })?;
                let pad: PadField =
                    serde_json::from_str(&text).map_err(|source| HfLlavaError::Json {
                        path: path.clone(),
                        source,
                    })?;
                let aspect = if pad.do_pad == Some(true) {
                    Aspect::Pad
                } else {
                    Aspect::Square
                };
                Ok(Self::Clip { processor, aspect })
            }
            LlavaKind::LlavaNext { .. } => Ok(Self::AnyRes(
                AnyResProcessor::from_preprocessor_config(&path)?,
            )),
        }
    }

    /// Decodes and preprocesses one image file.
    pub fn process_file(&self, path: &Path) -> Result<ProcessedImage, HfLlavaError> {
        Ok(self.process(&decode_rgb(path)?))
    }

    pub fn process(&self, image: &Rgb8Image) -> ProcessedImage {
        let image_size = (image.height, image.width);
        match self {
            Self::Clip { processor, aspect } => {
                let pixels = preprocess_rgb(image, *aspect, processor);
                let s = pixels.size;
                ProcessedImage {
                    pixels: pixels.data,
                    shape: [1, 3, s, s],
                    image_size,
                }
            }
            Self::AnyRes(processor) => {
                let views = processor.preprocess(image);
                let s = processor.tile_size() as usize;
                let shape = [views.tiles.len(), 3, s, s];
                let pixels = views.tiles.into_iter().flat_map(|t| t.data).collect();
                ProcessedImage {
                    pixels,
                    shape,
                    image_size,
                }
            }
        }
    }
}
