//! Kernel vs reference-twin parity, written once for every CubeCL backend `K` (the kernel path,
//! plain and under `Autodiff<K>`); the reference twin runs on flex. `wgpu_parity.rs` and
//! `cuda_parity.rs` instantiate the cases with [`parity_tests!`], each behind its own availability
//! check (`support/mod.rs`).
//!
//! Sizes are small (lavapipe runs the wgpu kernels on the CPU) except one real-shaped anchor case
//! (`T = 577`, `H = 16`, `N = 144/256`, two samples).
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use anchorage_kernels::{
    anchor, gather_tokens, runs_kernels, select_anchors, topk, topk_gather_rows,
};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

type AF = Autodiff<Flex>;

/// One `#[test]` per case below for the kernel backend `$backend`; a case runs only when
/// `$available()` says the backend's device is there (it panics instead where a variable requires it).
macro_rules! parity_tests {
    ($backend:ty, $available:path) => {
        parity_tests!(
            $backend,
            $available;
            dispatch_takes_the_kernel_here_and_the_reference_on_flex,
            anchor_indices_match_the_reference_on_tie_free_attention,
            anchor_ties_break_like_the_reference,
            anchor_kernel_runs_under_autodiff_and_checks_arguments,
            gather_tokens_matches_the_reference_with_repeats,
            topk_gather_matches_the_reference_values_and_indices,
            topk_radix_select_handles_signs_zeros_infinities_and_long_rows,
            topk_gather_gradients_match_the_reference,
            gather_tokens_gradients_scatter_add_under_autodiff,
            recomputed_attention_matches_burns_attention_and_its_gradients,
            gemm_products_match_a_host_product,
            linear_on_the_cublas_engine_matches_flex_and_its_gradients,
            recomputed_attention_on_the_cublas_engine_matches_flex,
        );
    };
    ($backend:ty, $available:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if $available() {
                    $crate::parity_cases::$case::<$backend>();
                }
            }
        )*
    };
}
pub(crate) use parity_tests;

/// Seeded uniform [0, 1) values; `levels > 0` quantises them so that ties are frequent.
fn values(n: usize, seed: u64, levels: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((x >> 33) as f32) / (1u64 << 31) as f32;
            if levels > 0 {
                (v * levels as f32).floor() / levels as f32
            } else {
                v
            }
        })
        .collect()
}

fn tensor<B: Backend, const D: usize>(data: &[f32], shape: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(data.to_vec(), shape), &Default::default())
}

fn ints<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec::<i64>().unwrap()
}

fn floats<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

pub fn dispatch_takes_the_kernel_here_and_the_reference_on_flex<K: Backend>() {
    assert!(runs_kernels(&tensor::<K, 2>(&[1.0, 2.0], [1, 2])));
    assert!(runs_kernels(&tensor::<Autodiff<K>, 2>(&[1.0, 2.0], [1, 2])));
    assert!(!runs_kernels(&tensor::<Flex, 2>(&[1.0, 2.0], [1, 2])));
}

pub fn anchor_indices_match_the_reference_on_tie_free_attention<K: Backend>() {
    for (b, h, t, count, seed) in [
        (3, 4, 37, 8, 11),
        (2, 2, 10, 8, 12),
        (2, 16, 145, 144, 13),
        (2, 16, 577, 144, 14),
        (2, 16, 577, 256, 15),
    ] {
        let att = values(b * h * t, seed, 0);
        let want = ints(
            anchor::reference::select_anchors(tensor::<Flex, 3>(&att, [b, h, t]), count).unwrap(),
        );
        let got = ints(select_anchors(tensor::<K, 3>(&att, [b, h, t]), count).unwrap());
        assert_eq!(got, want, "b={b} h={h} t={t} count={count}");
        // CLS first, ascending, no duplicates.
        for row in got.chunks(count + 1) {
            assert_eq!(row[0], 0);
            assert!(row.windows(2).all(|w| w[0] < w[1]), "{row:?}");
        }
    }
}

