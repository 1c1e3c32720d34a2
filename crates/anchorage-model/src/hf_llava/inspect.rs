//! Everything `train inspect llava` writes, computed before anything is written.

use std::path::Path;

use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::config::LlavaKind;
use super::processor::HfImageProcessor;
use super::{HfLlava, HfLlavaError};

/// Named tensors, all f32 except `image_sizes`: `pixel_values` as the HF processor returns them
/// (LLaVA `[1,3,S,S]`; LLaVA-NeXT `[1,P,3,S,S]` and `image_sizes [1,2]` i64), `image_features
/// [T_img, D]`, `inputs_embeds [1,T,D]` and `logits [1,T,V]` for `ids` with one `-200`.
pub fn inspect_tensors<B: Backend>(
    model: &HfLlava<B>,
    processor: &HfImageProcessor,
    image: &Path,
    ids: &[i64],
    device: &B::Device,
) -> Result<Vec<(String, TensorData)>, HfLlavaError> {
    model.check_ids(ids)?;
    let processed = processor.process_file(image)?;
    let pixels = Tensor::<B, 4>::from_data(
        TensorData::new(processed.pixels.clone(), processed.shape),
        device,
    );
    let is_next = matches!(model.config.kind, LlavaKind::LlavaNext { .. });
    let features = model.image_features(pixels, is_next.then_some(processed.image_size))?;
    let out = model.forward(ids, features.clone())?;
    let [p, c, h, w] = processed.shape;
    let mut tensors = Vec::new();
    if is_next {
        tensors.push((
            "pixel_values".to_string(),
            TensorData::new(processed.pixels, [1, p, c, h, w]),
        ));
        let (ih, iw) = processed.image_size;
        tensors.push((
            "image_sizes".to_string(),
            TensorData::new(vec![ih as i64, iw as i64], [1, 2]),
        ));
    } else {
        tensors.push((
            "pixel_values".to_string(),
            TensorData::new(processed.pixels, [p, c, h, w]),
        ));
    }
    tensors.push((
        "image_features".to_string(),
        features.into_data().convert::<f32>(),
    ));
    tensors.push((
        "inputs_embeds".to_string(),
        out.inputs_embeds.into_data().convert::<f32>(),
    ));
    tensors.push((
        "logits".to_string(),
        out.logits.into_data().convert::<f32>(),
    ));
    Ok(tensors)
}
