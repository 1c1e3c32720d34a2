//! Self-attention of Llama/Qwen2 with grouped key/value heads, RoPE at explicit positions, burn's
//! fused `attention` op, optional key/value restriction or pooling per sample, optional head-mean
//! attention rows, and the KV cache. A plain layer (no cache, restriction, pooling or rows) on the
//! CPU backend runs RoPE and attention as one host op with its own backward instead
//! (`anchorage_kernels::attention`); under autodiff on a GPU backend the attention keeps only its
//! inputs for the backward pass and recomputes the probabilities there
//! (`anchorage_kernels::attention::recomputed_attention`).
//!
//! A restricted layer projects keys/values of the kept rows only (their RoPE at their own
//! positions), unless it reports head-mean rows, which need every key: it then projects all rows
//! and gathers. A pooled layer projects all rows and multiplies keys and values by a pooling
//! matrix, so gradients reach every pooled member. Upstream: huggingface/transformers
//! `src/transformers/models/llama/modeling_llama.py` (`LlamaAttention`) and
//! `models/qwen2/modeling_qwen2.py` (biases on q/k/v).

use anchorage_kernels::attention::{fused_attention, recomputed_attention, runs_fused, AttentionSpec, Visibility};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::DType;

use crate::cache::LayerKv;
use crate::lora_adapter::{project, LoraAdapter};
use crate::rope::apply_rope;

/// Configuration of an [`Attention`].
#[derive(Config, Debug)]
pub struct AttentionConfig {
    pub hidden_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub qkv_bias: bool,
    pub o_bias: bool,
}

/// `self_attn` of a decoder layer; field names are the checkpoint's.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    /// LoRA adapters (see `lora_adapter.rs`); `None` unless `Llm::with_lora` added them.
    pub q_lora: Option<LoraAdapter<B>>,
    pub k_lora: Option<LoraAdapter<B>>,
    pub v_lora: Option<LoraAdapter<B>>,
    pub o_lora: Option<LoraAdapter<B>>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Under autodiff on a GPU backend, keep only q, k, v and the mask for the backward pass and
    /// recompute the probabilities there (`llm.recompute_attention`, default true); false keeps
    /// burn's recorded attention. Not part of the checkpoint record.
    #[module(skip)]
    pub recompute_backward: bool,
}

impl AttentionConfig {
    /// Randomly initialised attention (weights are replaced when a checkpoint loads).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        Attention {
            q_proj: LinearConfig::new(self.hidden_size, q).with_bias(self.qkv_bias).init(device),
            k_proj: LinearConfig::new(self.hidden_size, kv).with_bias(self.qkv_bias).init(device),
            v_proj: LinearConfig::new(self.hidden_size, kv).with_bias(self.qkv_bias).init(device),
            o_proj: LinearConfig::new(q, self.hidden_size).with_bias(self.o_bias).init(device),
            q_lora: None,
            k_lora: None,
            v_lora: None,
            o_lora: None,
            num_heads: self.num_heads,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            recompute_backward: true,
        }
    }
}

/// Which keys each query may see, for the keys this layer attends to.
#[derive(Debug, Clone)]
pub enum KeyMask<B: Backend> {
    /// Causal by index and nothing else (no padding): the fused causal path.
    Causal,
    /// Causal by index plus invalid keys: `[batch, len_k]`, true = real key.
    CausalValid(Tensor<B, 2, Bool>),
    /// Any mask: `[batch, len_q, len_k]`, true = masked.
    Explicit(Tensor<B, 3, Bool>),
    /// Any mask, already dense per head: `[batch, heads, len_q, len_k]`, true = masked (small
    /// masks: `plan.rs`, `DENSE_MASK_ELEMENTS`).
    Dense(Tensor<B, 4, Bool>),
}