pub fn anchor_ties_break_like_the_reference<K: Backend>() {
    // Scores on 3 levels: most comparisons are ties, resolved by the larger token index.
    for (b, h, t, count, seed) in [(2, 4, 33, 16, 21), (1, 16, 65, 48, 22)] {
        let att = values(b * h * t, seed, 3);
        let want = ints(
            anchor::reference::select_anchors(tensor::<Flex, 3>(&att, [b, h, t]), count).unwrap(),
        );
        let got = ints(select_anchors(tensor::<K, 3>(&att, [b, h, t]), count).unwrap());
        assert_eq!(got, want, "b={b} h={h} t={t} count={count}");
    }
    let flat =
        ints(select_anchors(tensor::<K, 3>(&[9.0, 1.0, 1.0, 1.0, 1.0], [1, 1, 5]), 2).unwrap());
    assert_eq!(flat, vec![0, 3, 4]);
}

pub fn anchor_kernel_runs_under_autodiff_and_checks_arguments<K: Backend>() {
    let (b, h, t, count) = (2, 4, 29, 12);
    let att = values(b * h * t, 31, 0);
    let plain = ints(select_anchors(tensor::<K, 3>(&att, [b, h, t]), count).unwrap());
    let ad = ints(
        select_anchors(
            tensor::<Autodiff<K>, 3>(&att, [b, h, t]).require_grad(),
            count,
        )
        .unwrap(),
    );
    assert_eq!(plain, ad);
    assert!(select_anchors(tensor::<K, 3>(&att, [b, h, t]), 6).is_err());
    assert!(select_anchors(tensor::<K, 3>(&att, [b, h, t]), 32).is_err());
}

pub fn gather_tokens_matches_the_reference_with_repeats<K: Backend>() {
    // D = 12 (vectorised by 4), 6 (by 2) and 5 (scalar).
    for d in [12, 6, 5] {
        let (b, t, n) = (2, 9, 5);
        let x = values(b * t * d, 41 + d as u64, 0);
        let idx = vec![0i64, 3, 3, 8, 1, 8, 7, 0, 2, 2];
        let want = floats(
            anchor::reference::gather_tokens(
                tensor::<Flex, 3>(&x, [b, t, d]),
                Tensor::from_data(TensorData::new(idx.clone(), [b, n]), &Default::default()),
            )
            .unwrap(),
        );
        let got = floats(
            gather_tokens(
                tensor::<K, 3>(&x, [b, t, d]),
                Tensor::from_data(TensorData::new(idx, [b, n]), &Default::default()),
            )
            .unwrap(),
        );
        assert_eq!(got, want, "d={d}");
    }
}

pub fn topk_gather_matches_the_reference_values_and_indices<K: Backend>() {
    for (b, h, l, d, k, levels, seed) in [
        (2, 3, 50, 8, 7, 0, 51),
        (1, 2, 64, 6, 64, 0, 52),
        (2, 2, 40, 5, 13, 4, 53),
        (1, 4, 300, 16, 30, 0, 54),
    ] {
        let s = values(b * h * l, seed, levels);
        let r = values(b * h * l * d, seed + 100, 0);
        let (want_rows, want_idx) = topk::reference::topk_gather_rows(
            tensor::<Flex, 3>(&s, [b, h, l]),
            tensor::<Flex, 4>(&r, [b, h, l, d]),
            k,
        )
        .unwrap();
        let (got_rows, got_idx) = topk_gather_rows(
            tensor::<K, 3>(&s, [b, h, l]),
            tensor::<K, 4>(&r, [b, h, l, d]),
            k,
        )
        .unwrap();
        assert_eq!(
            ints(got_idx),
            ints(want_idx),
            "b={b} h={h} l={l} k={k} levels={levels}"
        );
        assert_eq!(
            floats(got_rows),
            floats(want_rows),
            "b={b} h={h} l={l} k={k}"
        );
    }
    // k = L keeps every row in order.
    let (l, d) = (20, 4);
    let r = values(l * d, 55, 0);
    let (kept, idx) = topk_gather_rows(
        tensor::<K, 3>(&values(l, 56, 0), [1, 1, l]),
        tensor::<K, 4>(&r, [1, 1, l, d]),
        l,
    )
    .unwrap();
    assert_eq!(ints(idx), (0..l as i64).collect::<Vec<_>>());
    assert_eq!(floats(kept), r);
}

