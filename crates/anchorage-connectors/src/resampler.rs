//! The Perceiver Resampler baseline: learnable latents attend to the vision tokens, then an MLP
//! projector lifts them to the LLM width.
//!
//! Follows liuhaogeng/Anchor-Former `builder.py` (l.86–248, 280–311): `Sequential([0]
//! PerceiverResampler, [1] Linear, [2] GELU, [3] Linear)` with the learnable-latent line restored
//! (the "PR" baseline), and mlfoundations/open_flamingo `open_flamingo/src/helpers.py` for the
//! open_flamingo variant (keys/values = media ‖ latents).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::mlp::{Mlp, MlpActivation, MlpConfig};
use crate::perceiver::{Perceiver, PerceiverConfig};
use crate::weights::{join, WeightIo};

/// Perceiver Resampler + MLP projector.
#[derive(Config, Debug, PartialEq)]
pub struct ResamplerConfig {
    pub perceiver: PerceiverConfig,
    /// Output width (LLM hidden size).
    pub d_output: usize,
    #[config(default = 2)]
    pub projector_depth: usize,
}

/// See [`ResamplerConfig`].
#[derive(Module, Debug)]
pub struct Resampler<B: Backend> {
    pub perceiver: Perceiver<B>,
    pub projector: Mlp<B>,
}

impl ResamplerConfig {
    /// Preset: AcFormer's PR baseline for CLIP ViT-L (1024) into a 7B LLM (4096), 144 latents.
    pub fn acformer_baseline() -> Self {
        Self::new(PerceiverConfig::new(1024), 4096)
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Resampler<B> {
        Resampler {
            perceiver: self.perceiver.init(device),
            projector: MlpConfig::new(self.perceiver.d_model, self.d_output)
                .with_depth(self.projector_depth)
                .with_activation(MlpActivation::Gelu)
                .init(device),
        }
    }
}

impl<B: Backend> Resampler<B> {
    /// # Shapes
    /// `features [batch, tokens, d_vision] -> [batch, num_latents, d_output]`
    pub fn forward(&self, features: Tensor<B, 3>) -> crate::Result<Tensor<B, 3>> {
        Ok(self.projector.forward(self.perceiver.forward(features, None)?))
    }

    /// Canonical keys: `0.<perceiver>`, projector at `1`, `3`, ...
    pub fn visit_weights<I: WeightIo<B>>(&mut self, prefix: &str, io: &mut I) -> crate::Result<()> {
        self.perceiver.visit_weights(&join(prefix, "0"), io)?;
        self.projector.visit_weights(prefix, 1, io)
    }
}