/// Per-layer instructions the decoder loop prepares for [`Attention::forward`].
#[derive(Debug, Clone)]
pub struct AttnPlan<B: Backend> {
    /// Mask over the attended keys (all current keys, the gathered subset, or the pooled slots).
    pub mask: KeyMask<B>,
    /// Gather these key/value slots `[batch, kept]` (per-sample restriction), if any.
    pub kv_index: Option<Tensor<B, 2, Int>>,
    /// Pool keys/values with these weights `[batch, slots, len]` (row `s` averages the members
    /// of slot `s`; all-zero rows are filler), if any. Exclusive with `kv_index`.
    pub kv_pool: Option<Tensor<B, 3>>,
    /// With `kv_index`: project every row and gather afterwards instead of gathering the rows
    /// first (same result; set whenever `rows` is, kept public for parity tests and benchmarks).
    pub project_all_kv: bool,
    /// Validity of the attended keys `[batch, len_k]` (stored in the cache).
    pub key_valid: Option<Tensor<B, 2, Bool>>,
    /// Rows to report: query indices `[batch, rows]` and their mask over all current keys
    /// `[batch, rows, len]` (true = masked).
    pub rows: Option<(Tensor<B, 2, Int>, Tensor<B, 3, Bool>)>,
    /// Each sample's real length when `mask` is exactly causal over right padding (no
    /// restriction, pooling or rows): the layer may then run the fused CPU attention
    /// (`anchorage_kernels::attention`), which reads the lengths instead of a mask.
    pub prefix_lengths: Option<Vec<usize>>,
    /// Packed sequences (`packed.rs`): per row, the token counts of the sequences back to back in
    /// it. The fused attention reads them; `mask` then holds the block-diagonal form for the
    /// tensor-op path, when one was built.
    pub packed: Option<Vec<Vec<usize>>>,
}

impl<B: Backend> AttnPlan<B> {
    /// The plain causal plan (no padding, no hook).
    pub fn causal() -> Self {
        Self {
            mask: KeyMask::Causal,
            kv_index: None,
            kv_pool: None,
            project_all_kv: false,
            key_valid: None,
            rows: None,
            prefix_lengths: None,
            packed: None,
        }
    }
}