pub fn topk_radix_select_handles_signs_zeros_infinities_and_long_rows<K: Backend>() {
    // Negative scores, both zeros (equal, so the larger index wins), infinities, huge magnitudes.
    let special = [
        -1.5f32,
        0.0,
        -0.0,
        2.0,
        f32::INFINITY,
        -3.0e30,
        0.0,
        f32::NEG_INFINITY,
        7.0e-40,
        -7.0e-40,
        1.0e30,
        -0.0,
        2.0,
        -2.0,
        0.5,
        -0.5,
    ];
    let l = special.len();
    for k in [1, 3, 5, 8, 11, 15] {
        let want = ints(
            topk::reference::topk_gather_rows(
                tensor::<Flex, 3>(&special, [1, 1, l]),
                tensor::<Flex, 4>(&special, [1, 1, l, 1]),
                k,
            )
            .unwrap()
            .1,
        );
        let got = ints(
            topk_gather_rows(
                tensor::<K, 3>(&special, [1, 1, l]),
                tensor::<K, 4>(&special, [1, 1, l, 1]),
                k,
            )
            .unwrap()
            .1,
        );
        assert_eq!(got, want, "k={k}");
    }
    // Real key/value row length (L = 2048, several tokens per unit), with and without ties.
    for (levels, seed) in [(0, 71), (64, 72)] {
        let (h, l, k) = (2, 2048, 512);
        let s = values(h * l, seed, levels);
        let want = ints(
            topk::reference::topk_gather_rows(
                tensor::<Flex, 3>(&s, [1, h, l]),
                tensor::<Flex, 4>(&s, [1, h, l, 1]),
                k,
            )
            .unwrap()
            .1,
        );
        let got = ints(
            topk_gather_rows(
                tensor::<K, 3>(&s, [1, h, l]),
                tensor::<K, 4>(&s, [1, h, l, 1]),
                k,
            )
            .unwrap()
            .1,
        );
        assert_eq!(got, want, "levels={levels}");
    }
}

pub fn topk_gather_gradients_match_the_reference<K: Backend>() {
    let (b, h, l, d, k) = (2, 2, 24, 4, 6);
    let s = values(b * h * l, 61, 0);
    let r = values(b * h * l * d, 62, 0);
    let w = values(b * h * k * d, 63, 0);
    let grad_of = |kernel: bool| -> (Vec<f32>, Vec<f32>) {
        if kernel {
            let rows = tensor::<Autodiff<K>, 4>(&r, [b, h, l, d]).require_grad();
            let (kept, _) =
                topk_gather_rows(tensor::<Autodiff<K>, 3>(&s, [b, h, l]), rows.clone(), k).unwrap();
            let grads = (kept.clone() * tensor::<Autodiff<K>, 4>(&w, [b, h, k, d]))
                .sum()
                .backward();
            (floats(kept), floats(rows.grad(&grads).unwrap()))
        } else {
            let rows = tensor::<AF, 4>(&r, [b, h, l, d]).require_grad();
            let (kept, _) =
                topk::reference::topk_gather_rows(tensor::<AF, 3>(&s, [b, h, l]), rows.clone(), k)
                    .unwrap();
            let grads = (kept.clone() * tensor::<AF, 4>(&w, [b, h, k, d]))
                .sum()
                .backward();
            (floats(kept), floats(rows.grad(&grads).unwrap()))
        }
    };
    let (kv, kg) = grad_of(true);
    let (rv, rg) = grad_of(false);
    assert_eq!(kv, rv);
    assert_eq!(kg, rg, "scatter-add gradient");
    assert_eq!(kg.iter().filter(|g| **g != 0.0).count(), b * h * k * d);
}

pub fn gather_tokens_gradients_scatter_add_under_autodiff<K: Backend>() {
    let (b, t, d) = (1, 4, 3);
    let x = tensor::<Autodiff<K>, 3>(&(0..12).map(|v| v as f32).collect::<Vec<_>>(), [b, t, d])
        .require_grad();
    let idx = Tensor::<Autodiff<K>, 2, Int>::from_data(
        TensorData::new(vec![0i64, 2, 2], [1, 3]),
        &Default::default(),
    );
    let y = gather_tokens(x.clone(), idx).unwrap();
    assert_eq!(floats(y.clone()), vec![0., 1., 2., 6., 7., 8., 6., 7., 8.]);
    let g = floats(x.grad(&y.sum().backward()).unwrap());
    assert_eq!(g, vec![1., 1., 1., 0., 0., 0., 2., 2., 2., 0., 0., 0.]);
}

