//! Host ops on burn-flex with their own backward step: the shared plumbing of the fused CPU ops
//! (`attention`, `activation`).
//!
//! burn 0.21 gives no trait to ask a generic backend whether it is burn-flex, so, as `cube/bridge.rs`
//! does for CubeCL, the types are compared at run time (`Any`): `Flex` itself, or `Autodiff<Flex>`
//! with no or balanced checkpointing. An op reads its inputs' f32 values on the host, computes, and
//! under `Autodiff` records one compute-bound backward step ([`HostStep`]) that hands the output's
//! gradient to the op's [`HostGrad`] (what its forward kept). Under a checkpointing strategy the
//! step's output is kept, never recomputed. Any other backend gets `None` and the caller runs its
//! tensor-op path.

use std::any::{Any, TypeId};
use std::ops::Deref;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{backend::Backend, DType, Tensor, TensorData, TensorPrimitive};

/// Whether `B` is burn-flex, plain or under `Autodiff` (no or balanced checkpointing).
pub(crate) fn is_flex<B: Backend>() -> bool {
    let b = TypeId::of::<B>();
    b == TypeId::of::<Flex>() || b == TypeId::of::<Autodiff<Flex>>() || b == TypeId::of::<Autodiff<Flex, BalancedCheckpointing>>()
}

/// What an op's forward kept for its backward: the gradients of its inputs (in order, each the
/// input's size) from the gradient of its output. `needed[i]` says whether input `i` asks for
/// one; an op may skip the work for the others and give `None` there.
pub(crate) trait HostGrad: std::fmt::Debug + Send + Sync {
    fn grads(&self, dout: &[f32], needed: &[bool]) -> Vec<Option<Vec<f32>>>;
}

/// The f32 values of a burn-flex tensor, row-major, read in place: a dense tensor's own buffer
/// (shared, not copied: burn-flex copies on write when a buffer is shared), a strided view made
/// dense once. Cheap to keep for a backward pass: it holds the tensor, not a copy.
pub(crate) struct HostValues {
    tensor: FlexTensor,
    start: usize,
    end: usize,
}

impl HostValues {
    /// `None` for a dtype other than f32.
    fn of(tensor: FlexTensor) -> Option<Self> {
        if tensor.dtype() != DType::F32 {
            return None;
        }
        let tensor = if tensor.layout().contiguous_offsets().is_some() { tensor } else { tensor.to_contiguous() };
        let (start, end) = tensor.layout().contiguous_offsets()?;
        Some(Self { tensor, start, end })
    }
}

impl Deref for HostValues {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.tensor.storage::<f32>()[self.start..self.end]
    }
}

impl std::fmt::Debug for HostValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostValues").field("len", &(self.end - self.start)).finish()
    }
}

/// The forward of a host op: the inputs' values in; the output's values out, and, when asked
/// (`true`: an input needs a gradient), what the backward needs.
pub(crate) type HostForward<'a, const N: usize> = dyn FnOnce([HostValues; N], bool) -> (Vec<f32>, Option<Arc<dyn HostGrad>>) + 'a;

/// Runs a host op on `inputs` (f32 tensors of one burn-flex backend) giving an output of
/// `out_shape`; `None` when `B` is not burn-flex or an input is not f32.
pub(crate) fn run_host<B: Backend, const D: usize, const N: usize>(
    inputs: [&Tensor<B, D>; N],
    out_shape: [usize; D],
    forward: Box<HostForward<'_, N>>,
) -> Option<Tensor<B, D>> {
    if !inputs.iter().all(|t| crate::runs_host_passes(*t)) {
        return None;
    }
    if let Some(inputs) = downcast_all::<B, Autodiff<Flex>, D, N>(&inputs) {
        return back_to(tracked(inputs, out_shape, forward)?);
    }
    if let Some(inputs) = downcast_all::<B, Autodiff<Flex, BalancedCheckpointing>, D, N>(&inputs) {
        return back_to(tracked(inputs, out_shape, forward)?);
    }
    let values = host_values_all(&inputs)?;
    let (out, _) = forward(values, false);
    back_to(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(flex_primitive(out, out_shape))))
}

