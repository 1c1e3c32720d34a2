//! Patch, class and position embeddings (transformers `CLIPVisionEmbeddings`,
//! huggingface/transformers `src/transformers/models/clip/modeling_clip.py`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::prelude::*;

use crate::bicubic::resize_bicubic_grid;
use crate::config::ClipVisionConfig;

/// `embeddings.*`: a bias-free patch conv, a learned class token and learned absolute positions.
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings<B: Backend> {
    /// `embeddings.class_embedding` `[D]`.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// `embeddings.patch_embedding.weight` `[D, C, P, P]`, kernel = stride = patch, no bias.
    pub patch_embedding: Conv2d<B>,
    /// `embeddings.position_embedding.weight` `[T, D]`.
    pub position_embedding: Embedding<B>,
}

impl<B: Backend> ClipVisionEmbeddings<B> {
    pub(crate) fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        let p = config.patch_size;
        // Random init only matters for the seeded built-in towers; checkpoints overwrite it.
        let class_embedding = Initializer::Normal {
            mean: 0.0,
            std: (d as f64).powf(-0.5),
        }
        .init([d], device);
        let patch_embedding = Conv2dConfig::new([config.num_channels, d], [p, p])
            .with_stride([p, p])
            .with_bias(false)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device);
        let position_embedding = EmbeddingConfig::new(config.num_tokens(), d)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device);
        Self {
            class_embedding,
            patch_embedding,
            position_embedding,
        }
    }

    /// The float dtype the weights are stored (and computed) in.
    pub fn dtype(&self) -> burn::tensor::DType {
        self.patch_embedding.weight.val().dtype()
    }

    /// Side of a square patch (the patch conv's kernel and stride).
    pub fn patch_size(&self) -> usize {
        self.patch_embedding.weight.dims()[2]
    }

    /// Side of the square patch grid the position table was learned for: `sqrt(T - 1)`, as
    /// transformers derives it from `num_positions`.
    pub fn position_grid(&self) -> usize {
        let patches = self.position_embedding.weight.dims()[0].saturating_sub(1);
        let mut side = (patches as f64).sqrt() as usize;
        while side * side > patches {
            side -= 1;
        }
        while (side + 1) * (side + 1) <= patches {
            side += 1;
        }
        side
    }

    /// Position embeddings for a `grid_h × grid_w` patch grid, CLS row first: the learned table
    /// when the grid is the one it was made for, otherwise transformers'
    /// `interpolate_pos_encoding`: the CLS row kept, the patch rows reshaped to their square
    /// grid and resized bicubically (torch's `interpolate(mode="bicubic", align_corners=False)`,
    /// computed in f32 and cast back to the weights' dtype).
    ///
    /// # Shapes
    /// `-> [1 + grid_h·grid_w, D]`, patches in row-major grid order.
    pub fn position_embeddings(&self, grid_h: usize, grid_w: usize) -> Tensor<B, 2> {
        let table = self.position_embedding.weight.val(); // [T, D]
        let g = self.position_grid();
        if grid_h == g && grid_w == g {
            return table;
        }
        let [t, d] = table.dims();
        let cls = table.clone().slice([0..1, 0..d]);
        let grid = table.slice([1..t, 0..d]).reshape([g, g, d]);
        let patches = resize_bicubic_grid(grid, grid_h, grid_w).reshape([grid_h * grid_w, d]);
        Tensor::cat(vec![cls, patches], 0)
    }

    /// The patch conv's output as tokens, with the patch grid's height and width.
    ///
    /// Its kernel is its stride and it has no padding, so each output is the product of one
    /// patch's pixels (channel, row, column order, the weight's own) with the flattened weight:
    /// on the CPU backend in f32 that is one host matrix product over every patch of the batch
    /// (`anchorage_kernels::linear`), whose weight gradient is one more product, where burn-flex's
    /// convolution goes through a 3-D convolution and strided copies both ways (about 8% of the
    /// demo vision tower's training step). Elsewhere, and in other dtypes, the convolution itself.
    /// Trailing pixels that fill no whole patch are left out, as the convolution leaves them.
    ///
    /// # Shapes
    /// `pixel_values [B, C, H, W] -> [B, (H/P)·(W/P), D]`
    fn embed_patches(&self, pixel_values: Tensor<B, 4>) -> (Tensor<B, 3>, usize, usize) {
        let [b, c, h, w] = pixel_values.dims();
        let [d, channels, p, _] = self.patch_embedding.weight.dims();
        let (gh, gw) = (h / p, w / p);
        // Anything the product does not cover (a channel count that is not the weight's, an image
        // smaller than a patch) goes to the convolution, which behaves there as it always has
        // (`ClipVisionModel::forward` refuses such inputs before they get here).
        if c == channels && gh > 0 && gw > 0 && anchorage_kernels::runs_host_passes(&pixel_values) {
            let weight = self.patch_embedding.weight.val().reshape([d, c * p * p]).transpose(); // [C·P·P, D]
            let pixels = if (h, w) == (gh * p, gw * p) { pixel_values.clone() } else { pixel_values.clone().slice([0..b, 0..c, 0..gh * p, 0..gw * p]) };
            let rows = pixels
                .reshape([b, c, gh, p, gw, p])
                .permute([0, 2, 4, 1, 3, 5])
                .reshape([b, gh * gw, c * p * p]);
            if let Some(tokens) = anchorage_kernels::linear::linear(&rows, &weight, None) {
                return (tokens, gh, gw);
            }
        }
        let patches = self.patch_embedding.forward(pixel_values); // [B, D, gh, gw]
        let [b, d, gh, gw] = patches.dims();
        (patches.reshape([b, d, gh * gw]).swap_dims(1, 2), gh, gw)
    }

    /// Embeds images: `[CLS ‖ patches] + positions`, patches in row-major grid order. An input
    /// whose patch grid differs from the position table's gets interpolated positions
    /// ([`Self::position_embeddings`]); [`crate::ClipVisionModel::forward`] decides whether that is
    /// allowed (`VisionRequest::interpolate_pos_encoding`).
    ///
    /// The input is cast to the weights' dtype first, as transformers does.
    ///
    /// # Shapes
    /// `pixel_values [B, C, H, W] -> [B, T, D]` with `T = (H/P)·(W/P) + 1`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let pixel_values = pixel_values.cast(self.dtype());
        let (patches, gh, gw) = self.embed_patches(pixel_values); // [B, N, D]
        let [b, _, d] = patches.dims();
        let cls = self
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([b, 1, d]);
        let tokens = Tensor::cat(vec![cls, patches], 1); // [B, T, D]
        let positions = self.position_embeddings(gh, gw).unsqueeze_dim::<3>(0); // [1, T, D]
        tokens + positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type A = Autodiff<Flex>;

    fn worst<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// The host product over patches equals the patch convolution, output and weight gradient,
    /// on sizes a patch divides and sizes with trailing pixels (19 × 21 in patches of 4).
    #[test]
    fn patch_product_equals_the_convolution() {
        let device = Default::default();
        let config = ClipVisionConfig::new(32, 4, 24, 48, 1, 2);
        let embeddings = ClipVisionEmbeddings::<A>::new(&config, &device);
        for [h, w] in [[16, 16], [19, 21]] {
            let pixels: Tensor<A, 4> = Tensor::random([2, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
            assert!(anchorage_kernels::runs_host_passes(&pixels), "the host product is what this test checks");
            let (ours, gh, gw) = embeddings.embed_patches(pixels.clone());
            assert_eq!((gh, gw), (h / 4, w / 4));
            let conv = embeddings.patch_embedding.forward(pixels);
            let [b, d, ch, cw] = conv.dims();
            assert_eq!((ch, cw), (gh, gw));
            let theirs = conv.reshape([b, d, gh * gw]).swap_dims(1, 2);
            assert!(worst(ours.clone().inner(), theirs.clone().inner()) < 1e-5, "{h}x{w}: output");
            // The same upstream gradient through each: the weight's gradients agree.
            let upstream: Tensor<A, 3> = Tensor::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
            let weight = &embeddings.patch_embedding.weight;
            let ours_grad = weight.val().grad(&(ours * upstream.clone()).sum().backward()).unwrap();
            let theirs_grad = weight.val().grad(&(theirs * upstream).sum().backward()).unwrap();
            assert!(worst(ours_grad, theirs_grad) < 1e-4, "{h}x{w}: weight gradient");
        }
    }
}
