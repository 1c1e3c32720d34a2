//! Global gradient-norm clipping, as PyTorch's `clip_grad_norm_` (what transformers' Trainer calls
//! with `max_grad_norm = 1.0`): one norm over every trainable parameter's gradient, and every
//! gradient scaled by `min(1, max_norm / (norm + 1e-6))`.
//!
//! burn's own `GradientClipping::Norm` clips each parameter by its own norm, which is a different
//! update whenever more than one parameter trains.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{backend::AutodiffBackend, ElementConversion, Tensor};

/// Returns the global L2 norm of `grads` over `module`'s parameters, and clips them in place to
/// `max_norm` when `max_norm > 0`.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let mut sum = SquaredSum::<B> { grads, total: 0.0, _b: Default::default() };
    module.visit(&mut sum);
    let norm = sum.total.sqrt();
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            let mut scale = Scale::<B> { grads, coef, _b: Default::default() };
            module.visit(&mut scale);
        }
    }
    norm
}

struct SquaredSum<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredSum<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s: f64 = g.square().sum().into_scalar().elem();
            self.total += s;
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    coef: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.coef));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};
    use burn::module::Module;

    type AD = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Two<B: burn::tensor::backend::Backend> {
        a: Linear<B>,
        b: Linear<B>,
    }

    fn grads_of(m: &Two<AD>, scale: f32) -> GradientsParams {
        let device = Default::default();
        let x = Tensor::<AD, 2>::ones([1, 3], &device) * scale;
        let y = m.a.forward(x.clone()).sum() + m.b.forward(x).sum() * 2.0;
        GradientsParams::from_grads(y.backward(), m)
    }

    fn all_grads(m: &Two<AD>, g: &GradientsParams) -> Vec<f32> {
        let mut out = Vec::new();
        for id in [m.a.weight.id, m.b.weight.id] {
            out.extend(g.get::<Flex, 2>(id).unwrap().into_data().to_vec::<f32>().unwrap());
        }
        for id in [m.a.bias.as_ref().unwrap().id, m.b.bias.as_ref().unwrap().id] {
            out.extend(g.get::<Flex, 1>(id).unwrap().into_data().to_vec::<f32>().unwrap());
        }
        out
    }

    #[test]
    fn norm_is_global_and_clipping_scales_every_gradient_alike() {
        let device = Default::default();
        let m = Two { a: LinearConfig::new(3, 2).init::<AD>(&device), b: LinearConfig::new(3, 2).init::<AD>(&device) };
        let mut g = grads_of(&m, 3.0);
        let before = all_grads(&m, &g);
        let want: f64 = before.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        // d/dW of sum(Wx+b) is x (3 per entry) for a, 2x for b; biases 1 and 2.
        assert!((want - (6.0f64 * 9.0 + 6.0 * 36.0 + 2.0 + 8.0).sqrt()).abs() < 1e-6);
        let norm = clip_global_norm(&m, &mut g, 1.0);
        assert!((norm - want).abs() < 1e-4, "{norm} vs {want}");
        let after = all_grads(&m, &g);
        let coef = 1.0 / (want + 1e-6);
        for (a, b) in after.iter().zip(&before) {
            assert!(((*a as f64) - (*b as f64) * coef).abs() < 1e-6, "{a} vs {b}·{coef}");
        }
        let clipped: f64 = after.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((clipped - 1.0).abs() < 1e-5);

        // Under the limit nothing changes (the norm here is sqrt(54 + 216 + 10) ≈ 16.7).
        let mut g = grads_of(&m, 3.0);
        let before = all_grads(&m, &g);
        clip_global_norm(&m, &mut g, 100.0);
        assert_eq!(all_grads(&m, &g), before);
    }
}
