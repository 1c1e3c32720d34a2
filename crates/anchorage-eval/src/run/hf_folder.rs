//! A llava-hf folder's model made ready for generation: LLaVA as it loads; LLaVA-NeXT with the
//! folder's `image_newline` in the composed model (where training's `Llava::with_image_newline`
//! puts a trained one) and the folder's AnyRes processor, after checking that generation's packing
//! ([`anchorage_model::anyres_pack`]) is the one `HfLlava::image_features` computes (transformers
//! 5.23 `LlavaNextModel.pack_image_features`): the MLP projector's spatial packing over the
//! tower's patch grid, on the grid the model's own pinpoints give.

use anchorage_data::image::TilePacking;
use anchorage_data::{AnyResProcessor, Aspect, ClipImageProcessor};
use anchorage_model::hf_llava::{HfImageProcessor, HfLlava, LlavaKind};
use anchorage_model::{Llava, ModelError};
use burn::module::Param;
use burn::tensor::backend::Backend;

use crate::EvalError;

/// What [`super::EvalModel`] needs from a llava-hf folder besides its tokenizer and template.
pub struct HfGenerationModel<B: Backend> {
    pub model: Llava<B>,
    pub aspect: Aspect,
    pub processor: ClipImageProcessor,
    pub anyres: Option<AnyResProcessor>,
}

/// The folder's model and image preparation for generation. Refused: several
/// `vision_feature_layer`s (generation selects one), and a LLaVA-NeXT model whose packing
/// generation would not reproduce (a projector output that is not the tower's square patch grid,
/// or processor pinpoints other than the model's).
pub fn hf_llava_for_generation<B: Backend>(
    hf: HfLlava<B>,
    image: HfImageProcessor,
) -> Result<HfGenerationModel<B>, EvalError> {
    let refuse = |key: &str, message: String| {
        EvalError::Model(ModelError::Spec {
            key: key.into(),
            message,
        })
    };
    if hf.config.vision_feature_layers.len() != 1 {
        return Err(refuse(
            "vision_feature_layer",
            format!(
                "{:?} concatenates several layers; generation takes one",
                hf.config.vision_feature_layers
            ),
        ));
    }
    let HfLlava {
        mut model,
        config,
        image_newline,
    } = hf;
    match (&config.kind, image) {
        (LlavaKind::Llava, HfImageProcessor::Clip { processor, aspect }) => Ok(HfGenerationModel {
            model,
            aspect,
            processor,
            anyres: None,
        }),
        (LlavaKind::LlavaNext { grid_pinpoints }, HfImageProcessor::AnyRes(anyres)) => {
            let newline = image_newline.ok_or_else(|| {
                refuse(
                    "image_newline",
                    "a LLaVA-NeXT checkpoint without image_newline".into(),
                )
            })?;
            let side = config.vision.grid();
            if model.tile_packing() != (TilePacking::Spatial { side }) {
                let message = format!("the projector gives {} tokens per tile, not the {side}x{side} patch grid LLaVA-NeXT packs (vision_feature_select_strategy \"full\"?)", model.image_tokens);
                return Err(refuse("vision_feature_select_strategy", message));
            }
            let processor_pinpoints: Vec<(usize, usize)> = anyres
                .grid_pinpoints
                .iter()
                .map(|&(h, w)| (h as usize, w as usize))
                .collect();
            if &processor_pinpoints != grid_pinpoints
                || anyres.tile_size() as usize != config.vision.image_size
                || model.image_size != config.vision.image_size
            {
                let message = format!(
                    "preprocessor_config.json tiles {}px views at {processor_pinpoints:?}, the model packs {}px tiles at {grid_pinpoints:?}: generation packs the processor's grid, so they must agree",
                    anyres.tile_size(),
                    config.vision.image_size
                );
                return Err(refuse("image_grid_pinpoints", message));
            }
            model.trainable.image_newline = Some(Param::from_tensor(newline));
            Ok(HfGenerationModel {
                model,
                aspect: Aspect::AnyRes,
                processor: anyres.clip.clone(),
                anyres: Some(anyres),
            })
        }
        _ => Err(refuse(
            "preprocessor_config.json",
            "the image processor does not match the model type (llava / llava_next)".into(),
        )),
    }
}
