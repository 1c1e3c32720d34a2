//! A run's model rebuilt for evaluation is the model that trained: the towers a spec draws are the
//! same on an autodiff backend and on its inner backend, and the step checkpoint's weights come
//! back as they were written.

use anchorage_model::run_dir::{load_run, ModelCard};
use anchorage_model::spec::{BuiltinModel, ConnectorSection, Dtype, FeatureSelect, LlmSection, LlmTraining, ModelSource, VisionSection};
use anchorage_model::{CheckpointWeights, LlavaSpec};
use anchorage_data::{Aspect, Template};
use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};

type AD = Autodiff<Flex>;

fn spec() -> LlavaSpec {
    let tiny = ModelSource { builtin: Some(BuiltinModel::Tiny), ..Default::default() };
    let text = "kind = \"anchor_former\"\nanchors = 9\ndepth = 1\nheads = 2\ndim_head = 16\nff_mult = 2";
    let connector: ConnectorSection = toml::from_str(text).unwrap();
    LlavaSpec {
        vision: VisionSection { model: tiny.clone(), select_layer: -2, feature_select: FeatureSelect::ClsPatch, dtype: Dtype::F32, image_size: None, grid_pinpoints: None },
        llm: LlmSection { model: tiny, tokenizer: None, training: LlmTraining::Full, lora: None, dtype: Dtype::F32, gradient_checkpointing: false, recompute_attention: true },
        connector,
        compression: Default::default(),
        seed: 11,
    }
}

fn logits<B: burn::tensor::backend::Backend>(llm: &anchorage_llm::Llm<B>) -> Vec<f32> {
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 5, 9, 3], [1, 4]), &Default::default());
    let out = llm.forward_embeds(anchorage_llm::LlmInput::plain(llm.embed(ids)), &mut anchorage_llm::NoHooks).unwrap();
    llm.logits(out.hidden).into_data().to_vec::<f32>().unwrap()
}

#[test]
fn towers_are_drawn_alike_for_training_and_evaluation_and_checkpoints_load_back() {
    let _rng = crate::backend_rng();
    let device = Default::default();
    let trained = spec().build::<AD, Flex>(&device, None).unwrap().model;
    let fresh = spec().build::<Flex, Flex>(&device, None).unwrap().model;
    let inference = trained.clone().into_inference();
    assert_eq!(logits(inference.llm()), logits(fresh.llm()), "the same seed draws the same LLM");

    // Change the trainable weights (as training would), write a step checkpoint and a card, load.
    let dir = tempfile::tempdir().unwrap();
    let step = dir.path().join("step-00000001");
    std::fs::create_dir_all(&step).unwrap();
    let mut changed = trained;
    changed.trainable.llm = changed.trainable.llm.clone().map(&mut Scale);
    std::fs::write(step.join("trainable.bin"), CheckpointWeights::to_bytes(&changed.trainable, changed.training).unwrap()).unwrap();
    let card = ModelCard { template: Template::Plain, aspect: Aspect::Square, max_length: 64, model: spec() };
    std::fs::write(dir.path().join(ModelCard::FILE), card.to_toml()).unwrap();
    assert_eq!(ModelCard::read(dir.path()).unwrap(), card, "the card round-trips through TOML");
    let loaded = load_run::<Flex>(dir.path(), &device).unwrap();
    assert_eq!(loaded.checkpoint, step);
    assert_eq!(logits(loaded.built.model.llm()), logits(changed.into_inference().llm()));
    assert_ne!(logits(loaded.built.model.llm()), logits(fresh.llm()));

    // Not a run folder: a clear error naming the folder.
    let e = load_run::<Flex>(&dir.path().join("nope"), &device).err().unwrap().to_string();
    assert!(e.contains("nope") && e.contains("model.toml"), "{e}");
}

/// Doubles every float parameter.
struct Scale;
impl<B: burn::tensor::backend::Backend> burn::module::ModuleMapper<B> for Scale {
    fn map_float<const D: usize>(&mut self, p: burn::module::Param<Tensor<B, D>>) -> burn::module::Param<Tensor<B, D>> {
        p.map(|t| t * 2.0)
    }
}