fn downcast_all<'a, B: Backend, T: Backend, const D: usize, const N: usize>(inputs: &[&'a Tensor<B, D>; N]) -> Option<[&'a Tensor<T, D>; N]> {
    let cast: Vec<&Tensor<T, D>> = inputs.iter().map(|t| (*t as &dyn Any).downcast_ref::<Tensor<T, D>>()).collect::<Option<_>>()?;
    cast.try_into().ok()
}

fn back_to<B: Backend, const D: usize>(t: impl Any) -> Option<Tensor<B, D>> {
    (Box::new(t) as Box<dyn Any>).downcast::<Tensor<B, D>>().ok().map(|t| *t)
}

fn host_values_all<B: Backend, const D: usize, const N: usize>(inputs: &[&Tensor<B, D>; N]) -> Option<[HostValues; N]> {
    let values: Vec<HostValues> = inputs.iter().map(|t| host_values(*t)).collect::<Option<_>>()?;
    values.try_into().ok()
}

/// The f32 values of a tensor of burn-flex (plain, or the inner values under `Autodiff`),
/// row-major, without a copy when the tensor is dense; `None` for any other backend or dtype.
pub(crate) fn host_values<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<HostValues> {
    let any = t as &dyn Any;
    let flex = if let Some(t) = any.downcast_ref::<Tensor<Flex, D>>() {
        t.clone()
    } else if let Some(t) = any.downcast_ref::<Tensor<Autodiff<Flex>, D>>() {
        t.clone().inner()
    } else if let Some(t) = any.downcast_ref::<Tensor<Autodiff<Flex, BalancedCheckpointing>, D>>() {
        t.clone().inner()
    } else {
        return None;
    };
    match flex.into_primitive() {
        TensorPrimitive::Float(p) => HostValues::of(p),
        TensorPrimitive::QFloat(_) => None,
    }
}

fn flex_primitive<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> <Flex as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive {
    Tensor::<Flex, D>::from_data(TensorData::new(values, shape), &Default::default()).into_primitive().tensor()
}

/// The backward step of a host op with `N` inputs of rank `D`.
#[derive(Debug)]
struct HostStep<const D: usize, const N: usize>;

/// What [`HostStep`] keeps: the op's backward and its inputs' shapes.
#[derive(Debug, Clone)]
struct StepState<const D: usize, const N: usize> {
    grad: Arc<dyn HostGrad>,
    shapes: [[usize; D]; N],
}

impl<const D: usize, const N: usize> Backward<Flex, N> for HostStep<D, N> {
    type State = StepState<D, N>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let Some(dout) = HostValues::of(grads.consume::<Flex>(&ops.node)) else {
            // Not reachable for the f32 gradient of an f32 op; the inputs then get no gradient
            // rather than the step aborting.
            return;
        };
        let needed: Vec<bool> = ops.parents.iter().map(Option::is_some).collect();
        let input_grads = ops.state.grad.grads(&dout, &needed);
        for ((parent, grad), shape) in ops.parents.iter().zip(input_grads).zip(ops.state.shapes) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(node.id, flex_primitive(grad, shape));
            }
        }
    }
}

/// The forward under `Autodiff<Flex, C>`, recording a [`HostStep`] when an input needs a gradient.
fn tracked<C: CheckpointStrategy, const D: usize, const N: usize>(
    inputs: [&Tensor<Autodiff<Flex, C>, D>; N],
    out_shape: [usize; D],
    forward: Box<HostForward<'_, N>>,
) -> Option<Tensor<Autodiff<Flex, C>, D>> {
    let primitives: Vec<_> = inputs
        .iter()
        .map(|t| match (*t).clone().into_primitive() {
            TensorPrimitive::Float(p) => Some(p),
            TensorPrimitive::QFloat(_) => None,
        })
        .collect::<Option<_>>()?;
    let nodes: [_; N] = primitives.iter().map(|p| p.node.clone()).collect::<Vec<_>>().try_into().ok()?;
    let shapes: [[usize; D]; N] = inputs.map(|t| t.dims());
    let values = host_values_all(&inputs)?;
    let out = match HostStep::<D, N>.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, grad) = forward(values, true);
            let grad = grad?;
            prep.finish(StepState { grad, shapes }, flex_primitive(out, out_shape))
        }
        OpsKind::UnTracked(prep) => {
            let (out, _) = forward(values, false);
            prep.finish(flex_primitive(out, out_shape))
        }
    };
    Some(Tensor::from_primitive(TensorPrimitive::Float(out)))
}
