//! A linear layer whose products run on [`crate::gemm::matmul`] (cuBLAS on burn's CUDA backend
//! when the engine is `cublas`), forward and backward.
//!
//! Under `Autodiff` burn records its own `linear` op, whose products are burn's `matmul` on the
//! inner backend; nothing there can be redirected. So [`linear_tracked`] computes the output from
//! the inner backend's tensors and records one backward step of its own, which keeps only what the
//! gradients asked for need (as burn's op does: the weight for the input's gradient, the input for
//! the weight's) and computes `dx = dy Wᵀ` and `dW = xᵀ dy` with [`crate::gemm::matmul`] too, `db`
//! as a column sum. Every product is one `[rows, d_in] x [d_in, d_out]` (the leading dimensions of
//! `x` folded into rows, as `torch.nn.functional.linear` does), so a weight is never broadcast.
//! It works on every backend (the products fall back to burn's); the CPU tests check it against
//! burn's `linear` on burn-flex, the CUDA parity tests on cuBLAS.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};

use crate::gemm;

/// `x W + b` through [`gemm::matmul`]: under `Autodiff<burn's CUDA backend>` with the step below,
/// on any other backend as plain tensor ops around [`gemm::matmul`] (which a backend's autodiff
/// records as usual). `None` only where the shapes disagree.
pub fn linear<B: Backend, const D: usize>(x: &Tensor<B, D>, weight: &Tensor<B, 2>, bias: Option<&Tensor<B, 1>>) -> Option<Tensor<B, D>> {
    let [k, n] = weight.dims();
    if D == 0 || x.dims()[D - 1] != k || bias.is_some_and(|b| b.dims() != [n]) {
        return None;
    }
    #[cfg(feature = "cuda")]
    {
        use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
        if let Some(out) = on::<B, burn::backend::Cuda, NoCheckpointing, D>(x, weight, bias) {
            return Some(out);
        }
        if let Some(out) = on::<B, burn::backend::Cuda, BalancedCheckpointing, D>(x, weight, bias) {
            return Some(out);
        }
    }
    Some(forward_plain(x.clone(), weight.clone(), bias.cloned()))
}

/// [`linear`] if `B` is `Autodiff<I, C>`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn on<B: Backend, I: Backend, C: CheckpointStrategy, const D: usize>(x: &Tensor<B, D>, weight: &Tensor<B, 2>, bias: Option<&Tensor<B, 1>>) -> Option<Tensor<B, D>> {
    let x = (x as &dyn Any).downcast_ref::<Tensor<Autodiff<I, C>, D>>()?.clone();
    let weight = (weight as &dyn Any).downcast_ref::<Tensor<Autodiff<I, C>, 2>>()?.clone();
    let bias = match bias {
        Some(b) => Some((b as &dyn Any).downcast_ref::<Tensor<Autodiff<I, C>, 1>>()?.clone()),
        None => None,
    };
    let out = linear_tracked(x, weight, bias);
    (Box::new(out) as Box<dyn Any>).downcast::<Tensor<B, D>>().ok().map(|t| *t)
}

/// `x W + b` with `x`'s leading dimensions folded into rows, on any backend without recording
/// anything of its own.
fn forward_plain<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Tensor<B, D> {
    let mut dims = x.dims();
    let [k, n] = weight.dims();
    let rows = dims[..D - 1].iter().product();
    let out = gemm::matmul(x.reshape([rows, k]), weight);
    let out = match bias {
        Some(b) => out + b.unsqueeze::<2>(),
        None => out,
    };
    dims[D - 1] = n;
    out.reshape(dims)
}

