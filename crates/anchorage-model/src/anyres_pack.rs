//! LLaVA-NeXT AnyRes in the composed model: every view of every image of a batch (base view, then
//! its grid tiles) goes through the tower in one call and through the connector per view; each
//! image's views are then packed into the rows the LLM sees, with the trainable `image_newline`.
//!
//! Packing (see anchorage-data [`TilePacking`]):
//! - a connector that keeps the tower's patch grid (MLP): LLaVA-NeXT's own packing, the base
//!   view's rows then the grid's feature map unpadded to the image, each row followed by
//!   `image_newline` ([`pack_image_features`], the function `train inspect llava` uses; transformers
//!   5.23 `LlavaNextModel.pack_image_features`);
//! - a connector with a fixed token count and no spatial grid (Anchor Former, resampler,
//!   C-Abstractor): the base view's tokens, then per grid row its tiles' tokens concatenated and one
//!   `image_newline`. Unpadding has no meaning without a grid; the newline still marks where a row
//!   of tiles ends, as it marks a row of the feature map for the MLP. The Anchor Former chooses its
//!   anchors per view from that view's own CLS attention: AcFormer (Liu et al. 2024) works on one
//!   336 px view and never tiles, and each tile is such a view, with its own CLS token.
//!
//! An image without grid tiles (a sample without AnyRes views, or the zero image of a text-only
//! batch) packs as LLaVA-NeXT packs a single view: its tokens then one `image_newline`.

use anchorage_data::image::TilePacking;
use anchorage_data::{AnyResViews, PixelValues, Sample};
use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::hf_llava::{pack_image_features, AnyResGrid};
use crate::{ModelError, IMAGE_TOKEN_INDEX};

/// Where one image's views sit among the batch's views, and its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageViews {
    /// Index of its base view; its grid tiles follow it.
    pub first: usize,
    /// Tile grid `(rows, columns)`; `(0, 0)` for a single view.
    pub grid: (usize, usize),
    /// The original `(height, width)`.
    pub image_size: (usize, usize),
}

impl ImageViews {
    pub fn count(&self) -> usize {
        1 + self.grid.0 * self.grid.1
    }
}

/// The views of a batch, ready for the tower.
#[derive(Debug, Clone)]
pub struct BatchViews<V: Backend> {
    /// Every view of every image, `[views, 3, S, S]`.
    pub pixels: Tensor<V, 4>,
    /// Each image's place among the views.
    pub images: Vec<ImageViews>,
    /// For each sample, the images its placeholders use.
    pub image_of: Vec<Vec<usize>>,
}

/// One sample's part in [`stack_views_of`]: its ids (a `-200` placeholder uses its image), its
/// base view and its AnyRes tiles (none: a single view).
#[derive(Debug, Clone, Copy)]
pub struct ViewsInput<'a> {
    pub input_ids: &'a [i64],
    pub pixels: Option<&'a PixelValues>,
    pub anyres: Option<&'a AnyResViews>,
}

/// The views of a batch, each image's place among them, and which image each sample's
/// placeholder uses. A batch without any image gets one zero view (as [`crate::stack_images`]),
/// packed as an image no sample uses, so the connector and `image_newline` stay in the graph.
pub fn stack_views<V: Backend>(
    samples: &[Sample],
    size: usize,
    device: &V::Device,
) -> Result<BatchViews<V>, ModelError> {
    let inputs: Vec<ViewsInput<'_>> = samples
        .iter()
        .map(|s| ViewsInput {
            input_ids: &s.input_ids,
            pixels: s.pixels.as_ref(),
            anyres: s.anyres.as_ref(),
        })
        .collect();
    stack_views_of(&inputs, size, device)
}

