//! The images of a batch as one tensor for the vision tower, and which image each sample uses.

use anchorage_data::PixelValues;
use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::{ModelError, IMAGE_TOKEN_INDEX};

/// One sample's token ids (with LLaVA's `-200` placeholder) and its preprocessed image, if any.
#[derive(Debug, Clone, Copy)]
pub struct ImageInput<'a> {
    pub input_ids: &'a [i64],
    pub pixels: Option<&'a PixelValues>,
}

/// Stacks the images `[images, 3, S, S]` and says which image each sample's placeholder uses. A
/// sample with an image but no placeholder (or the reverse) gets none; the splice then reports
/// the placeholder count. A batch without any image gets one zero image, as LLaVA feeds
/// text-only samples, so the connector stays in the graph (its gradient is then zero).
pub fn stack_images<V: Backend>(samples: &[ImageInput<'_>], size: usize, device: &V::Device) -> Result<(Tensor<V, 4>, Vec<Vec<usize>>), ModelError> {
    let mut flat = Vec::new();
    let mut image_of = Vec::with_capacity(samples.len());
    let mut count = 0;
    for (i, s) in samples.iter().enumerate() {
        match s.pixels {
            Some(p) if s.input_ids.contains(&IMAGE_TOKEN_INDEX) => {
                if p.size != size || p.data.len() != 3 * size * size {
                    return Err(ModelError::ImageSize { sample: i, expected: size, found: p.size });
                }
                flat.extend_from_slice(&p.data);
                image_of.push(vec![count]);
                count += 1;
            }
            _ => image_of.push(Vec::new()),
        }
    }
    if count == 0 {
        flat = vec![0.0; 3 * size * size];
        count = 1;
    }
    Ok((Tensor::from_data(TensorData::new(flat, [count, 3, size, size]), device), image_of))
}
