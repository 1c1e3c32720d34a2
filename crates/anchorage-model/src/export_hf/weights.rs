//! The towers' tensors under Hugging Face keys, in PyTorch layout and f32: module paths already
//! are the checkpoint keys (the inverse of `load_clip_vision` / `load_llm`), so burn-store's
//! collector with the Burn-to-PyTorch adapter (Linear weights back to `[out, in]`, LayerNorm
//! `gamma`/`beta` to `weight`/`bias`) gives them, under a prefix.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{backend::Backend, TensorData};
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot};

use super::HfExportError;

/// Named tensors, sorted by key.
pub(crate) type Tensors = BTreeMap<String, TensorData>;

/// Every parameter of `module` as `prefix` + its module path, f32.
pub(crate) fn collect<B: Backend, M: ModuleSnapshot<B>>(
    module: &M,
    prefix: &str,
    out: &mut Tensors,
) -> Result<(), HfExportError> {
    for snapshot in module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let key = format!("{prefix}{}", snapshot.full_path());
        let data = snapshot.to_data().map_err(|e| {
            HfExportError::file(Path::new(&key), format!("reading the tensor: {e:?}"))
        })?;
        out.insert(key, data.convert::<f32>());
    }
    Ok(())
}

/// `[rows, cols]` f32 with `extra` zero rows appended (a new token's embedding / lm_head row).
pub(crate) fn append_zero_rows(
    data: &TensorData,
    extra: usize,
    key: &str,
) -> Result<TensorData, HfExportError> {
    let [rows, cols] = <[usize; 2]>::try_from(data.shape.to_vec()).map_err(|_| {
        HfExportError::file(
            Path::new(key),
            format!("expected a matrix, found shape {:?}", data.shape),
        )
    })?;
    let mut values: Vec<f32> = data
        .to_vec()
        .map_err(|e| HfExportError::file(Path::new(key), format!("{e:?}")))?;
    values.resize((rows + extra) * cols, 0.0);
    Ok(TensorData::new(values, [rows + extra, cols]))
}

/// Writes `tensors` as `model.safetensors` (metadata `format: pt`, as transformers writes it).
pub(crate) fn write(path: &Path, tensors: &Tensors) -> Result<(), HfExportError> {
    let meta = anchorage_tensors::Metadata::from([("format".to_string(), "pt".to_string())]);
    anchorage_tensors::write_file(path, tensors.iter().map(|(k, v)| (k.as_str(), v)), &meta)
        .map_err(|e| HfExportError::file(path, e))
}
