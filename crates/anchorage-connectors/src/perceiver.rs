//! The Perceiver Resampler: open_flamingo's and AcFormer's variants.
//!
//! Follows mlfoundations/open_flamingo `open_flamingo/src/helpers.py` (`FeedForward`,
//! `PerceiverAttention`, `PerceiverResampler`) and its AcFormer copy, liuhaogeng/Anchor-Former
//! `builder.py` (l.19–248): keys/values are media ‖ latents in open_flamingo and media only in
//! AcFormer; AcFormer's queries can be given from outside (its `dynamic_query`, the anchors).
//! Upstream subtracts the row max before the softmax; softmax is shift-invariant, so it is omitted.

use anchorage_kernels::activation::gelu;
use anchorage_kernels::activation::reference::gelu_reference;
use anchorage_kernels::linear as fused_linear;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Distribution, Tensor};

use crate::error::ConnectorError;
use crate::weights::{join, layer_norm, linear, WeightIo};

/// A Perceiver Resampler over `d_model`-wide tokens.
#[derive(Config, Debug, PartialEq)]
pub struct PerceiverConfig {
    /// Token width (vision hidden size; the resampler keeps it).
    pub d_model: usize,
    #[config(default = 6)]
    pub depth: usize,
    #[config(default = 8)]
    pub heads: usize,
    #[config(default = 64)]
    pub dim_head: usize,
    /// Learnable latents (the queries when none are given).
    #[config(default = 144)]
    pub num_latents: usize,
    #[config(default = 4)]
    pub ff_mult: usize,
    /// open_flamingo: keys/values = media ‖ latents; AcFormer: media only.
    #[config(default = false)]
    pub kv_includes_latents: bool,
}

/// Cross-attention of the latents to the media (`PerceiverAttention`).
#[derive(Module, Debug)]
pub struct PerceiverAttention<B: Backend> {
    pub norm_media: LayerNorm<B>,
    pub norm_latents: LayerNorm<B>,
    pub to_q: Linear<B>,
    pub to_kv: Linear<B>,
    pub to_out: Linear<B>,
    pub heads: usize,
    pub dim_head: usize,
    pub kv_includes_latents: bool,
}

/// `Sequential(LayerNorm, Linear(d, mult·d, bias=False), GELU, Linear(mult·d, d, bias=False))`.
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    pub norm: LayerNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

/// One `[PerceiverAttention, FeedForward]` pair (`layers.{i}.0`, `layers.{i}.1`).
#[derive(Module, Debug)]
pub struct PerceiverLayer<B: Backend> {
    pub attn: PerceiverAttention<B>,
    pub ff: FeedForward<B>,
}

/// See [`PerceiverConfig`].
#[derive(Module, Debug)]
pub struct Perceiver<B: Backend> {
    /// `[num_latents, d_model]`, `randn` init as upstream.
    pub latents: Param<Tensor<B, 2>>,
    pub layers: Vec<PerceiverLayer<B>>,
    pub norm: LayerNorm<B>,
}

impl PerceiverConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Perceiver<B> {
        let d = self.d_model;
        let inner = self.heads * self.dim_head;
        let ln = || LayerNormConfig::new(d).init(device);
        let lin = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        let layers = (0..self.depth)
            .map(|_| PerceiverLayer {
                attn: PerceiverAttention {
                    norm_media: ln(),
                    norm_latents: ln(),
                    to_q: lin(d, inner),
                    to_kv: lin(d, 2 * inner),
                    to_out: lin(inner, d),
                    heads: self.heads,
                    dim_head: self.dim_head,
                    kv_includes_latents: self.kv_includes_latents,
                },
                ff: FeedForward { norm: ln(), fc1: lin(d, self.ff_mult * d), fc2: lin(self.ff_mult * d, d) },
            })
            .collect();
        let latents = Tensor::random([self.num_latents, d], Distribution::Normal(0.0, 1.0), device);
        Perceiver { latents: Param::from_tensor(latents), layers, norm: ln() }
    }
}

