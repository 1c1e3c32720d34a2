//! timm's RegNet `RegStage` of `Bottleneck` blocks as Honeybee instantiates it: stride 1, SiLU,
//! `LayerNorm2d` turned into `LayerNormAct2d` (eps 1e-5), bottle ratio 1, group size 1 (so the
//! 3×3 conv is depthwise), squeeze-excite with `round(in·0.25)` channels, activation after the
//! residual.
//!
//! Follows huggingface/pytorch-image-models @ v0.9.8 `timm/models/regnet.py` (`RegStage`
//! l.325–366, `Bottleneck` l.174–245, `create_shortcut` l.151–171), `timm/layers/norm_act.py`
//! (`LayerNormAct2d`), `timm/layers/squeeze_excite.py` (`SEModule`).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::{backend::Backend, Tensor};

use crate::weights::{conv2d, join, layer_norm, WeightIo};

/// `ConvNormAct`: bias-free conv, channel LayerNorm (eps 1e-5) over `[B, C, H, W]`, optional SiLU.
#[derive(Module, Debug)]
pub struct ConvNormAct<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: LayerNorm<B>,
    pub act: bool,
}

impl<B: Backend> ConvNormAct<B> {
    fn new(c_in: usize, c_out: usize, kernel: usize, groups: usize, act: bool, device: &B::Device) -> Self {
        let pad = (kernel - 1) / 2;
        let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
            .with_groups(groups)
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(device);
        Self { conv, bn: LayerNormConfig::new(c_out).with_epsilon(1e-5).init(device), act }
    }

    /// # Shapes
    /// `[B, C_in, H, W] -> [B, C_out, H, W]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = self.conv.forward(x);
        // LayerNormAct2d: permute to NHWC, layer-norm over C, permute back.
        let y = self.bn.forward(y.permute([0, 2, 3, 1])).permute([0, 3, 1, 2]);
        if self.act {
            silu(y)
        } else {
            y
        }
    }

    fn visit_weights<I: WeightIo<B>>(&mut self, prefix: &str, io: &mut I) -> crate::Result<()> {
        conv2d(io, &join(prefix, "conv"), &mut self.conv)?;
        layer_norm(io, &join(prefix, "bn"), &mut self.bn)
    }
}

/// `SEModule`: `x · sigmoid(fc2(silu(fc1(mean_hw(x)))))`, 1×1 convs with bias.
#[derive(Module, Debug)]
pub struct SqueezeExcite<B: Backend> {
    pub fc1: Conv2d<B>,
    pub fc2: Conv2d<B>,
}

impl<B: Backend> SqueezeExcite<B> {
    /// # Shapes
    /// `[B, C, H, W] -> [B, C, H, W]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let s = x.clone().mean_dim(2).mean_dim(3);
        let s = self.fc2.forward(silu(self.fc1.forward(s)));
        x * sigmoid(s)
    }
}

/// timm `Bottleneck` with Honeybee's arguments.
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    pub conv1: ConvNormAct<B>,
    pub conv2: ConvNormAct<B>,
    pub se: SqueezeExcite<B>,
    pub conv3: ConvNormAct<B>,
    /// `ConvNormAct(in, out, 1)` without activation when `in != out`.
    pub downsample: Option<ConvNormAct<B>>,
}

impl<B: Backend> Bottleneck<B> {
    pub fn new(c_in: usize, c_out: usize, device: &B::Device) -> Self {
        let c = c_out; // bottle_ratio 1
        let rd = ((c_in as f64) * 0.25).round() as usize;
        let se_conv = |i, o| Conv2dConfig::new([i, o], [1, 1]).with_bias(true).init(device);
        Self {
            conv1: ConvNormAct::new(c_in, c, 1, 1, true, device),
            conv2: ConvNormAct::new(c, c, 3, c, true, device),
            se: SqueezeExcite { fc1: se_conv(c, rd.max(1)), fc2: se_conv(rd.max(1), c) },
            conv3: ConvNormAct::new(c, c_out, 1, 1, false, device),
            downsample: (c_in != c_out).then(|| ConvNormAct::new(c_in, c_out, 1, 1, false, device)),
        }
    }

    /// # Shapes
    /// `[B, C_in, H, W] -> [B, C_out, H, W]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let y = self.conv3.forward(self.se.forward(self.conv2.forward(self.conv1.forward(x))));
        silu(y + shortcut)
    }

    fn visit_weights<I: WeightIo<B>>(&mut self, prefix: &str, io: &mut I) -> crate::Result<()> {
        self.conv1.visit_weights(&join(prefix, "conv1"), io)?;
        self.conv2.visit_weights(&join(prefix, "conv2"), io)?;
        conv2d(io, &join(prefix, "se.fc1"), &mut self.se.fc1)?;
        conv2d(io, &join(prefix, "se.fc2"), &mut self.se.fc2)?;
        self.conv3.visit_weights(&join(prefix, "conv3"), io)?;
        if let Some(d) = self.downsample.as_mut() {
            d.visit_weights(&join(prefix, "downsample"), io)?;
        }
        Ok(())
    }
}

/// timm `RegStage`: blocks `b1..b{depth}`, the first `in → out`, the rest `out → out`.
#[derive(Module, Debug)]
pub struct RegStage<B: Backend> {
    pub blocks: Vec<Bottleneck<B>>,
}

impl<B: Backend> RegStage<B> {
    pub fn new(depth: usize, c_in: usize, c_out: usize, device: &B::Device) -> Self {
        let blocks = (0..depth).map(|i| Bottleneck::new(if i == 0 { c_in } else { c_out }, c_out, device)).collect();
        Self { blocks }
    }

    /// # Shapes
    /// `[B, C_in, H, W] -> [B, C_out, H, W]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.blocks.iter().fold(x, |x, b| b.forward(x))
    }

    pub fn visit_weights<I: WeightIo<B>>(&mut self, prefix: &str, io: &mut I) -> crate::Result<()> {
        for (i, b) in self.blocks.iter_mut().enumerate() {
            b.visit_weights(&join(prefix, &format!("b{}", i + 1)), io)?;
        }
        Ok(())
    }
}
