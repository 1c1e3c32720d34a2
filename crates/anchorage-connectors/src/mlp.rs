//! LLaVA's projector (`linear`, `mlpNx_gelu`) and the same Linear-act-Linear stack used as the
//! projector after a resampler (AcFormer, GELU) and as Honeybee's readout (SiLU).
//!
//! Follows haotian-liu/LLaVA `llava/model/multimodal_projector/builder.py` (l.33–51):
//! `Sequential(Linear(d_in, d_out), GELU, Linear(d_out, d_out), ...)`; GELU is the exact erf form
//! (on the CPU backend the fused host pass, with PyTorch's CPU `erf` approximation).
//! Honeybee's `build_mlp` (kakaobrain/honeybee `honeybee/projectors/projectors.py`) is the same
//! stack with SiLU.

use anchorage_kernels::activation::gelu;
use anchorage_kernels::activation::reference::gelu_reference;
use anchorage_kernels::linear as fused_linear;
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::weights::{join, linear, WeightIo};

/// The activation between the linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlpActivation {
    /// `nn.GELU()`: exact, `0.5·x·(1 + erf(x/√2))`.
    Gelu,
    /// `nn.SiLU()`.
    Silu,
}

/// `depth` linear layers: `Linear(d_input, d_output)` then `depth - 1` × (act, `Linear(d_output, d_output)`).
#[derive(Config, Debug, PartialEq)]
pub struct MlpConfig {
    /// Input width (vision hidden size, 1024 for CLIP ViT-L).
    pub d_input: usize,
    /// Output width (LLM hidden size, 4096 for 7B).
    pub d_output: usize,
    /// Linear layers; 1 is LLaVA's `linear` (or `mlp1x_gelu`, see `sequential`), 2 is
    /// `mlp2x_gelu`. 0 is the identity (a resampler without projector, `d_output == d_input`).
    #[config(default = 2)]
    pub depth: usize,
    #[config(default = "MlpActivation::Gelu")]
    pub activation: MlpActivation,
    /// Depth 1 only: the layer sits in a one-entry `nn.Sequential` (keys `0.weight`, LLaVA's
    /// `mlp1x_gelu`) rather than being a bare `nn.Linear` (keys `weight`, LLaVA's `linear`).
    /// Deeper stacks are always Sequentials.
    #[config(default = false)]
    pub sequential: bool,
}

/// [`MlpConfig`] as exports store it, tolerating fields added since (`sequential`): burn's
/// `Config` derive requires every field when deserialising.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlpConfigWire {
    d_input: usize,
    d_output: usize,
    #[serde(default = "two")]
    depth: usize,
    #[serde(default = "default_activation")]
    activation: MlpActivation,
    #[serde(default)]
    sequential: bool,
}

fn two() -> usize {
    2
}

fn default_activation() -> MlpActivation {
    MlpActivation::Gelu
}

/// Reads an [`MlpConfig`] written by any anchorage version (see [`MlpConfigWire`]).
pub(crate) fn deserialize_config<'de, D: serde::Deserializer<'de>>(d: D) -> Result<MlpConfig, D::Error> {
    let w = MlpConfigWire::deserialize(d)?;
    Ok(MlpConfig { d_input: w.d_input, d_output: w.d_output, depth: w.depth, activation: w.activation, sequential: w.sequential })
}

/// See [`MlpConfig`].
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub layers: Vec<Linear<B>>,
    #[module(skip)]
    pub activation: MlpActivation,
    /// See [`MlpConfig::sequential`].
    #[module(skip)]
    pub sequential: bool,
}

impl MlpConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        let layers = (0..self.depth)
            .map(|i| {
                let d_in = if i == 0 { self.d_input } else { self.d_output };
                LinearConfig::new(d_in, self.d_output).init(device)
            })
            .collect();
        Mlp { layers, activation: self.activation, sequential: self.sequential || self.depth > 1 }
    }
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// `[batch, tokens, d_input] -> [batch, tokens, d_output]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                x = match self.activation {
                    MlpActivation::Gelu => gelu(&x).unwrap_or_else(|| gelu_reference(x)),
                    MlpActivation::Silu => silu(x),
                };
            }
            x = fused_linear::forward(layer, x);
        }
        x
    }

    /// Whether this is LLaVA's `linear`: one bare `nn.Linear` (keys `weight`, `bias`).
    pub fn is_bare_linear(&self) -> bool {
        self.layers.len() == 1 && !self.sequential
    }

    /// Visits the weights as `nn.Sequential` entries `prefix.{first + 2i}` (the activations take
    /// the odd indices): LLaVA uses `first = 0`, AcFormer's projector after the resampler `first = 1`.
    pub fn visit_weights<I: WeightIo<B>>(&mut self, prefix: &str, first: usize, io: &mut I) -> crate::Result<()> {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            linear(io, &join(prefix, &(first + 2 * i).to_string()), layer)?;
        }
        Ok(())
    }
}