/// `recomputed_attention` (which keeps only q, k, v and the mask for the backward pass) against
/// burn's `attention` op recorded under `Autodiff<K>`: the same outputs, bit for bit (the same ops
/// in the same order), and the same gradients of q, k and v within float rounding (its backward
/// is the closed form, burn's the chain through a dozen ops), with no or balanced checkpointing.
/// Cases: causal; causal with right padding (a padded query row sees no key: zeros, no NaN);
/// a dense mask without causality; three queries over seven keys (the causal mask aligned at the
/// bottom-right corner, as for a continued sequence). Plain `K` and flex get `None`.
pub fn recomputed_attention_matches_burns_attention_and_its_gradients<K: Backend>() {
    use anchorage_kernels::attention::{recomputed_attention, recomputed_attention_reference};
    use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy};
    use burn::tensor::Bool;

    let (b, h, d) = (2, 2, 8);
    // Keys hidden per (sample, query, key): padding (sample 1 has 4 real tokens of 7), and a dense
    // pattern with one row fully hidden.
    let padding = |lq: usize, lk: usize| -> Vec<bool> {
        (0..b * h * lq * lk).map(|i| i / (h * lq * lk) == 1 && i % lk >= 4).collect()
    };
    let dense = |lq: usize, lk: usize| -> Vec<bool> {
        (0..b * h * lq * lk).map(|i| (i / lk) % lq == 2 || (i * 7) % 5 == 0).collect()
    };
    type Case = (&'static str, usize, usize, bool, Option<Vec<bool>>);
    let cases: Vec<Case> = vec![
        ("causal", 7, 7, true, None),
        ("causal with padding", 7, 7, true, Some(padding(7, 7))),
        ("dense mask", 6, 6, false, Some(dense(6, 6))),
        ("3 queries over 7 keys", 3, 7, true, None),
    ];

    fn run<A: Backend>(
        recompute: bool,
        dims: [usize; 5],
        is_causal: bool,
        mask: &Option<Vec<bool>>,
        data: [&[f32]; 4],
    ) -> (Option<Vec<f32>>, Vec<Vec<f32>>)
    where
        A: burn::tensor::backend::AutodiffBackend,
    {
        let [b, h, lq, lk, d] = dims;
        let q = tensor::<A, 4>(data[0], [b, h, lq, d]).require_grad();
        let k = tensor::<A, 4>(data[1], [b, h, lk, d]).require_grad();
        let v = tensor::<A, 4>(data[2], [b, h, lk, d]).require_grad();
        let mask = mask.as_ref().map(|m| {
            Tensor::<A, 4, Bool>::from_data(TensorData::new(m.clone(), [b, h, lq, lk]), &Default::default())
        });
        let out = if recompute {
            match recomputed_attention(&q, &k, &v, mask.as_ref(), is_causal) {
                Some(out) => out,
                None => return (None, vec![]),
            }
        } else {
            recomputed_attention_reference(q.clone(), k.clone(), v.clone(), mask, is_causal)
        };
        let w = tensor::<A, 4>(data[3], [b, h, lq, d]);
        let grads = (out.clone() * w).sum().backward();
        let g = [q, k, v].map(|t| floats(t.grad(&grads).unwrap()));
        (Some(floats(out)), g.to_vec())
    }
    // Gradients, relative to the largest: the two paths take different products (burn's autodiff
    // of softmax and matmul against the recomputed `dS = P * (dP - rowsum(dO * O))`). On lavapipe
    // both are plain f32 (2e-5); CUDA's f32 matmuls differed by up to 5.2e-4 on an H200
    // (2026-12-04; TF32-like rounding), so 4e-3 there. A wrong formula is off by order one.
    let rel = if K::name(&Default::default()).to_lowercase().contains("cuda") { 4e-3 } else { 2e-5 };
    fn both<C: CheckpointStrategy, K: Backend>(name: &str, dims: [usize; 5], is_causal: bool, mask: &Option<Vec<bool>>, data: [&[f32]; 4], rel: f32) {
        let (out, grads) = run::<Autodiff<K, C>>(true, dims, is_causal, mask, data);
        let out = out.unwrap_or_else(|| panic!("{name}: recomputed_attention declined Autodiff<K>"));
        let (want, want_grads) = run::<Autodiff<K, C>>(false, dims, is_causal, mask, data);
        assert_eq!(out, want.unwrap(), "{name}: outputs");
        assert!(out.iter().all(|x| x.is_finite()), "{name}: {out:?}");
        for (which, (got, want)) in ["q", "k", "v"].iter().zip(grads.iter().zip(&want_grads)) {
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-3);
            let worst = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= rel * scale, "{name}: d{which} differs by {worst} (largest {scale}, tolerance {rel} of it)");
            assert!(got.iter().any(|x| *x != 0.0), "{name}: d{which} is all zeros");
        }
    }
    for (name, lq, lk, is_causal, mask) in &cases {
        let dims = [b, h, *lq, *lk, d];
        let q = values(b * h * lq * d, 71, 0);
        let k = values(b * h * lk * d, 72, 0);
        let v = values(b * h * lk * d, 73, 0);
        let w = values(b * h * lq * d, 74, 0);
        let q: Vec<f32> = q.iter().map(|x| 4.0 * x - 2.0).collect(); // a few peaked rows
        both::<burn::backend::autodiff::checkpoint::strategy::NoCheckpointing, K>(name, dims, *is_causal, mask, [&q, &k, &v, &w], rel);
        both::<BalancedCheckpointing, K>(name, dims, *is_causal, mask, [&q, &k, &v, &w], rel);
    }
    // Not an autodiff CubeCL backend: declined.
    let t = tensor::<K, 4>(&values(b * h * 3 * d, 75, 0), [b, h, 3, d]);
    assert!(recomputed_attention(&t, &t, &t, None, true).is_none(), "plain K");
    let t = tensor::<AF, 4>(&values(b * h * 3 * d, 75, 0), [b, h, 3, d]);
    assert!(recomputed_attention(&t, &t, &t, None, true).is_none(), "flex");
}

