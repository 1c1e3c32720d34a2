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
        let patches = self.patch_embedding.forward(pixel_values); // [B, D, gh, gw]
        let [b, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2); // [B, N, D]
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
