//! Named tensors to and from safetensors files, for `train inspect vision` outputs and for reading
//! reference outputs in tests. Weights are loaded through burn-store instead ([`crate::load_clip_vision`]).

use std::path::Path;

use burn::tensor::{DType, TensorData};
use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Result, VisionError};

fn to_st(dtype: DType) -> Option<Dtype> {
    Some(match dtype {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::U8 => Dtype::U8,
        _ => return None,
    })
}

fn from_st(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::U8 => DType::U8,
        _ => return None,
    })
}

/// Writes named tensors (F32, F16, BF16, F64, I64, I32 or U8) to a safetensors file.
pub fn write_safetensors(path: &Path, tensors: &[(String, TensorData)]) -> Result<()> {
    let bad = |reason: String| VisionError::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let mut views = Vec::with_capacity(tensors.len());
    for (name, data) in tensors {
        let dtype = to_st(data.dtype)
            .ok_or_else(|| bad(format!("{name}: dtype {:?} not writable", data.dtype)))?;
        let view = TensorView::new(dtype, data.shape.to_vec(), data.as_bytes())
            .map_err(|e| bad(format!("{name}: {e}")))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize_to_file(views, None, path).map_err(|e| bad(e.to_string()))
}

/// Reads every tensor of a safetensors file (whole file in memory: for small files).
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, TensorData)>> {
    let bytes = std::fs::read(path).map_err(|source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| VisionError::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in file.tensors() {
        let dtype = from_st(view.dtype())
            .ok_or_else(|| bad(format!("{name}: dtype {:?} not readable", view.dtype())))?;
        out.push((
            name,
            TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
