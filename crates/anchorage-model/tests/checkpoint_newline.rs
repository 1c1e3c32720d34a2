//! Step checkpoints and AnyRes's `image_newline`: a model without it writes the record it always
//! wrote (older checkpoints keep loading), a model with it writes it after that record and reads
//! it back, and an AnyRes model refuses a checkpoint that has none.

use anchorage_model::spec::{BuiltinModel, ConnectorSection, Dtype, FeatureSelect, LlmSection, LlmTraining, ModelSource, VisionSection};
use anchorage_model::{CheckpointWeights, LlavaSpec, Trainable};
use burn::backend::Flex;
use burn::module::Param;
use burn::tensor::Tensor;

fn spec() -> LlavaSpec {
    let tiny = ModelSource { builtin: Some(BuiltinModel::Tiny), ..Default::default() };
    let connector: ConnectorSection = toml::from_str("kind = \"mlp\"\nprojector_type = \"mlp2x_gelu\"").unwrap();
    LlavaSpec {
        vision: VisionSection { model: tiny.clone(), select_layer: -2, feature_select: FeatureSelect::Patch, dtype: Dtype::F32, image_size: None, grid_pinpoints: None },
        llm: LlmSection { model: tiny, tokenizer: None, training: LlmTraining::Frozen, lora: None, dtype: Dtype::F32, gradient_checkpointing: false, recompute_attention: true },
        connector,
        compression: Default::default(),
        seed: 3,
    }
}

fn newline(t: &Trainable<Flex>) -> Vec<f32> {
    t.image_newline.as_ref().unwrap().val().into_data().to_vec::<f32>().unwrap()
}

#[test]
fn image_newline_is_written_read_back_and_required_only_by_anyres_models() {
    let _rng = crate::backend_rng();
    let device = Default::default();
    let plain = spec().build::<Flex, Flex>(&device, None).unwrap().model;
    let anyres = plain.clone().with_image_newline(99);
    let d = plain.llm().config.hidden_size;
    // LLaVA-NeXT's draw: randn(d) / sqrt(d), so the mean square is about 1/d.
    let drawn = newline(&anyres.trainable);
    assert_eq!(drawn.len(), d);
    let mean_square = drawn.iter().map(|v| v * v).sum::<f32>() / d as f32;
    assert!(mean_square > 0.2 / d as f32 && mean_square < 5.0 / d as f32, "{mean_square}");

    let old = CheckpointWeights::to_bytes(&plain.trainable, plain.training).unwrap();
    // The record of a model without image_newline is what it was before AnyRes: the connector alone.
    let mut trained = anyres.trainable.clone();
    trained.image_newline = Some(Param::from_tensor(Tensor::<Flex, 1>::ones([d], &device)));
    let new = CheckpointWeights::to_bytes(&trained, anyres.training).unwrap();
    // The same record as without AnyRes (the connector is the same), then image_newline's.
    assert!(new.starts_with(&old) && new.len() >= old.len() + 4 * d, "{} vs {}", new.len(), old.len());
    assert!(new.ends_with(anchorage_model::NEWLINE_TAG));

    let path = std::path::Path::new("step-00000001/trainable.bin");
    let back = CheckpointWeights::load_bytes(anyres.trainable.clone(), anyres.training, new, path, &device).unwrap();
    assert_eq!(newline(&back), vec![1.0; d]);
    assert!(CheckpointWeights::load_bytes(plain.trainable.clone(), plain.training, old.clone(), path, &device).unwrap().image_newline.is_none());
    let e = CheckpointWeights::load_bytes(anyres.trainable.clone(), anyres.training, old, path, &device).unwrap_err();
    assert!(e.to_string().contains("holds no image_newline"), "{e}");
    let new = CheckpointWeights::to_bytes(&trained, anyres.training).unwrap();
    let e = CheckpointWeights::load_bytes(plain.trainable.clone(), plain.training, new.clone(), path, &device).unwrap_err();
    assert!(e.to_string().contains("AnyRes run"), "{e}");
    // A tag whose length points before the file's start is an error, not a panic.
    let mut cut = new[new.len() - 16..].to_vec();
    cut[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(CheckpointWeights::load_bytes(anyres.trainable.clone(), anyres.training, cut, path, &device).is_err());
}