/// [`stack_views`] for any inputs (training samples, generation prompts).
pub fn stack_views_of<V: Backend>(
    samples: &[ViewsInput<'_>],
    size: usize,
    device: &V::Device,
) -> Result<BatchViews<V>, ModelError> {
    let mut flat = Vec::new();
    let mut images = Vec::new();
    let mut image_of = Vec::with_capacity(samples.len());
    let mut views = 0;
    for (i, s) in samples.iter().enumerate() {
        let Some(base) = s
            .pixels
            .filter(|_| s.input_ids.contains(&IMAGE_TOKEN_INDEX))
        else {
            image_of.push(Vec::new());
            continue;
        };
        let tiles = s.anyres.map_or(&[][..], |a| a.tiles.as_slice());
        let (grid, image_size) = s
            .anyres
            .map_or(((0, 0), (size, size)), |a| (a.grid, a.image_size));
        if tiles.len() != grid.0 * grid.1 {
            return Err(ModelError::Shape {
                what: "AnyRes tiles of a sample",
                expected: vec![grid.0 * grid.1],
                found: vec![tiles.len()],
            });
        }
        for p in std::iter::once(base).chain(tiles) {
            if p.size != size || p.data.len() != 3 * size * size {
                return Err(ModelError::ImageSize {
                    sample: i,
                    expected: size,
                    found: p.size,
                });
            }
            flat.extend_from_slice(&p.data);
        }
        image_of.push(vec![images.len()]);
        images.push(ImageViews {
            first: views,
            grid,
            image_size,
        });
        views += 1 + tiles.len();
    }
    if images.is_empty() {
        flat = vec![0.0; 3 * size * size];
        images.push(ImageViews {
            first: 0,
            grid: (0, 0),
            image_size: (size, size),
        });
        views = 1;
    }
    let pixels = Tensor::from_data(TensorData::new(flat, [views, 3, size, size]), device);
    Ok(BatchViews {
        pixels,
        images,
        image_of,
    })
}

/// Packs every image of a batch from the connector's output per view.
///
/// # Shapes
/// `features [views, k, D]`, `image_newline [D]` → `[sum of rows, D]` and each image's row count
pub fn pack_batch<B: Backend>(
    features: Tensor<B, 3>,
    images: &[ImageViews],
    packing: TilePacking,
    image_newline: Tensor<B, 1>,
) -> Result<(Tensor<B, 2>, Vec<usize>), ModelError> {
    let [views, k, d] = features.dims();
    if k != packing.tile_tokens() || image_newline.dims() != [d] {
        return Err(ModelError::Shape {
            what: "connector output per view",
            expected: vec![views, packing.tile_tokens(), image_newline.dims()[0]],
            found: vec![views, k, d],
        });
    }
    let mut packed = Vec::with_capacity(images.len());
    for image in images {
        let end = image.first + image.count();
        if end > views {
            return Err(ModelError::Shape {
                what: "AnyRes views",
                expected: vec![end],
                found: vec![views],
            });
        }
        let tiles = features.clone().slice([image.first..end, 0..k, 0..d]);
        let rows = match packing {
            TilePacking::Spatial { side } => {
                let grid = AnyResGrid {
                    rows: image.grid.0,
                    cols: image.grid.1,
                    num_tiles: image.count(),
                };
                pack_image_features(tiles, grid, side, image.image_size, image_newline.clone())
                    .map_err(|e| ModelError::Spec {
                        key: "data.aspect".into(),
                        message: format!("AnyRes packing: {e}"),
                    })?
            }
            TilePacking::Fixed { .. } => pack_fixed(tiles, image.grid, image_newline.clone()),
        };
        packed.push(rows);
    }
    let counts = packed.iter().map(|t| t.dims()[0]).collect();
    Ok((Tensor::cat(packed, 0), counts))
}

/// Fixed-count packing of one image: the base view's tokens, then per grid row its tiles' tokens
/// and one `image_newline`; a single view gets its tokens then one `image_newline`.
///
/// # Shapes
/// `tiles [1 + rows·cols, k, D]` → `[k + rows·(cols·k + 1), D]` (`[k + 1, D]` for one view)
fn pack_fixed<B: Backend>(
    tiles: Tensor<B, 3>,
    grid: (usize, usize),
    image_newline: Tensor<B, 1>,
) -> Tensor<B, 2> {
    let [p, k, d] = tiles.dims();
    let newline = image_newline.reshape([1, d]);
    let base = tiles.clone().slice([0..1, 0..k, 0..d]).reshape([k, d]);
    if p == 1 {
        return Tensor::cat(vec![base, newline], 0);
    }
    let (rows, cols) = grid;
    let mut parts = vec![base];
    for r in 0..rows {
        let start = 1 + r * cols;
        parts.push(
            tiles
                .clone()
                .slice([start..start + cols, 0..k, 0..d])
                .reshape([cols * k, d]),
        );
        parts.push(newline.clone());
    }
    Tensor::cat(parts, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{splice_rows, SpliceInput, SplicePlan, IGNORE_INDEX};
    use anchorage_data::{AnyResViews, PixelValues};
    use burn::backend::Flex;

    type B = Flex;

    /// A sample `[1, <image>, 5, 6]` whose image has `grid` tiles of side 2 (pixel values say the view).
    fn sample(grid: (usize, usize), image_size: (usize, usize), tag: f32) -> Sample {
        let view = |v: usize| PixelValues {
            size: 2,
            data: vec![tag + v as f32; 12],
        };
        let tiles = (1..=grid.0 * grid.1).map(view).collect();
        Sample {
            id: format!("s{tag}"),
            input_ids: vec![1, IMAGE_TOKEN_INDEX, 5, 6],
            labels: vec![IGNORE_INDEX, IGNORE_INDEX, 5, 6],
            pixels: Some(view(0)),
            anyres: Some(AnyResViews {
                tiles,
                image_size,
                grid,
            }),
            mismatch: false,
        }
    }

    /// Connector stand-in: `side²` tokens per view whose one feature is `view * 100 + token`.
    fn features(views: usize, side: usize) -> Tensor<B, 3> {
        let n = side * side;
        let values: Vec<f32> = (0..views * n)
            .map(|i| ((i / n) * 100 + i % n) as f32)
            .collect();
        Tensor::from_data(TensorData::new(values, [views, n, 1]), &Default::default())
    }

    #[test]
    fn a_batch_of_two_aspect_ratios_gives_each_sample_its_own_token_count_and_span() {
        // A wide image on a 1x2 grid and a tall one on a 2x1 grid, 2x2 features per tile.
        let samples = [
            sample((1, 2), (10, 30), 0.0),
            sample((2, 1), (30, 10), 10.0),
        ];
        let BatchViews {
            pixels,
            images,
            image_of,
        } = stack_views::<B>(&samples, 2, &Default::default()).unwrap();
        assert_eq!(pixels.dims(), [6, 3, 2, 2]);
        assert_eq!(
            images,
            vec![
                ImageViews {
                    first: 0,
                    grid: (1, 2),
                    image_size: (10, 30)
                },
                ImageViews {
                    first: 3,
                    grid: (2, 1),
                    image_size: (30, 10)
                },
            ]
        );
        assert_eq!(image_of, vec![vec![0], vec![1]]);
        let packing = TilePacking::Spatial { side: 2 };
        let newline =
            Tensor::<B, 1>::from_data(TensorData::new(vec![-1f32], [1]), &Default::default());
        let (rows, counts) = pack_batch(features(6, 2), &images, packing, newline).unwrap();
        // Wide: 2x4 map, unpad keeps rows 0..2 (10*4/30 = 1.33 -> 1, pad 0): 4 + 2 * 5 = 14.
        // Tall: 4x2 map, unpad keeps columns 0..2: 4 + 4 * 3 = 16. The data side counts the same.
        assert_eq!(
            counts,
            vec![
                packing.packed_tokens((1, 2), (10, 30)),
                packing.packed_tokens((2, 1), (30, 10))
            ]
        );
        assert_eq!(counts, vec![14, 16]);
        let inputs: Vec<SpliceInput<'_>> = samples
            .iter()
            .zip(&image_of)
            .map(|(s, i)| SpliceInput {
                input_ids: &s.input_ids,
                labels: &s.labels,
                images: i,
            })
            .collect();
        let plan = SplicePlan::with_image_tokens(&inputs, &counts, 64, 0).unwrap();
        assert_eq!(plan.lengths, vec![1 + 14 + 2, 1 + 16 + 2]);
        assert_eq!(plan.len, 19);
        assert_eq!(
            plan.image_spans,
            vec![
                vec![crate::ImageSpan { start: 1, len: 14 }],
                vec![crate::ImageSpan { start: 1, len: 16 }]
            ]
        );
        // Sample 1's image rows are the table's rows after sample 0's.
        let text_rows = (2 * plan.text_len) as i64;
        assert_eq!(plan.rows[plan.len + 1], text_rows + 14);
        assert_eq!(
            &plan.labels[..3],
            &[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
        );
        assert_eq!(&plan.labels[15..17], &[5, 6]);
        // The spliced embeddings carry sample 1's base view then its first map row and a newline.
        let text = Tensor::<B, 3>::zeros([2, plan.text_len, 1], &Default::default());
        let embeds = splice_rows(&plan, text, rows)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let second: Vec<f32> = embeds[plan.len..plan.len + 8].to_vec();
        assert_eq!(second, vec![0., 300., 301., 302., 303., 400., 401., -1.]);
    }

    #[test]
    fn mlp_packing_equals_hf_llava_packing_per_image() {
        let samples = [
            sample((2, 2), (30, 50), 0.0),
            sample((1, 3), (20, 61), 10.0),
        ];
        let BatchViews { images, .. } = stack_views::<B>(&samples, 2, &Default::default()).unwrap();
        let newline =
            Tensor::<B, 1>::from_data(TensorData::new(vec![0.5f32], [1]), &Default::default());
        let all = features(9, 2);
        let (rows, counts) = pack_batch(
            all.clone(),
            &images,
            TilePacking::Spatial { side: 2 },
            newline.clone(),
        )
        .unwrap();
        let got = rows.into_data().to_vec::<f32>().unwrap();
        let mut at = 0;
        for (image, &count) in images.iter().zip(&counts) {
            let tiles = all
                .clone()
                .slice([image.first..image.first + image.count(), 0..4, 0..1]);
            let grid = AnyResGrid {
                rows: image.grid.0,
                cols: image.grid.1,
                num_tiles: image.count(),
            };
            let want =
                pack_image_features(tiles, grid, 2, image.image_size, newline.clone()).unwrap();
            let want = want.into_data().to_vec::<f32>().unwrap();
            assert_eq!(&got[at..at + count], want.as_slice());
            at += count;
        }
        assert_eq!(at, got.len());
    }

    #[test]
    fn fixed_packing_puts_one_newline_after_each_row_of_tiles() {
        let samples = [sample((2, 2), (9, 9), 0.0)];
        let BatchViews { images, .. } = stack_views::<B>(&samples, 2, &Default::default()).unwrap();
        let newline =
            Tensor::<B, 1>::from_data(TensorData::new(vec![-1f32], [1]), &Default::default());
        let packing = TilePacking::Fixed { tokens: 1 };
        let (rows, counts) = pack_batch(features(5, 1), &images, packing, newline).unwrap();
        assert_eq!(counts, vec![packing.packed_tokens((2, 2), (9, 9))]);
        assert_eq!(
            rows.into_data().to_vec::<f32>().unwrap(),
            vec![0., 100., 200., -1., 300., 400., -1.]
        );
    }

    #[test]
    fn a_text_only_batch_packs_one_zero_view_that_no_sample_uses() {
        let mut s = sample((1, 2), (10, 30), 0.0);
        s.input_ids = vec![1, 5];
        s.labels = vec![1, 5];
        let BatchViews {
            pixels,
            images,
            image_of,
        } = stack_views::<B>(&[s], 2, &Default::default()).unwrap();
        assert_eq!(pixels.dims(), [1, 3, 2, 2]);
        assert_eq!(image_of, vec![Vec::<usize>::new()]);
        let newline = Tensor::<B, 1>::zeros([1], &Default::default());
        let (_, counts) = pack_batch(
            features(1, 2),
            &images,
            TilePacking::Spatial { side: 2 },
            newline,
        )
        .unwrap();
        assert_eq!(
            counts,
            vec![5],
            "the base view and one newline, as LLaVA-NeXT packs a single view"
        );
    }

    #[test]
    fn tiles_missing_from_a_sample_are_an_error() {
        let mut s = sample((1, 2), (10, 30), 0.0);
        s.anyres.as_mut().unwrap().tiles.pop();
        assert!(stack_views::<B>(&[s], 2, &Default::default()).is_err());
    }
}
