//! Splice and loss on tiny hand-checked batches.

use anchorage_model::{causal_lm_loss, causal_lm_loss_from_hidden, splice_embeddings, ImageSpan, ModelError, SpliceInput, SplicePlan, IGNORE_INDEX as IGN, IMAGE_TOKEN_INDEX as IMG};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Distribution, Tensor, TensorData};

type B = Flex;
type AD = Autodiff<Flex>;

fn rows(t: &Tensor<B, 3>, b: usize) -> Vec<Vec<f32>> {
    let [_, l, d] = t.dims();
    let v: Vec<f32> = t.clone().slice([b..b + 1, 0..l, 0..d]).into_data().to_vec().unwrap();
    v.chunks(d).map(|c| c.to_vec()).collect()
}

fn two_samples() -> (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>) {
    (vec![1, 5, IMG, 7, 8], vec![IGN, IGN, IGN, 7, 8], vec![1, 9, 10], vec![IGN, 9, 10])
}

#[test]
fn splice_replaces_placeholders_pads_right_and_restarts_positions() {
    let _rng = crate::backend_rng();
    let device = Default::default();
    let (ids0, lab0, ids1, lab1) = two_samples();
    let samples = [
        SpliceInput { input_ids: &ids0, labels: &lab0, images: &[0] },
        // Text-only: LLaVA still feeds a zero image (index 1 here) that is not spliced.
        SpliceInput { input_ids: &ids1, labels: &lab1, images: &[] },
    ];
    let plan = SplicePlan::new(&samples, 3, 2, 100, 0).unwrap();
    assert_eq!((plan.batch, plan.len, plan.text_len), (2, 7, 5));
    assert_eq!(plan.text_ids, vec![1, 5, 0, 7, 8, 1, 9, 10, 0, 0]);
    assert_eq!(plan.labels, vec![IGN, IGN, IGN, IGN, IGN, 7, 8, IGN, 9, 10, IGN, IGN, IGN, IGN]);
    assert_eq!(plan.position_ids, vec![0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 0, 0, 0, 0]);
    assert_eq!(plan.lengths, vec![7, 3]);
    assert_eq!(plan.image_spans, vec![vec![ImageSpan { start: 2, len: 3 }], vec![]]);

    let text = Tensor::<B, 3>::random([2, 5, 4], Distribution::Normal(0.0, 1.0), &device);
    let images = Tensor::<B, 3>::random([2, 3, 4], Distribution::Normal(0.0, 1.0), &device);
    let out = splice_embeddings(&plan, text.clone(), images.clone()).unwrap();
    assert_eq!(out.dims(), [2, 7, 4]);
    let (t0, t1, i0) = (rows(&text, 0), rows(&text, 1), rows(&images, 0));
    let want0 = vec![t0[0].clone(), t0[1].clone(), i0[0].clone(), i0[1].clone(), i0[2].clone(), t0[3].clone(), t0[4].clone()];
    assert_eq!(rows(&out, 0), want0);
    let zero = vec![0.0; 4];
    let want1 = vec![t1[0].clone(), t1[1].clone(), t1[2].clone(), zero.clone(), zero.clone(), zero.clone(), zero];
    assert_eq!(rows(&out, 1), want1);
}

#[test]
fn splice_keeps_a_bf16_llm_dtype_including_the_padding_rows() {
    let _rng = crate::backend_rng();
    // A bf16 LLM's embeddings (train bench step's 7B recipes): the zero rows that pad the shorter
    // sample must be bf16 too (an f32 padding row made `cat` panic on flex).
    let device = Default::default();
    let (ids0, lab0, ids1, lab1) = two_samples();
    let samples = [SpliceInput { input_ids: &ids0, labels: &lab0, images: &[0] }, SpliceInput { input_ids: &ids1, labels: &lab1, images: &[] }];
    let plan = SplicePlan::new(&samples, 3, 2, 100, 0).unwrap();
    let text = Tensor::<B, 3>::random([2, 5, 4], Distribution::Normal(0.0, 1.0), &device).cast(DType::BF16);
    let images = Tensor::<B, 3>::random([2, 3, 4], Distribution::Normal(0.0, 1.0), &device).cast(DType::BF16);
    let out = splice_embeddings(&plan, text.clone(), images).unwrap();
    assert_eq!(out.dtype(), DType::BF16);
    let out = out.cast(DType::F32);
    let t1 = rows(&text.cast(DType::F32), 1);
    let zero = vec![0.0; 4];
    assert_eq!(rows(&out, 1), vec![t1[0].clone(), t1[1].clone(), t1[2].clone(), zero.clone(), zero.clone(), zero.clone(), zero]);
}

