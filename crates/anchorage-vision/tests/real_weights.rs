//! Checks on the real LLaVA-1.5 tower. Needs a local copy of openai/clip-vit-large-patch14-336
//! (config.json + model.safetensors); point ANCHORAGE_CLIP_L336 at the folder and run
//! `cargo test -p anchorage-vision --test integration real_weights:: -- --ignored`.

use std::path::PathBuf;

use anchorage_vision::{load_clip_vision, ClipVisionConfig, FeatureSelect, VisionRequest};
use burn::backend::Flex;
use burn::tensor::Tensor;

#[test]
#[ignore = "needs local weights"]
fn clip_vit_l14_336_loads_and_gives_llava_shapes() {
    let dir = PathBuf::from(
        std::env::var("ANCHORAGE_CLIP_L336").expect("set ANCHORAGE_CLIP_L336 to the model folder"),
    );
    let device = Default::default();
    let (config, model) = load_clip_vision::<Flex>(&dir, &device).unwrap();
    assert_eq!(config, ClipVisionConfig::vit_l14_336());
    let pixels: Tensor<Flex, 4> = Tensor::zeros([1, 3, 336, 336], &device);
    let out = model
        .forward(
            pixels.clone(),
            &VisionRequest::select(-2).with_cls_attention(22),
        )
        .unwrap();
    assert_eq!(out.layers_run, 23, "LLaVA's layer -2 needs 23 of 24 layers");
    assert_eq!(out.selected.dims(), [1, 577, 1024]);
    assert_eq!(out.cls_attention[0].1.dims(), [1, 16, 577]);
    let features = model.features(pixels, -2, FeatureSelect::Patch).unwrap();
    assert_eq!(features.dims(), [1, 576, 1024]);
}
