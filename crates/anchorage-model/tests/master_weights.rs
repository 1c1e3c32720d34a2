//! A fully trained bf16 LLM is stored in f32 (the master copy AdamW steps, as LLaVA's DeepSpeed
//! keeps one) and cast to bf16 for each training forward. Stepped in bf16 itself, an update below
//! half a weight's bf16 spacing is rounded away (at LLaVA's stage-2 lr of 2e-5, 3 steps changed 10%
//! of the demo LLM's decoder weights); on the f32 master every decoder weight moves.

use anchorage_data::Sample;
use anchorage_model::spec::{BuiltinModel, ConnectorSection, Dtype, FeatureSelect, LlmSection, LlmTraining, ModelSource, VisionSection};
use anchorage_model::LlavaSpec;
use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};

type AD = Autodiff<Flex>;

fn spec(dtype: Dtype, training: LlmTraining) -> LlavaSpec {
    let tiny = ModelSource { builtin: Some(BuiltinModel::Tiny), ..Default::default() };
    let connector: ConnectorSection = toml::from_str("kind = \"mlp\"\ndepth = 2").unwrap();
    LlavaSpec {
        vision: VisionSection { model: tiny.clone(), select_layer: -2, feature_select: FeatureSelect::Patch, dtype: Dtype::F32, image_size: None, grid_pinpoints: None },
        llm: LlmSection { model: tiny, tokenizer: None, training, lora: None, dtype, gradient_checkpointing: false, recompute_attention: true },
        connector,
        compression: Default::default(),
        seed: 5,
    }
}

/// Every float parameter of a module: (dtype, values as f32).
fn params<B: Backend, M: Module<B>>(module: &M) -> Vec<(DType, Vec<f32>)> {
    struct Collect(Vec<(DType, Vec<f32>)>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            self.0.push((value.dtype(), value.cast(FloatDType::F32).into_data().to_vec::<f32>().unwrap()));
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

#[test]
fn a_fully_trained_bf16_llm_steps_an_f32_master_copy() {
    let _rng = crate::backend_rng();
    let device = Default::default();
    let model = spec(Dtype::Bf16, LlmTraining::Full).build::<AD, Flex>(&device, None).unwrap().model;
    assert_eq!(model.llm_compute, Some(FloatDType::BF16));
    let before = params(&model.trainable.llm.model.layers);
    assert!(before.iter().all(|(dtype, _)| *dtype == DType::F32), "the master copy is f32");
    // Its bf16 compute copy holds the values the master rounds to.
    let view = model.with_llm_cast(FloatDType::BF16);
    assert!(params(&view.trainable.llm).iter().all(|(dtype, _)| *dtype == DType::BF16));

    // A text-only sample, every token supervised.
    let ids: Vec<i64> = (1..40).collect();
    let sample = Sample { id: "s".into(), input_ids: ids.clone(), labels: ids, pixels: None, anyres: None, mismatch: false };
    let out = model.forward_loss(&[sample], 64, 0).unwrap();
    let grads = GradientsParams::from_grads(out.loss.mean().backward(), &model.trainable);
    let mut optim = AdamWConfig::new().init::<AD, anchorage_model::Trainable<AD>>();
    let stepped = optim.step(2e-5, model.trainable, grads);

    let after = params(&stepped.llm.model.layers);
    assert!(after.iter().all(|(dtype, _)| *dtype == DType::F32), "the master copy stays f32");
    let (mut changed, mut total) = (0usize, 0usize);
    for ((_, a), (_, b)) in before.iter().zip(&after) {
        changed += a.iter().zip(b).filter(|(x, y)| x != y).count();
        total += a.len();
    }
    // Every decoder weight gets a gradient from a fully supervised sequence, and AdamW's first step
    // moves each by about the learning rate: kept in f32, all of them move.
    assert!(changed as f64 >= 0.99 * total as f64, "{changed} of {total} decoder weights moved");
}

/// The same spec in f32, or with a frozen bf16 LLM, keeps the LLM as stored (no master copy).
#[test]
fn only_a_fully_trained_bf16_llm_gets_a_master_copy() {
    let _rng = crate::backend_rng();
    let device = Default::default();
    for (dtype, training, stored) in [(Dtype::F32, LlmTraining::Full, DType::F32), (Dtype::Bf16, LlmTraining::Frozen, DType::BF16)] {
        let model = spec(dtype, training).build::<AD, Flex>(&device, None).unwrap().model;
        assert_eq!(model.llm_compute, None);
        assert!(params(&model.trainable.llm).iter().all(|(d, _)| *d == stored));
    }
    // For evaluation the master copy is cast once to bf16.
    let model = spec(Dtype::Bf16, LlmTraining::Full).build::<Flex, Flex>(&device, None).unwrap().model;
    let model = model.into_compute_dtype();
    assert_eq!(model.llm_compute, None);
    assert!(params(&model.trainable.llm).iter().all(|(d, _)| *d == DType::BF16));
}
