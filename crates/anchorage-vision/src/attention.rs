//! Multi-head self-attention of an encoder layer (transformers `CLIPAttention`,
//! huggingface/transformers `src/transformers/models/clip/modeling_clip.py`).

use anchorage_kernels::attention::reference::attention_reference;
use anchorage_kernels::attention::{fused_attention, AttentionSpec, Visibility};
use anchorage_kernels::linear;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::FloatDType;

use crate::config::ClipVisionConfig;

/// `self_attn.{q,k,v,out}_proj`, all with bias; scale `head_dim^-0.5`; no mask.
#[derive(Module, Debug)]
pub struct ClipAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub out_proj: Linear<B>,
    /// Number of heads `H`.
    pub num_heads: usize,
}

impl<B: Backend> ClipAttention<B> {
    pub(crate) fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let d = config.hidden_size;
        let linear = || LinearConfig::new(d, d).init(device);
        Self {
            q_proj: linear(),
            k_proj: linear(),
            v_proj: linear(),
            out_proj: linear(),
            num_heads: config.num_attention_heads,
        }
    }

    /// Attention output, and on request the CLS query's softmax probabilities per head.
    ///
    /// The context goes through the fused CPU attention on burn-flex
    /// (`anchorage_kernels::attention`: one host pass per image and head, which holds that head's
    /// `[T, T]` probabilities while it runs, and keeps them for the backward under autodiff) and
    /// through burn's attention op on other backends. The CLS row, when asked, is one extra
    /// `[1, T]` score row per head. Probabilities are computed and returned in f32 whatever the
    /// weights' dtype (transformers also runs its softmax in f32).
    ///
    /// # Shapes
    /// `x [B, T, D] -> ([B, T, D], Some([B, H, T]) if cls_row)`
    pub fn forward(&self, x: Tensor<B, 3>, cls_row: bool) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let [b, t, d] = x.dims();
        let h = self.num_heads;
        let hd = d / h;
        let heads = |y: Tensor<B, 3>| y.reshape([b, t, h, hd]).swap_dims(1, 2); // [B, H, T, hd]
        let q = linear::forward(&self.q_proj, x.clone());
        let k = linear::forward(&self.k_proj, x.clone());
        let v = linear::forward(&self.v_proj, x);

        let cls = cls_row.then(|| {
            let q0 = heads(q.clone())
                .slice([0..b, 0..h, 0..1, 0..hd])
                .cast(FloatDType::F32);
            let scores =
                q0.matmul(heads(k.clone()).cast(FloatDType::F32).swap_dims(2, 3)) * (hd as f64).powf(-0.5); // [B, H, 1, T]
            softmax(scores, 3).reshape([b, h, t])
        });

        // The fused CPU attention on burn-flex (one host pass per image and head, its own
        // backward), its tensor-op twin (burn's attention op) elsewhere.
        let spec = AttentionSpec {
            heads: h,
            kv_heads: h,
            head_dim: hd,
            visibility: Visibility::All,
        };
        let context = fused_attention(&q, &k, &v, None, &spec).unwrap_or_else(|| attention_reference(q, k, v, None, &spec));
        (linear::forward(&self.out_proj, context), cls)
    }

    /// The attention output at the CLS token alone: its query over every token's key and value
    /// (a `[1, T]` score row per head), then the output projection of that one row.
    ///
    /// # Shapes
    /// `x [B, T, D] -> [B, 1, D]`
    pub fn forward_cls(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let h = self.num_heads;
        let hd = d / h;
        let heads = |y: Tensor<B, 3>, rows: usize| y.reshape([b, rows, h, hd]).swap_dims(1, 2); // [B, H, rows, hd]
        let q = heads(linear::forward(&self.q_proj, x.clone().slice([0..b, 0..1, 0..d])), 1);
        let k = heads(linear::forward(&self.k_proj, x.clone()), t);
        let v = heads(linear::forward(&self.v_proj, x), t);
        let scores = q.matmul(k.swap_dims(2, 3)) * (hd as f64).powf(-0.5); // [B, H, 1, T]
        let context = softmax(scores, 3).matmul(v); // [B, H, 1, hd]
        linear::forward(&self.out_proj, context.swap_dims(1, 2).reshape([b, 1, d]))
    }
}