impl<B: Backend> PerceiverAttention<B> {
    /// # Shapes
    /// `media [B, T, D]`, `latents [B, Q, D] -> [B, Q, D]`
    pub fn forward(&self, media: Tensor<B, 3>, latents: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, q_len, _] = latents.dims();
        let (h, dh) = (self.heads, self.dim_head);
        let x = self.norm_media.forward(media);
        let lat = self.norm_latents.forward(latents);
        let q = fused_linear::forward(&self.to_q, lat.clone());
        let kv_input = if self.kv_includes_latents { Tensor::cat(vec![x, lat], 1) } else { x };
        let kv_len = kv_input.dims()[1];
        let kv = fused_linear::forward(&self.to_kv, kv_input);
        let k = kv.clone().narrow(2, 0, h * dh);
        let v = kv.narrow(2, h * dh, h * dh);
        let split = |t: Tensor<B, 3>, n: usize| t.reshape([b, n, h, dh]).swap_dims(1, 2);
        let q = split(q, q_len).mul_scalar((dh as f64).powf(-0.5));
        let k = split(k, kv_len);
        let v = split(v, kv_len);
        let attn = softmax(q.matmul(k.swap_dims(2, 3)), 3);
        let out = attn.matmul(v).swap_dims(1, 2).reshape([b, q_len, h * dh]);
        fused_linear::forward(&self.to_out, out)
    }
}

impl<B: Backend> FeedForward<B> {
    /// # Shapes
    /// `[B, Q, D] -> [B, Q, D]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = fused_linear::forward(&self.fc1, self.norm.forward(x));
        fused_linear::forward(&self.fc2, gelu(&h).unwrap_or_else(|| gelu_reference(h)))
    }
}

impl<B: Backend> Perceiver<B> {
    /// Runs the resampler with the learnable latents, or with `queries` (AcFormer's anchors).
    ///
    /// # Shapes
    /// `media [B, T, D]`, `queries Option<[B, Q, D]> -> [B, Q, D]` (`Q = num_latents` without queries)
    pub fn forward(&self, media: Tensor<B, 3>, queries: Option<Tensor<B, 3>>) -> crate::Result<Tensor<B, 3>> {
        let [b, _, d] = media.dims();
        let [_, d_lat] = self.latents.lazy_shape().dims::<2>();
        if d != d_lat {
            return Err(ConnectorError::InputShape {
                what: "resampler media".into(),
                expected: format!("[batch, tokens, {d_lat}]"),
                found: media.dims().to_vec(),
            });
        }
        let mut lat = match queries {
            Some(q) => q,
            None => {
                let l = self.latents.val();
                let [n, _] = l.dims();
                l.unsqueeze::<3>().expand([b, n, d])
            }
        };
        for layer in &self.layers {
            lat = layer.attn.forward(media.clone(), lat.clone()) + lat;
            lat = layer.ff.forward(lat.clone()) + lat;
        }
        Ok(self.norm.forward(lat))
    }

    /// Canonical keys (open_flamingo's names): `latents` (loaded as unused when queries come
    /// from outside, see [`Perceiver::visit_weights_with_unused_latents`]), `layers.{i}.0.{norm_media, norm_latents,
    /// to_q, to_kv, to_out}`, `layers.{i}.1.{0, 1, 3}`, `norm`.
    pub fn visit_weights<I: WeightIo<B>>(&mut self, prefix: &str, io: &mut I) -> crate::Result<()> {
        io.tensor(&join(prefix, "latents"), &mut self.latents, false)?;
        self.visit_layers(prefix, io)
    }

    /// As [`Perceiver::visit_weights`], for AcFormer whose anchors replace the latents: any number
    /// of latents (or none) is accepted on load.
    pub fn visit_weights_with_unused_latents<I: WeightIo<B>>(&mut self, prefix: &str, io: &mut I) -> crate::Result<()> {
        io.unused_tensor(&join(prefix, "latents"), &mut self.latents)?;
        self.visit_layers(prefix, io)
    }

    fn visit_layers<I: WeightIo<B>>(&mut self, prefix: &str, io: &mut I) -> crate::Result<()> {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let a = join(prefix, &format!("layers.{i}.0"));
            layer_norm(io, &join(&a, "norm_media"), &mut layer.attn.norm_media)?;
            layer_norm(io, &join(&a, "norm_latents"), &mut layer.attn.norm_latents)?;
            linear(io, &join(&a, "to_q"), &mut layer.attn.to_q)?;
            linear(io, &join(&a, "to_kv"), &mut layer.attn.to_kv)?;
            linear(io, &join(&a, "to_out"), &mut layer.attn.to_out)?;
            let f = join(prefix, &format!("layers.{i}.1"));
            layer_norm(io, &join(&f, "0"), &mut layer.ff.norm)?;
            linear(io, &join(&f, "1"), &mut layer.ff.fc1)?;
            linear(io, &join(&f, "3"), &mut layer.ff.fc2)?;
        }
        layer_norm(io, &join(prefix, "norm"), &mut self.norm)
    }
}