#[test]
fn truncation_happens_after_splicing() {
    let (ids0, lab0, ids1, lab1) = two_samples();
    let samples = [
        SpliceInput { input_ids: &ids0, labels: &lab0, images: &[0] },
        SpliceInput { input_ids: &ids1, labels: &lab1, images: &[] },
    ];
    let plan = SplicePlan::new(&samples, 3, 2, 4, 0).unwrap();
    assert_eq!(plan.len, 4);
    assert_eq!(plan.lengths, vec![4, 3]);
    assert_eq!(plan.image_spans[0], vec![ImageSpan { start: 2, len: 2 }]);
    assert!(plan.labels[..4].iter().all(|&l| l == IGN), "the supervised tail was cut off");
}

#[test]
fn gradients_reach_only_the_spliced_image_features() {
    let device = Default::default();
    let (ids0, lab0, ids1, lab1) = two_samples();
    let samples = [
        SpliceInput { input_ids: &ids0, labels: &lab0, images: &[0] },
        SpliceInput { input_ids: &ids1, labels: &lab1, images: &[] },
    ];
    let plan = SplicePlan::new(&samples, 3, 2, 100, 0).unwrap();
    let text = Tensor::<AD, 3>::zeros([2, 5, 4], &device);
    let images = Tensor::<AD, 3>::ones([2, 3, 4], &device).require_grad();
    let out = splice_embeddings(&plan, text, images.clone()).unwrap();
    let grads = out.sum().backward();
    let g: Vec<f32> = images.grad(&grads).unwrap().into_data().to_vec().unwrap();
    assert!(g[..12].iter().all(|&x| x == 1.0), "image 0 is spliced once: {g:?}");
    assert!(g[12..].iter().all(|&x| x == 0.0), "the text-only sample's zero image is not spliced: {g:?}");
}

#[test]
fn invariants_are_errors_naming_the_sample() {
    let ids = [1, IMG, 3, IMG];
    let labels = [IGN; 4];
    let err = SplicePlan::new(&[SpliceInput { input_ids: &ids, labels: &labels, images: &[0] }], 2, 2, 10, 0).unwrap_err();
    assert!(matches!(err, ModelError::ImageCount { sample: 0, placeholders: 2, images: 1 }), "{err}");
    let err = SplicePlan::new(&[SpliceInput { input_ids: &ids, labels: &labels, images: &[0, 5] }], 2, 2, 10, 0).unwrap_err();
    assert!(err.to_string().contains("sample 0") && err.to_string().contains("5"), "{err}");
    let err = SplicePlan::new(&[SpliceInput { input_ids: &ids, labels: &labels[..3], images: &[0, 1] }], 2, 2, 10, 0).unwrap_err();
    assert!(matches!(err, ModelError::LabelLength { sample: 0, ids: 4, labels: 3 }), "{err}");
}

#[test]
fn loss_is_shifted_masked_cross_entropy() {
    let device = Default::default();
    // batch 1, len 3, vocab 2: logits at t predict the label at t + 1.
    let logits = Tensor::<B, 3>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0, 0.0, 0.5, 0.5], [1, 3, 2]), &device);
    let labels = [IGN, 1, 0];
    let mask = [false, true, true];
    let parts = causal_lm_loss(logits.clone(), &labels, &mask).unwrap();
    assert_eq!(parts.count, 2);
    let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
    let want = (lse(0.0, 1.0) - 1.0) + (lse(2.0, 0.0) - 2.0);
    let got = parts.sum.into_scalar() as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");

    // Masking the last label removes its term; nothing supervised gives a zero mean.
    let parts = causal_lm_loss(logits.clone(), &labels, &[false, true, false]).unwrap();
    assert_eq!(parts.count, 1);
    assert!((parts.sum.into_scalar() as f64 - (lse(0.0, 1.0) - 1.0)).abs() < 1e-5);
    let parts = causal_lm_loss(logits, &labels, &[false; 3]).unwrap();
    assert_eq!(parts.mean().into_scalar(), 0.0);
}

