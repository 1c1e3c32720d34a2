//! Patch, class and position embeddings (transformers `CLIPVisionEmbeddings`,
//! huggingface/transformers `src/transformers/models/clip/modeling_clip.py`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::prelude::*;

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

    /// Embeds images: `[CLS ‖ patches] + positions`, patches in row-major grid order.
    ///
    /// The input is cast to the weights' dtype first, as transformers does.
    ///
    /// # Shapes
    /// `pixel_values [B, C, S, S] -> [B, T, D]` with `T = (S/P)² + 1`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let pixel_values = pixel_values.cast(self.dtype());
        let patches = self.patch_embedding.forward(pixel_values); // [B, D, g, g]
        let [b, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2); // [B, N, D]
        let cls = self
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([b, 1, d]);
        let tokens = Tensor::cat(vec![cls, patches], 1); // [B, T, D]
        let positions = self.position_embedding.weight.val().unsqueeze_dim::<3>(0); // [1, T, D]
        tokens + positions
    }
}
