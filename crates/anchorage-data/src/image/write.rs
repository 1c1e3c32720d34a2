//! Writing preprocessed pixels as safetensors (`train inspect image`), and reading them back.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::{AnyResPixels, PixelValues};
use crate::DataError;

/// Writes `pixel_values` `[N, 3, S, S]` f32 (little endian) to `path`. All images must share `S`.
pub fn write_pixel_values(path: &Path, images: &[PixelValues]) -> Result<(), DataError> {
    let size = common_size(path, images.iter())?;
    let bytes = f32_bytes(images.iter().flat_map(|p| p.data.iter().copied()));
    let shape = vec![images.len(), 3, size, size];
    serialize(path, [("pixel_values", Dtype::F32, shape, bytes)])
}

/// Writes a LLaVA-NeXT batch as `LlavaNextImageProcessor` returns it: `pixel_values`
/// `[N, P, 3, S, S]` f32, images with fewer views zero-padded to the largest `P`
/// (`_pad_for_batching`), and `image_sizes` `[N, 2]` i64, `(height, width)` per image.
pub fn write_anyres_pixel_values(path: &Path, images: &[AnyResPixels]) -> Result<(), DataError> {
    let size = common_size(path, images.iter().flat_map(|i| i.tiles.iter()))?;
    let views = images.iter().map(|i| i.tiles.len()).max().unwrap_or(0);
    let zeros = PixelValues::zeros(size);
    let padded = images.iter().flat_map(|i| {
        let pad = views - i.tiles.len();
        i.tiles.iter().chain(std::iter::repeat_n(&zeros, pad))
    });
    let pixels = f32_bytes(padded.flat_map(|p| p.data.iter().copied()));
    let sizes: Vec<u8> = images
        .iter()
        .flat_map(|i| [i.image_size.0 as i64, i.image_size.1 as i64])
        .flat_map(i64::to_le_bytes)
        .collect();
    serialize(
        path,
        [
            (
                "pixel_values",
                Dtype::F32,
                vec![images.len(), views, 3, size, size],
                pixels,
            ),
            ("image_sizes", Dtype::I64, vec![images.len(), 2], sizes),
        ],
    )
}

/// The side all views share, or a shape error naming `path`.
fn common_size<'a>(
    path: &Path,
    mut views: impl Iterator<Item = &'a PixelValues>,
) -> Result<usize, DataError> {
    let Some(first) = views.next() else {
        return Ok(0);
    };
    let size = first.size;
    match views.find(|p| p.size != size) {
        None => Ok(size),
        Some(bad) => Err(DataError::Shape {
            what: format!("pixel_values for {}", path.display()),
            expected: format!("[3, {size}, {size}]"),
            found: format!("[3, {0}, {0}]", bad.size),
        }),
    }
}

fn f32_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

fn serialize<const N: usize>(
    path: &Path,
    tensors: [(&str, Dtype, Vec<usize>, Vec<u8>); N],
) -> Result<(), DataError> {
    let err = |message: String| DataError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let mut views = Vec::with_capacity(N);
    for (name, dtype, shape, bytes) in &tensors {
        let view = TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| err(e.to_string()))?;
        views.push((*name, view));
    }
    safetensors::serialize_to_file(views, None, path).map_err(|e| err(e.to_string()))
}

/// Reads an f32 tensor `name` from a safetensors file: `(shape, values)`. Used by `inspect`
/// comparisons and tests.
pub fn read_f32_tensor(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    read_tensor(path, name, Dtype::F32, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads an i64 tensor `name` from a safetensors file: `(shape, values)` (`image_sizes`).
pub fn read_i64_tensor(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<i64>), DataError> {
    read_tensor(path, name, Dtype::I64, |b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

/// Tensor `name` of `dtype` from a safetensors file, each element decoded from its
/// little-endian bytes by `decode`.
fn read_tensor<T>(path: &Path, name: &str, dtype: Dtype, decode: impl Fn(&[u8]) -> T) -> Result<(Vec<usize>, Vec<T>), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let err = |message: String| DataError::Safetensors { path: path.to_path_buf(), message };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    let t = st.tensor(name).map_err(|e| err(format!("{name}: {e}")))?;
    if t.dtype() != dtype {
        return Err(err(format!("{name}: dtype {:?}, expected {dtype:?}", t.dtype())));
    }
    let values = t.data().chunks_exact(dtype.bitsize() / 8).map(decode).collect();
    Ok((t.shape().to_vec(), values))
}

/// The names of the tensors in a safetensors file, sorted.
pub fn tensor_names(path: &Path) -> Result<Vec<String>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| DataError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(n: usize, value: f32) -> AnyResPixels {
        let tile = PixelValues {
            size: 2,
            data: vec![value; 12],
        };
        AnyResPixels {
            tiles: vec![tile; n],
            image_size: (3, 5),
            best_resolution: (4, 4),
        }
    }

    #[test]
    fn anyres_batches_are_zero_padded_to_the_most_views() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.safetensors");
        write_anyres_pixel_values(&path, &[views(3, 1.0), views(1, 2.0)]).unwrap();
        let (shape, values) = read_f32_tensor(&path, "pixel_values").unwrap();
        assert_eq!(shape, vec![2, 3, 3, 2, 2]);
        assert!(values[..36].iter().all(|&v| v == 1.0));
        assert!(values[36..48].iter().all(|&v| v == 2.0));
        assert!(values[48..].iter().all(|&v| v == 0.0));
        let (shape, sizes) = read_i64_tensor(&path, "image_sizes").unwrap();
        assert_eq!((shape, sizes), (vec![2, 2], vec![3, 5, 3, 5]));
        assert!(read_f32_tensor(&path, "image_sizes")
            .unwrap_err()
            .to_string()
            .contains("I64"));
    }

    #[test]
    fn mixed_view_sizes_are_a_shape_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut odd = views(2, 0.0);
        odd.tiles[1] = PixelValues::zeros(3);
        let err = write_anyres_pixel_values(&dir.path().join("x.safetensors"), &[odd]).unwrap_err();
        assert!(err.to_string().contains("[3, 3, 3]"), "{err}");
    }
}