/// Whether `K` is burn's CUDA backend (where the cuBLAS engine applies).
fn is_cuda<K: Backend>() -> bool {
    K::name(&Default::default()).to_lowercase().contains("cuda")
}

/// The largest difference between `got` and `want`, and the largest `|want|` (at least 1e-3).
fn worst_and_scale(got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    (worst, want.iter().fold(1e-3f32, |m, x| m.max(x.abs())))
}

/// One product `a · b` on the backend against an f64 product of the same (dtype-rounded) values:
/// `a` and `b` are stored with shapes `a_stored`/`b_stored` and read with dimensions `*_swap`
/// swapped. On CUDA it must run on cuBLAS (`gemm::cublas_matmul`); elsewhere the case checks
/// `gemm::matmul` (burn's product there).
fn gemm_case<K: Backend, const D: usize>(name: &str, a_stored: [usize; D], a_swap: Option<(usize, usize)>, b_stored: [usize; D], b_swap: Option<(usize, usize)>, dtype: burn::tensor::DType, seed: u64) {
    use anchorage_kernels::gemm;
    let make = |stored: [usize; D], swap: Option<(usize, usize)>, seed: u64| {
        let n = stored.iter().product();
        let t = tensor::<K, D>(&values(n, seed, 0).iter().map(|v| 2.0 * v - 1.0).collect::<Vec<_>>(), stored).cast(dtype);
        match swap {
            Some((i, j)) => t.swap_dims(i, j),
            None => t,
        }
    };
    let (a, b) = (make(a_stored, a_swap, seed), make(b_stored, b_swap, seed + 1));
    let (ad, bd) = (a.dims(), b.dims());
    let (av, bv) = (floats(a.clone()), floats(b.clone()));
    let got = match gemm::cublas_matmul(&a, &b) {
        Some(result) => result.unwrap_or_else(|why| panic!("{name} {dtype:?}: cuBLAS failed: {why}")),
        None => {
            assert!(!is_cuda::<K>(), "{name}: cuBLAS declined a plain CUDA product");
            gemm::matmul(a, b)
        }
    };
    let (m, k, n) = (ad[D - 2], ad[D - 1], bd[D - 1]);
    let batch: Vec<usize> = (0..D - 2).map(|i| ad[i].max(bd[i])).collect();
    assert_eq!(got.dims()[..D - 2], batch[..], "{name}: batch dimensions");
    let count: usize = batch.iter().product();
    let mut want = Vec::with_capacity(count * m * n);
    for flat in 0..count {
        // The batch index, then each operand's (0 on a broadcast dimension).
        let (mut rest, mut ai, mut bi) = (flat, 0usize, 0usize);
        let (mut astride, mut bstride) = (1usize, 1usize);
        for d in (0..D - 2).rev() {
            let i = rest % batch[d];
            rest /= batch[d];
            ai += if ad[d] == 1 { 0 } else { i * astride };
            bi += if bd[d] == 1 { 0 } else { i * bstride };
            astride *= ad[d];
            bstride *= bd[d];
        }
        for r in 0..m {
            for c in 0..n {
                let dot: f64 = (0..k).map(|l| av[(ai * m + r) * k + l] as f64 * bv[(bi * k + l) * n + c] as f64).sum();
                want.push(dot as f32);
            }
        }
    }
    let (worst, scale) = worst_and_scale(&floats(got), &want);
    // f32: accumulation order only. bf16: the output rounded to bf16 (2^-8 of a value at most).
    let rel = if dtype == burn::tensor::DType::F32 { 1e-5 } else { 8e-3 };
    assert!(worst <= rel * scale, "{name} {dtype:?}: off by {worst} (largest {scale}, tolerance {rel} of it)");
}

