//! Everything `train inspect vision` writes, computed in one forward pass.

use burn::prelude::*;
use burn::tensor::{DType, TensorData};

use crate::error::Result;
use crate::model::{select_features, ClipVisionModel, FeatureSelect, VisionRequest};

/// The select layer LLaVA-1.5 uses (`mm_vision_select_layer = -2`).
pub const LLAVA_SELECT_LAYER: i64 = -2;

/// Named tensors for inspection, all f32 (converted from the weights' dtype), in the order:
/// `pixel_values [B,C,S,S]`, `hidden_states.{i} [B,T,D]` for `i = 0..=L` (0 = `pre_layrnorm`
/// output, `i` = output of encoder layer `i`, as transformers' `hidden_states`),
/// `cls_attention.{i} [B,H,T]` for each 0-based layer `i` (the CLS query row of its softmax),
/// and `features [B,T-1,D]` (`hidden_states[-2]` with CLS dropped, LLaVA's image features).
/// With `interpolate_pos_encoding` the input may have another size than the tower's
/// `image_size` (a multiple of the patch size; see [`VisionRequest::interpolate_pos_encoding`]).
///
/// # Shapes
/// `pixel_values [B, C, H, W] ->` the tensors above, `T = (H/P)·(W/P) + 1`.
pub fn inspect_tensors<B: Backend>(
    model: &ClipVisionModel<B>,
    pixel_values: Tensor<B, 4>,
    interpolate_pos_encoding: bool,
) -> Result<Vec<(String, TensorData)>> {
    let n = model.num_layers();
    let mut request = VisionRequest::select(-1).with_all_hidden_states();
    request.interpolate_pos_encoding = interpolate_pos_encoding;
    request.cls_attention_layers = (0..n).collect();
    let f32_data = |t: TensorData| {
        if t.dtype == DType::F32 {
            t
        } else {
            t.convert::<f32>()
        }
    };

    let mut out = vec![("pixel_values".to_string(), f32_data(pixel_values.to_data()))];
    let result = model.forward(pixel_values, &request)?;
    let select = model.resolve_select_layer(LLAVA_SELECT_LAYER)?;
    let features = select_features(result.hidden_states[select].clone(), FeatureSelect::Patch);
    for (i, h) in result.hidden_states.into_iter().enumerate() {
        out.push((format!("hidden_states.{i}"), f32_data(h.to_data())));
    }
    for (i, a) in result.cls_attention {
        out.push((format!("cls_attention.{i}"), f32_data(a.to_data())));
    }
    out.push(("features".to_string(), f32_data(features.to_data())));
    Ok(out)
}