/// How the layer uses its cache entry.
pub enum CacheMode<'a, B: Backend> {
    /// No cache (training, scoring).
    None,
    /// Prefill: store the attended keys/values.
    Fill(&'a mut Option<LayerKv<B>>),
    /// One decode step: attend to the stored keys plus the new one, then store it.
    Decode(&'a mut Option<LayerKv<B>>),
}

impl<B: Backend> Attention<B> {
    /// # Shapes
    /// `x [batch, len, hidden]`, `cos`/`sin [batch, 1, len, head_dim]` ->
    /// (`[batch, len, hidden]`, head-mean rows `[batch, rows, len]` when the plan asks for them)
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        plan: &AttnPlan<B>,
        cache: CacheMode<'_, B>,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        if let Some(out) = self.fused(&x, cos, sin, plan, &cache) {
            return (out, None);
        }
        let [batch, len, width] = x.dims();
        let (h, hk, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let split = |t: Tensor<B, 3>, heads: usize| {
            let rows = t.dims()[1];
            t.reshape([batch, rows, heads, d]).swap_dims(1, 2)
        };
        let q = apply_rope(split(project(&self.q_proj, &self.q_lora, x.clone()), h), cos, sin);

        let gather_first = plan.rows.is_none() && !plan.project_all_kv;
        let (k, v, rows) = match &plan.kv_index {
            Some(index) if gather_first => {
                // Only the kept rows are projected, each rotated at its own position.
                let [b, m] = index.dims();
                let x = x.gather(1, index.clone().reshape([b, m, 1]).expand([b, m, width]));
                let at = index.clone().reshape([b, 1, m, 1]).expand([b, 1, m, d]);
                let (cos, sin) = (cos.clone().gather(2, at.clone()), sin.clone().gather(2, at));
                let k = apply_rope(split(project(&self.k_proj, &self.k_lora, x.clone()), hk), &cos, &sin);
                let v = split(project(&self.v_proj, &self.v_lora, x), hk);
                (k, v, None)
            }
            _ => {
                let k = apply_rope(split(project(&self.k_proj, &self.k_lora, x.clone()), hk), cos, sin);
                let v = split(project(&self.v_proj, &self.v_lora, x), hk);
                let rows = plan.rows.as_ref().map(|(index, mask)| self.head_mean_rows(&q, &k, index, mask));
                let (k, v) = match (&plan.kv_index, &plan.kv_pool) {
                    (Some(index), _) => {
                        let [b, m] = index.dims();
                        let gather_index = index.clone().reshape([b, 1, m, 1]).expand([b, hk, m, d]);
                        (k.gather(2, gather_index.clone()), v.gather(2, gather_index))
                    }
                    (None, Some(pool)) => {
                        let [b, slots, l] = pool.dims();
                        let pool = if pool.dtype() == k.dtype() { pool.clone() } else { pool.clone().cast(k.dtype()) };
                        let pool = pool.unsqueeze_dim::<4>(1).expand([b, hk, slots, l]);
                        (pool.clone().matmul(k), pool.matmul(v))
                    }
                    (None, None) => (k, v),
                };
                (k, v, rows)
            }
        };

        let (k, v, mask) = match cache {
            CacheMode::None => (k, v, plan.mask.clone()),
            CacheMode::Fill(slot) => {
                let valid = plan
                    .key_valid
                    .clone()
                    .unwrap_or_else(|| Tensor::<B, 2, Int>::ones([batch, k.dims()[2]], &k.device()).bool());
                *slot = Some(LayerKv {
                    k: k.clone(),
                    v: v.clone(),
                    valid,
                });
                (k, v, plan.mask.clone())
            }
            CacheMode::Decode(slot) => {
                let entry = match slot.take() {
                    Some(mut entry) => {
                        entry.append(k, v);
                        entry
                    }
                    None => LayerKv {
                        valid: Tensor::<B, 2, Int>::ones([batch, len], &k.device()).bool(),
                        k,
                        v,
                    },
                };
                let mask = KeyMask::CausalValid(entry.valid.clone());
                let out = (entry.k.clone(), entry.v.clone(), mask);
                *slot = Some(entry);
                out
            }
        };

        let context = self.attend(q, k, v, &mask);
        let out = context.swap_dims(1, 2).reshape([batch, len, h * d]);
        (project(&self.o_proj, &self.o_lora, out), rows)
    }

    /// The layer through the fused CPU attention (RoPE, causal softmax over each sample's real
    /// keys, value sum, and its backward in one host pass per head), where the plan allows it
    /// (training and scoring without cache, restriction, pooling or rows) and the backend runs it
    /// (f32 burn-flex, plain or under `Autodiff`); `None` otherwise.
    fn fused(
        &self,
        x: &Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        plan: &AttnPlan<B>,
        cache: &CacheMode<'_, B>,
    ) -> Option<Tensor<B, 3>> {
        let visibility = match (&plan.packed, &plan.prefix_lengths) {
            (Some(segments), _) => Visibility::Packed { segments: segments.clone() },
            (None, Some(lengths)) => Visibility::Causal { lengths: lengths.clone() },
            (None, None) => return None,
        };
        let plain = matches!(cache, CacheMode::None) && plan.kv_index.is_none() && plan.kv_pool.is_none() && plan.rows.is_none();
        if !plain || !runs_fused::<B>() || x.dtype() != DType::F32 {
            return None;
        }
        let spec = AttentionSpec {
            heads: self.num_heads,
            kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            visibility,
        };
        let q = project(&self.q_proj, &self.q_lora, x.clone());
        let k = project(&self.k_proj, &self.k_lora, x.clone());
        let v = project(&self.v_proj, &self.v_lora, x.clone());
        let context = fused_attention(&q, &k, &v, Some((cos, sin)), &spec)?;
        Some(project(&self.o_proj, &self.o_lora, context))
    }

    /// Repeats each key/value head for its group of query heads.
    fn repeat_kv(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let groups = self.num_heads / self.num_kv_heads;
        if groups == 1 {
            return x;
        }
        let [b, hk, l, d] = x.dims();
        x.unsqueeze_dim::<5>(2).expand([b, hk, groups, l, d]).reshape([b, hk * groups, l, d])
    }

    /// softmax(q kᵀ / sqrt(d)) v through burn's fused attention op.
    pub(crate) fn attend(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask: &KeyMask<B>) -> Tensor<B, 4> {
        let [b, h, lq, _] = q.dims();
        let k = self.repeat_kv(k);
        let v = self.repeat_kv(v);
        let lk = k.dims()[2];
        let (mask, is_causal) = match mask {
            KeyMask::Causal => (None, true),
            KeyMask::CausalValid(valid) => {
                let m = valid.clone().bool_not().reshape([b, 1, 1, lk]).expand([b, h, lq, lk]);
                (Some(m), true)
            }
            KeyMask::Explicit(m) => (Some(m.clone().unsqueeze_dim::<4>(1).expand([b, h, lq, lk])), false),
            KeyMask::Dense(m) => (Some(m.clone()), false),
        };
        // Under autodiff on a GPU backend: the same values, keeping only q, k, v and the mask for
        // the backward pass instead of every layer's scores and probabilities.
        if self.recompute_backward {
            if let Some(out) = recomputed_attention(&q, &k, &v, mask.as_ref(), is_causal) {
                return out;
            }
        }
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal,
        };
        attention(q, k, v, mask, None, options)
    }

    /// Head-mean softmax rows for the requested queries over all current keys.
    fn head_mean_rows(
        &self,
        q: &Tensor<B, 4>,
        k: &Tensor<B, 4>,
        index: &Tensor<B, 2, Int>,
        mask: &Tensor<B, 3, Bool>,
    ) -> Tensor<B, 3> {
        let [b, h, _, d] = q.dims();
        let r = index.dims()[1];
        let gather_index = index.clone().reshape([b, 1, r, 1]).expand([b, h, r, d]);
        let q_rows = q.clone().gather(2, gather_index);
        let k = self.repeat_kv(k.clone());
        let lk = k.dims()[2];
        let scores = q_rows.matmul(k.swap_dims(2, 3)) / (d as f64).sqrt();
        let scores = scores.mask_fill(mask.clone().unsqueeze_dim::<4>(1).expand([b, h, r, lk]), f32::NEG_INFINITY);
        softmax(scores, 3).mean_dim(1).squeeze_dim::<3>(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, TensorData};

    use crate::config::RopeScaling;
    use crate::rope::Rope;

    type A = Autodiff<Flex>;

    fn floats<B2: Backend, const D: usize>(t: Tensor<B2, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// The layer through the fused CPU attention equals the layer through its tensor-op path
    /// (broadcast padding mask, burn's attention op): output, the input's gradient and a
    /// projection weight's gradient, with grouped key/value heads, right padding and positions
    /// that do not start at 0.
    #[test]
    fn fused_layer_equals_the_tensor_op_layer() {
        let device = Default::default();
        let (b, len, hidden) = (3, 7, 16);
        let layer = AttentionConfig::new(hidden, 4, 2, 4, true, false).init::<A>(&device);
        let lengths = vec![7, 5, 1];
        let valid: Vec<bool> = lengths.iter().flat_map(|&n| (0..len).map(move |k| k < n)).collect();
        let valid = Tensor::<A, 2, Bool>::from_data(TensorData::new(valid, [b, len]), &device);
        let positions: Vec<i64> = (0..b * len).map(|i| (i % len + 3 * (i / len)) as i64).collect();
        let positions = Tensor::<A, 2, Int>::from_data(TensorData::new(positions, [b, len]), &device);
        let (cos, sin) = Rope::new(4, 10000.0, RopeScaling::None).cos_sin(positions, DType::F32);
        let x = Tensor::<A, 3>::random([b, len, hidden], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<A, 3>::random([b, len, hidden], Distribution::Normal(0.0, 1.0), &device);

        let run = |fused: bool| {
            let mut plan = AttnPlan::causal();
            plan.mask = KeyMask::CausalValid(valid.clone());
            plan.prefix_lengths = fused.then(|| lengths.clone());
            let x = x.clone().require_grad();
            let (out, _) = layer.forward(x.clone(), &cos, &sin, &plan, CacheMode::None);
            let grads = (out.clone() * w.clone()).sum().backward();
            let dx = x.grad(&grads).unwrap();
            let dw = layer.q_proj.weight.val().grad(&grads).unwrap();
            (floats(out.inner()), floats(dx), floats(dw))
        };
        let mut plan = AttnPlan::causal();
        plan.prefix_lengths = Some(lengths.clone());
        assert!(layer.fused(&x, &cos, &sin, &plan, &CacheMode::None).is_some(), "the fused path is taken");
        let (out_f, dx_f, dw_f) = run(true);
        let (out_r, dx_r, dw_r) = run(false);
        // Every row is compared, padded ones included (both paths let a padded query see its
        // sample's real keys).
        assert!(worst(&out_f, &out_r) < 1e-5, "output: {}", worst(&out_f, &out_r));
        assert!(worst(&dx_f, &dx_r) < 1e-5, "input gradient: {}", worst(&dx_f, &dx_r));
        assert!(worst(&dw_f, &dw_r) < 1e-5, "q_proj gradient: {}", worst(&dw_f, &dw_r));
    }
}