/// `gemm`'s products (cuBLAS on CUDA) at the layouts the model hands them, f32 and bf16: plain,
/// either operand transposed (a `swap_dims` view), a batch times a broadcast weight (burn's
/// `linear`) and its transpose (the backward), `q kᵀ` over batch and heads, and a heads view whose
/// batch dimensions do not flatten (copied contiguous first).
pub fn gemm_products_match_a_host_product<K: Backend>() {
    use burn::tensor::DType;
    // bf16 where cuBLAS runs it (lavapipe has no 16-bit floats).
    let dtypes: &[DType] = if is_cuda::<K>() { &[DType::F32, DType::BF16] } else { &[DType::F32] };
    for &dtype in dtypes {
        gemm_case::<K, 2>("plain", [5, 7], None, [7, 6], None, dtype, 81);
        gemm_case::<K, 2>("right transposed", [5, 7], None, [6, 7], Some((0, 1)), dtype, 83);
        gemm_case::<K, 2>("left transposed", [7, 5], Some((0, 1)), [7, 6], None, dtype, 85);
        gemm_case::<K, 2>("one row", [1, 33], None, [33, 17], None, dtype, 87);
        gemm_case::<K, 3>("broadcast weight", [3, 5, 7], None, [1, 7, 6], None, dtype, 89);
        gemm_case::<K, 3>("broadcast transposed weight", [3, 5, 7], None, [1, 6, 7], Some((1, 2)), dtype, 91);
        gemm_case::<K, 4>("q k^T", [2, 3, 5, 8], None, [2, 3, 6, 8], Some((2, 3)), dtype, 93);
        gemm_case::<K, 4>("heads view", [2, 3, 5, 6], None, [2, 6, 3, 8], Some((1, 2)), dtype, 95);
        gemm_case::<K, 3>("long k", [2, 3, 300], None, [2, 300, 4], None, dtype, 97);
    }
}

