//! Honeybee's C-Abstractor: RegNet stages, adaptive average pooling to a square query grid, RegNet
//! stages, SiLU MLP readout; learned position embedding on the input tokens.
//!
//! Follows kakaobrain/honeybee `honeybee/projectors/projectors.py` (l.1–177: `Projector`,
//! `ConvProjector`, `CAbstractor`, `build_mlp`) with defaults from `configs/model_config/c-abs.yaml`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{backend::Backend, Distribution, Tensor};

use crate::error::ConnectorError;
use crate::mlp::{Mlp, MlpActivation, MlpConfig};
use crate::regnet::RegStage;
use crate::weights::{join, layer_norm, WeightIo};

/// C-Abstractor sizes.
#[derive(Config, Debug, PartialEq)]
pub struct CAbstractorConfig {
    /// Vision hidden size (`encoder_hidden_size`).
    pub d_input: usize,
    /// LLM hidden size (`output_hidden_size`).
    pub d_output: usize,
    /// Input tokens, a square (576 = 24×24 for CLIP ViT-L/14-336 without CLS).
    pub num_input_tokens: usize,
    /// Channels inside the stages.
    #[config(default = 1024)]
    pub hidden_size: usize,
    /// Bottleneck blocks per stage (0: pooling only).
    #[config(default = 3)]
    pub depth: usize,
    #[config(default = 2)]
    pub mlp_depth: usize,
    /// Output tokens, a square (144 = 12×12).
    #[config(default = 144)]
    pub num_queries: usize,
    #[config(default = true)]
    pub pos_emb: bool,
    /// timm `LayerNorm` (eps 1e-6) on the input tokens.
    #[config(default = false)]
    pub prenorm: bool,
}

/// See [`CAbstractorConfig`].
#[derive(Module, Debug)]
pub struct CAbstractor<B: Backend> {
    /// `[1, num_input_tokens, d_input]`.
    pub pos_emb: Option<Param<Tensor<B, 3>>>,
    pub prenorm: Option<LayerNorm<B>>,
    /// `net.0`; absent when depth is 0.
    pub s1: Option<RegStage<B>>,
    /// `net.1`.
    pub sampler: AdaptiveAvgPool2d,
    /// `net.2`.
    pub s2: Option<RegStage<B>>,
    pub readout: Mlp<B>,
    pub num_queries: usize,
}

fn square_side(n: usize) -> Option<usize> {
    let s = (n as f64).sqrt().round() as usize;
    (s * s == n && s > 0).then_some(s)
}

impl CAbstractorConfig {
    /// Honeybee C-7B-M144 sizes: CLIP ViT-L/14-336 (1024, 576 tokens) into a 7B LLM (4096).
    pub fn honeybee_m144() -> Self {
        Self::new(1024, 4096, 576)
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> crate::Result<CAbstractor<B>> {
        let hw_q = square_side(self.num_queries).ok_or_else(|| ConnectorError::Config {
            key: "num_queries".into(),
            message: format!("{} is not a square number", self.num_queries),
        })?;
        square_side(self.num_input_tokens).ok_or_else(|| ConnectorError::Config {
            key: "num_input_tokens".into(),
            message: format!("{} vision tokens do not form a square grid", self.num_input_tokens),
        })?;
        let (s1, s2, readout_in) = if self.depth == 0 {
            (None, None, self.d_input)
        } else {
            (
                Some(RegStage::new(self.depth, self.d_input, self.hidden_size, device)),
                Some(RegStage::new(self.depth, self.hidden_size, self.hidden_size, device)),
                self.hidden_size,
            )
        };
        let pos_emb = self.pos_emb.then(|| {
            Param::from_tensor(Tensor::random([1, self.num_input_tokens, self.d_input], Distribution::Normal(0.0, 0.02), device))
        });
        Ok(CAbstractor {
            pos_emb,
            prenorm: self.prenorm.then(|| LayerNormConfig::new(self.d_input).with_epsilon(1e-6).init(device)),
            s1,
            sampler: AdaptiveAvgPool2dConfig::new([hw_q, hw_q]).init(),
            s2,
            readout: MlpConfig::new(readout_in, self.d_output)
                .with_depth(self.mlp_depth)
                .with_activation(MlpActivation::Silu)
                .init(device),
            num_queries: self.num_queries,
        })
    }
}

impl<B: Backend> CAbstractor<B> {
    /// # Shapes
    /// `features [batch, tokens, d_input]` (tokens a square, CLS removed) `-> [batch, num_queries, d_output]`
    pub fn forward(&self, features: Tensor<B, 3>) -> crate::Result<Tensor<B, 3>> {
        let [b, l, d] = features.dims();
        // AcFormer's C-Abstractor receives CLS + patches and drops token 0 itself.
        let pe_len = self.pos_emb.as_ref().map(|p| p.lazy_shape().dims::<3>()[1]);
        let (features, l) = if square_side(l).is_none() && l > 1 && square_side(l - 1).is_some() && pe_len != Some(l) {
            (features.narrow(1, 1, l - 1), l - 1)
        } else {
            (features, l)
        };
        let side = square_side(l).ok_or_else(|| ConnectorError::InputShape {
            what: "c_abstractor features".into(),
            expected: "[batch, tokens, d] with tokens a square number, or CLS + a square number".into(),
            found: vec![b, l, d],
        })?;
        let mut x = features;
        if let Some(norm) = &self.prenorm {
            x = norm.forward(x);
        }
        if let Some(p) = &self.pos_emb {
            let pe = p.val();
            if pe.dims()[1] != l || pe.dims()[2] != d {
                return Err(ConnectorError::InputShape {
                    what: "c_abstractor features".into(),
                    expected: format!("[batch, {}, {}] (the position embedding's size)", pe.dims()[1], pe.dims()[2]),
                    found: vec![b, l, d],
                });
            }
            x = x + pe;
        }
        // "b (h w) d -> b d h w", row-major: token t = h·side + w.
        let mut x = x.reshape([b, side, side, d]).permute([0, 3, 1, 2]);
        if let Some(s1) = &self.s1 {
            x = s1.forward(x);
        }
        x = self.sampler.forward(x);
        if let Some(s2) = &self.s2 {
            x = s2.forward(x);
        }
        let [_, c, hq, wq] = x.dims();
        let x = x.permute([0, 2, 3, 1]).reshape([b, hq * wq, c]);
        Ok(self.readout.forward(x))
    }

    /// Canonical keys (Honeybee's, relative to `abstractor`): `pos_emb`, `prenorm`, `net.0.b{i}.*`,
    /// `net.2.b{i}.*`, `readout.{0, 2}`.
    pub fn visit_weights<I: WeightIo<B>>(&mut self, prefix: &str, io: &mut I) -> crate::Result<()> {
        if let Some(p) = self.pos_emb.as_mut() {
            io.tensor(&join(prefix, "pos_emb"), p, false)?;
        }
        if let Some(n) = self.prenorm.as_mut() {
            layer_norm(io, &join(prefix, "prenorm"), n)?;
        }
        if let Some(s) = self.s1.as_mut() {
            s.visit_weights(&join(prefix, "net.0"), io)?;
        }
        if let Some(s) = self.s2.as_mut() {
            s.visit_weights(&join(prefix, "net.2"), io)?;
        }
        self.readout.visit_weights(&join(prefix, "readout"), 0, io)
    }
}
