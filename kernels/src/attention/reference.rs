//! The fused attention's twin in tensor ops (any backend, differentiable by burn's autodiff): the
//! heads split off the projections, RoPE in transformers' "rotate_half" layout, burn's attention
//! op with the mask written out, and the heads merged back. The CLIP tower falls back to it; the
//! LLM keeps its own tensor-op path (cache, restriction, pooling, rows); the parity tests and the
//! benchmark compare the kernel with it.

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{backend::Backend, Bool, Tensor, TensorData};

use super::{AttentionSpec, Visibility};

/// Same contract as [`super::fused_attention`], always computed.
pub fn attention_reference<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    rope: Option<(&Tensor<B, 4>, &Tensor<B, 4>)>,
    spec: &AttentionSpec,
) -> Tensor<B, 3> {
    let [batch, len, _] = q.dims();
    let (h, hk, d) = (spec.heads, spec.kv_heads, spec.head_dim);
    let split = |t: Tensor<B, 3>, heads: usize| t.reshape([batch, len, heads, d]).swap_dims(1, 2);
    let (mut q, mut k, v) = (split(q, h), split(k, hk), split(v, hk));
    if let Some((cos, sin)) = rope {
        q = rotate(q, cos, sin);
        k = rotate(k, cos, sin);
    }
    let groups = h / hk;
    let repeat = |t: Tensor<B, 4>| {
        if groups == 1 {
            return t;
        }
        t.unsqueeze_dim::<5>(2).expand([batch, hk, groups, len, d]).reshape([batch, h, len, d])
    };
    let (k, v) = (repeat(k), repeat(v));
    let mask = match &spec.visibility {
        Visibility::All => None,
        visibility => {
            let masked: Vec<bool> = (0..batch)
                .flat_map(|b| (0..len).flat_map(move |i| (0..len).map(move |j| !visibility.sees(b, i, j, len))))
                .collect();
            let mask: Tensor<B, 3, Bool> = Tensor::from_data(TensorData::new(masked, [batch, len, len]), &q.device());
            Some(mask.unsqueeze_dim::<4>(1).expand([batch, h, len, len]))
        }
    };
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: false,
    };
    attention(q, k, v, mask, None, options).swap_dims(1, 2).reshape([batch, len, h * d])
}

/// `x * cos + rotate_half(x) * sin` over `[batch, heads, len, d]` with tables `[batch, 1, len, d]`.
fn rotate<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, l, d] = x.dims();
    let half = d / 2;
    let x1 = x.clone().slice([0..b, 0..h, 0..l, 0..half]);
    let x2 = x.clone().slice([0..b, 0..h, 0..l, half..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}