/// The linear layer with the engine set to cuBLAS (`linear::forward` then takes `gemm_step`: on
/// CUDA its products and backward on cuBLAS) under `Autodiff<K>` against burn's `linear` under
/// `Autodiff<Flex>`: values and the gradients of x, weight and bias (x a transposed view).
pub fn linear_on_the_cublas_engine_matches_flex_and_its_gradients<K: Backend>() {
    use anchorage_kernels::gemm::{with_engine, MatmulEngine};
    use anchorage_kernels::linear::forward;
    use burn::module::Param;
    use burn::nn::Linear;

    let (rows, k, n) = (2 * 11, 19, 23);
    let xv: Vec<f32> = values(rows * k, 101, 0).iter().map(|v| 2.0 * v - 1.0).collect();
    let wv: Vec<f32> = values(k * n, 102, 0).iter().map(|v| 0.5 * v - 0.25).collect();
    let bv: Vec<f32> = values(n, 103, 0);
    let gv: Vec<f32> = values(2 * 11 * n, 104, 0);
    fn run<A: burn::tensor::backend::AutodiffBackend>(xv: &[f32], wv: &[f32], bv: &[f32], gv: &[f32], train_weight: bool) -> Vec<Vec<f32>> {
        let (k, n) = (19, 23);
        let x = tensor::<A, 3>(xv, [2, k, 11]).swap_dims(1, 2).require_grad(); // [2, 11, k], strided
        // A frozen weight as the LLM's are (`Param::from_tensor` asks for a gradient).
        let weight = Param::from_tensor(tensor::<A, 2>(wv, [k, n])).set_require_grad(train_weight);
        let layer: Linear<A> = Linear { weight, bias: Some(Param::from_tensor(tensor::<A, 1>(bv, [n]).require_grad())) };
        let out = forward(&layer, x.clone());
        let grads = (out.clone() * tensor::<A, 3>(gv, [2, 11, n])).sum().backward();
        let mut result = vec![floats(out), floats(x.grad(&grads).unwrap())];
        result.push(layer.bias.as_ref().unwrap().val().grad(&grads).map(floats).unwrap());
        if let Some(dw) = layer.weight.val().grad(&grads) {
            result.push(floats(dw));
        }
        result
    }
    for train_weight in [false, true] {
        let got = with_engine(MatmulEngine::Cublas, || run::<Autodiff<K>>(&xv, &wv, &bv, &gv, train_weight));
        let want = run::<AF>(&xv, &wv, &bv, &gv, train_weight);
        assert_eq!(got.len(), want.len(), "the weight's gradient exactly when asked for");
        assert_eq!(got.len(), if train_weight { 4 } else { 3 });
        for (which, (g, w)) in ["y", "dx", "db", "dW"].iter().zip(got.iter().zip(&want)) {
            let (worst, scale) = worst_and_scale(g, w);
            assert!(worst <= 1e-4 * scale, "{which} (weight trained: {train_weight}): off by {worst} (largest {scale})");
        }
    }
}

/// `recomputed_attention` with the engine set to cuBLAS (its four products on cuBLAS on CUDA)
/// under `Autodiff<K>` against burn's attention under `Autodiff<Flex>`: outputs and gradients,
/// causal with right padding, q a heads view of a `[b, l, h, d]` tensor (batch dimensions that do
/// not flatten: copied first).
pub fn recomputed_attention_on_the_cublas_engine_matches_flex<K: Backend>() {
    use anchorage_kernels::attention::{recomputed_attention, recomputed_attention_reference};
    use anchorage_kernels::gemm::{with_engine, MatmulEngine};
    use burn::tensor::Bool;
    let (b, h, l, d) = (2, 2, 7, 8);
    let data: Vec<Vec<f32>> = (0..4).map(|i| values(b * h * l * d, 111 + i, 0).iter().map(|v| 3.0 * v - 1.5).collect()).collect();
    let mask: Vec<bool> = (0..b * h * l * l).map(|i| i / (h * l * l) == 1 && i % l >= 4).collect();
    fn run<A: burn::tensor::backend::AutodiffBackend>(data: &[Vec<f32>], mask: &[bool], ours: bool) -> Option<Vec<Vec<f32>>> {
        let (b, h, l, d) = (2, 2, 7, 8);
        let q = tensor::<A, 4>(&data[0], [b, l, h, d]).swap_dims(1, 2).require_grad();
        let k = tensor::<A, 4>(&data[1], [b, h, l, d]).require_grad();
        let v = tensor::<A, 4>(&data[2], [b, h, l, d]).require_grad();
        let m = Tensor::<A, 4, Bool>::from_data(TensorData::new(mask.to_vec(), [b, h, l, l]), &Default::default());
        let out = if ours { recomputed_attention(&q, &k, &v, Some(&m), true)? } else { recomputed_attention_reference(q.clone(), k.clone(), v.clone(), Some(m), true) };
        let grads = (out.clone() * tensor::<A, 4>(&data[3], [b, h, l, d])).sum().backward();
        let mut result = vec![floats(out)];
        result.extend([q, k, v].map(|t| floats(t.grad(&grads).unwrap())));
        Some(result)
    }
    let got = with_engine(MatmulEngine::Cublas, || run::<Autodiff<K>>(&data, &mask, true)).expect("recomputed_attention declined Autodiff<K>");
    let want = run::<AF>(&data, &mask, false).unwrap();
    for (which, (g, w)) in ["out", "dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
        let (worst, scale) = worst_and_scale(g, w);
        assert!(worst <= 1e-4 * scale, "{which}: off by {worst} (largest {scale})");
        assert!(g.iter().all(|x| x.is_finite()), "{which}: not finite");
    }
}