#[test]
fn loss_from_hidden_equals_the_loss_of_every_logit_with_the_same_gradient() {
    let _rng = crate::backend_rng();
    let device = Default::default();
    let (batch, len, width, vocab) = (3, 7, 5, 11);
    let hidden = Tensor::<AD, 3>::random([batch, len, width], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let head = Tensor::<AD, 2>::random([width, vocab], Distribution::Normal(0.0, 1.0), &device).require_grad();
    // Labels: a mix of supervised ids, ignored positions, ids outside the vocabulary and a
    // sample with nothing supervised.
    let mut labels = Vec::new();
    let mut mask = Vec::new();
    for b in 0..batch {
        for t in 0..len {
            let label = match (b, t % 4) {
                (2, _) => IGN,
                (_, 0) => IGN,
                (1, 3) => vocab as i64 + 2,
                _ => ((b * 5 + t * 3) % vocab) as i64,
            };
            labels.push(label);
            mask.push(label != IGN);
        }
    }
    let full = causal_lm_loss(hidden.clone().reshape([batch * len, width]).matmul(head.clone()).reshape([batch, len, vocab]), &labels, &mask).unwrap();
    let rows = causal_lm_loss_from_hidden(hidden.clone(), vocab, |r| r.matmul(head.clone()), &labels, &mask).unwrap();
    assert_eq!(full.count, rows.count);
    assert!(rows.count > 4, "{}", rows.count);
    let (f, r): (f32, f32) = (full.sum.clone().into_scalar(), rows.sum.clone().into_scalar());
    assert!((f - r).abs() < 1e-5 * f.abs().max(1.0), "{f} vs {r}");
    let (gf, gr) = (full.sum.backward(), rows.sum.backward());
    let grad = |g: &<AD as burn::tensor::backend::AutodiffBackend>::Gradients, x: &Tensor<AD, 3>| -> Vec<f32> {
        x.grad(g).unwrap().into_data().to_vec().unwrap()
    };
    let (a, b) = (grad(&gf, &hidden), grad(&gr, &hidden));
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5), "hidden gradients differ");
    assert!(a.iter().any(|x| x.abs() > 1e-3), "the gradient is empty");
    let (a, b): (Vec<f32>, Vec<f32>) = (
        head.grad(&gf).unwrap().into_data().to_vec().unwrap(),
        head.grad(&gr).unwrap().into_data().to_vec().unwrap(),
    );
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5), "head gradients differ");

    // Nothing supervised: a zero sum, still connected to the graph.
    let none = causal_lm_loss_from_hidden(hidden, vocab, |r| r.matmul(head), &labels, &[false; 21]).unwrap();
    assert_eq!(none.count, 0);
    assert_eq!(none.mean().into_scalar(), 0.0);
}

#[test]
fn loss_from_hidden_refuses_mismatched_labels_and_a_head_of_another_vocabulary() {
    let device = Default::default();
    let hidden = Tensor::<B, 3>::zeros([1, 3, 2], &device);
    let head = Tensor::<B, 2>::zeros([2, 4], &device);
    let err = causal_lm_loss_from_hidden(hidden.clone(), 4, |r| r.matmul(head.clone()), &[1, 2], &[true, true]).unwrap_err();
    assert!(matches!(err, ModelError::Shape { what: "labels", .. }), "{err}");
    let err = causal_lm_loss_from_hidden(hidden, 5, |r| r.matmul(head), &[1, 2, 3], &[true; 3]).unwrap_err();
    assert!(matches!(err, ModelError::Shape { what: "head output", .. }), "{err}");
}