/// [`linear`] under `Autodiff<I, C>`: the output from the inner backend, and, when an input needs a
/// gradient, one [`LinearStep`].
pub fn linear_tracked<I: Backend, C: CheckpointStrategy, const D: usize>(
    x: Tensor<Autodiff<I, C>, D>,
    weight: Tensor<Autodiff<I, C>, 2>,
    bias: Option<Tensor<Autodiff<I, C>, 1>>,
) -> Tensor<Autodiff<I, C>, D> {
    let primitive = |t: TensorPrimitive<Autodiff<I, C>>| t.tensor();
    let xp = primitive(x.into_primitive());
    let wp = primitive(weight.into_primitive());
    let bp = bias.map(|b| primitive(b.into_primitive()));
    let inner = |p: &FloatTensor<Autodiff<I, C>>| p.primitive.clone();
    let (x_needs, w_needs) = (xp.is_tracked(), wp.is_tracked());
    let xi = Tensor::<I, D>::from_primitive(TensorPrimitive::Float(inner(&xp)));
    let wi = Tensor::<I, 2>::from_primitive(TensorPrimitive::Float(inner(&wp)));
    let x_dims = xi.dims();
    let bi = bp.as_ref().map(|b| Tensor::<I, 1>::from_primitive(TensorPrimitive::Float(inner(b))));
    let out = forward_plain(xi.clone(), wi.clone(), bi).into_primitive().tensor();
    let [k, _] = wi.dims();
    let rows = x_dims[..D - 1].iter().product();
    // The weight for the input's gradient, the input (as rows) for the weight's.
    let state = |prep_x: bool, prep_w: bool| Saved::<I> {
        x: prep_w.then(|| xi.clone().reshape([rows, k]).into_primitive().tensor()),
        weight: prep_x.then(|| wi.clone().into_primitive().tensor()),
        x_dims: x_dims.to_vec(),
    };
    let out = match bp {
        Some(bp) => match LinearStep.prepare::<C>([xp.node.clone(), wp.node.clone(), bp.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(state(x_needs, w_needs), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
        None => match LinearStep.prepare::<C>([xp.node.clone(), wp.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(state(x_needs, w_needs), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The backward step of [`linear_tracked`], with parents `[x, weight]` or `[x, weight, bias]`.
#[derive(Debug)]
struct LinearStep;

/// What [`LinearStep`] keeps (inner backend): `x` as `[rows, d_in]` when the weight needs a
/// gradient, the weight when `x` does, and `x`'s shape.
#[derive(Debug, Clone)]
struct Saved<I: Backend> {
    x: Option<FloatTensor<I>>,
    weight: Option<FloatTensor<I>>,
    x_dims: Vec<usize>,
}

impl<I: Backend, const N: usize> Backward<I, N> for LinearStep {
    type State = Saved<I>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let Saved { x, weight, x_dims } = ops.state;
        let dy = grads.consume::<I>(&ops.node);
        let dy = Tensor::<I, 2>::from_primitive(TensorPrimitive::Float(flatten_rows::<I>(dy)));
        let [_, n] = dy.dims();
        if let (Some(node), Some(w)) = (&ops.parents[0], weight) {
            let w = Tensor::<I, 2>::from_primitive(TensorPrimitive::Float(w));
            let dx = gemm::matmul(dy.clone(), w.transpose());
            grads.register::<I>(node.id, reshape_to::<I>(dx.into_primitive().tensor(), &x_dims));
        }
        if let (Some(node), Some(x)) = (&ops.parents[1], x) {
            let x = Tensor::<I, 2>::from_primitive(TensorPrimitive::Float(x));
            grads.register::<I>(node.id, gemm::matmul(x.transpose(), dy.clone()).into_primitive().tensor());
        }
        if let Some(Some(node)) = ops.parents.get(2) {
            grads.register::<I>(node.id, dy.sum_dim(0).reshape([n]).into_primitive().tensor());
        }
    }
}

/// A gradient of any rank as `[rows, last]`.
fn flatten_rows<I: Backend>(t: FloatTensor<I>) -> FloatTensor<I> {
    use burn::tensor::TensorMetadata;
    let shape = t.shape();
    let dims: &[usize] = &shape;
    let last = *dims.last().unwrap_or(&1);
    let rows = dims[..dims.len().saturating_sub(1)].iter().product::<usize>();
    I::float_reshape(t, [rows, last].into())
}

fn reshape_to<I: Backend>(t: FloatTensor<I>, dims: &[usize]) -> FloatTensor<I> {
    I::float_reshape(t, dims.to_vec().into())
}
