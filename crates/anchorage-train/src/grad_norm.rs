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
    clip_to(module, grads, norm, max_norm);
    norm
}

/// Scales every gradient by `min(1, max_norm / (norm + 1e-6))` when `max_norm > 0`.
fn clip_to<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &mut GradientsParams, norm: f64, max_norm: f64) {
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            let mut scale = Scale::<B> { grads, coef, _b: Default::default() };
            module.visit(&mut scale);
        }
    }
}

/// [`clip_global_norm`] for gradients sharded across ranks (ZeRO-1: each rank holds the summed
/// gradients of the parameters it owns). Each rank lists the squared sum of each float parameter
/// in visiting order (zero where it holds no gradient), `sum_over_ranks` adds the lists over the
/// ranks, and the norm is their total in that order: since every squared sum is an f32 value
/// and exactly one rank holds each, the list travels exactly in f32 and the norm is
/// [`clip_global_norm`]'s over the whole gradients, bit for bit. The held gradients are clipped in
/// place as there.
pub fn clip_sharded_global_norm<B: AutodiffBackend, M: AutodiffModule<B>, E>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
    sum_over_ranks: impl FnOnce(&[f64]) -> Result<Vec<f64>, E>,
) -> Result<f64, E> {
    struct Each<'a> {
        grads: &'a GradientsParams,
        squares: Vec<f64>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Each<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.squares.push(self.grads.get::<B::InnerBackend, D>(param.id).map_or(0.0, squared_sum));
        }
    }
    let mut each = Each { grads, squares: Vec::new() };
    module.visit(&mut each);
    let norm = sum_over_ranks(&each.squares)?.iter().fold(0.0, |total, s| total + s).sqrt();
    clip_to(module, grads, norm, max_norm);
    Ok(norm)
}

/// A gradient's squared L2 norm, summed in its own dtype.
fn squared_sum<B: burn::tensor::backend::Backend, const D: usize>(g: Tensor<B, D>) -> f64 {
    g.square().sum().into_scalar().elem()
}

struct SquaredSum<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredSum<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.total += squared_sum(g);
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

    #[test]
    fn a_norm_summed_from_sharded_gradients_is_the_whole_norm_bit_for_bit() {
        let device = Default::default();
        let m = Two { a: LinearConfig::new(3, 2).init::<AD>(&device), b: LinearConfig::new(3, 2).init::<AD>(&device) };
        let mut whole = grads_of(&m, 0.7);
        let want_norm = clip_global_norm(&m, &mut whole, 1.0);
        assert!(want_norm > 1.0, "the case must clip: {want_norm}");
        let want = all_grads(&m, &whole);

        // Rank 0 holds a's weight and b's bias, rank 1 the other two.
        let shares = [vec![m.a.weight.id, m.b.bias.as_ref().unwrap().id], vec![m.b.weight.id, m.a.bias.as_ref().unwrap().id]];
        let mut held: Vec<GradientsParams> = shares
            .iter()
            .map(|share| {
                let mut all = grads_of(&m, 0.7);
                let mut kept = GradientsParams::new();
                for &id in share {
                    match all.remove::<Flex, 2>(id) {
                        Some(g) => kept.register::<Flex, 2>(id, g),
                        None => kept.register::<Flex, 1>(id, all.remove::<Flex, 1>(id).unwrap()),
                    }
                }
                kept
            })
            .collect();
        // Each rank's list of squares, then their sum over the ranks as the collective gives it.
        // (max_norm 0: only the norm, nothing clipped yet.)
        let lists: Vec<Vec<f64>> = held
            .iter_mut()
            .map(|g| {
                let mut list = Vec::new();
                clip_sharded_global_norm(&m, g, 0.0, |squares| {
                    list = squares.to_vec();
                    Ok::<_, ()>(squares.to_vec())
                })
                .unwrap();
                list
            })
            .collect();
        assert!(lists.iter().all(|l| l.len() == 4 && l.iter().filter(|&&s| s == 0.0).count() == 2), "{lists:?}");
        let summed: Vec<f64> = lists[0].iter().zip(&lists[1]).map(|(a, b)| f64::from(*a as f32 + *b as f32)).collect();
        for g in &mut held {
            let norm = clip_sharded_global_norm(&m, g, 1.0, |_| Ok::<_, ()>(summed.clone())).unwrap();
            assert_eq!(norm.to_bits(), want_norm.to_bits());
        }
        // The held gradients together are the whole clipped ones.
        let mut together = held.remove(0);
        let (b_weight, a_bias) = (m.b.weight.id, m.a.bias.as_ref().unwrap().id);
        together.register::<Flex, 2>(b_weight, held[0].remove::<Flex, 2>(b_weight).unwrap());
        together.register::<Flex, 1>(a_bias, held[0].remove::<Flex, 1>(a_bias).unwrap());
        assert_eq!(all_grads(&m, &together), want);
        // A failing collective is the caller's error, unchanged.
        assert_eq!(clip_sharded_global_norm(&m, &mut grads_of(&m, 1.0), 1.0, |_| Err::<Vec<f64>, _>("down")), Err("down"));
    }
}
