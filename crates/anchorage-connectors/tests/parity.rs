//! Parity with the PyTorch reference connectors of `tests/fixtures/connectors/generate.py`
//! (random weights under upstream names): outputs within 1e-4, anchors equal.

use std::path::{Path, PathBuf};

use anchorage_connectors::perceiver::PerceiverConfig;
use anchorage_connectors::{
    format, AnchorFormerConfig, CAbstractorConfig, ConnectorConfig, ConnectorError, MlpConfig, ResamplerConfig, TensorFile,
};
use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};

type B = Flex;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/connectors")
}

fn tensor3(file: &TensorFile, key: &str) -> Tensor<B, 3> {
    Tensor::from_data(file.get(key).unwrap().clone(), &Default::default())
}

fn max_abs_diff(a: &TensorData, b: &TensorData) -> f32 {
    assert_eq!(a.shape, b.shape);
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn perceiver(kv_latents: bool, num_latents: usize) -> PerceiverConfig {
    PerceiverConfig::new(16)
        .with_depth(2)
        .with_heads(2)
        .with_dim_head(8)
        .with_num_latents(num_latents)
        .with_ff_mult(2)
        .with_kv_includes_latents(kv_latents)
}

fn cases() -> Vec<(&'static str, ConnectorConfig)> {
    vec![
        ("mlp2x_gelu", ConnectorConfig::Mlp(MlpConfig::new(16, 24).with_depth(2))),
        ("mlp3x_gelu", ConnectorConfig::Mlp(MlpConfig::new(16, 24).with_depth(3))),
        ("linear", ConnectorConfig::Mlp(MlpConfig::new(16, 24).with_depth(1))),
        (
            "c_abstractor",
            ConnectorConfig::CAbstractor(
                CAbstractorConfig::new(16, 24, 36).with_hidden_size(12).with_depth(2).with_mlp_depth(2).with_num_queries(9),
            ),
        ),
        ("resampler_acformer", ConnectorConfig::Resampler(ResamplerConfig::new(perceiver(false, 5), 24))),
        ("resampler_open_flamingo", ConnectorConfig::Resampler(ResamplerConfig::new(perceiver(true, 5), 24))),
        ("anchor_former", ConnectorConfig::AnchorFormer(AnchorFormerConfig::new(perceiver(false, 144), 24).with_anchors(9))),
        ("mlp1x_gelu", ConnectorConfig::Mlp(MlpConfig::new(32, 48).with_depth(1).with_sequential(true))),
        ("projector_linear", ConnectorConfig::Mlp(MlpConfig::new(32, 48).with_depth(1))),
        (
            "resampler_open_flamingo_bare",
            ConnectorConfig::Resampler(ResamplerConfig::new(perceiver(true, 5), 16).with_projector_depth(0)),
        ),
    ]
}

/// `llava` export of the upstream fixtures: exactly the upstream state dict's keys and shapes.
#[test]
fn llava_export_keys_are_the_upstream_state_dict() {
    let dev = Default::default();
    for (name, config) in cases() {
        let path = fixtures().join(format!("{name}.weights.safetensors"));
        let file = TensorFile::read(&path).unwrap();
        let connector = format::import::<B>(&path, &config, &dev).unwrap();
        let naming = format::ExportFormat::Llava.naming(&config).unwrap();
        let mut got: Vec<(String, Vec<usize>)> =
            connector.export(naming).unwrap().into_iter().map(|(k, t)| (k, t.shape.to_vec())).collect();
        got.sort();
        let want: Vec<(String, Vec<usize>)> = file.tensors.iter().map(|(k, t)| (k.clone(), t.shape.to_vec())).collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn llava_one_layer_projectors_keep_their_own_keys() {
    let dev = Default::default();
    let keys = |config: &ConnectorConfig| {
        let c = config.init::<B>(&dev).unwrap();
        c.export(format::ExportFormat::Llava.naming(config).unwrap()).unwrap().into_iter().map(|(k, _)| k).collect::<Vec<_>>()
    };
    let seq = ConnectorConfig::Mlp(MlpConfig::new(32, 48).with_depth(1).with_sequential(true));
    assert_eq!(keys(&seq), ["model.mm_projector.0.weight", "model.mm_projector.0.bias"]);
    let bare = ConnectorConfig::Mlp(MlpConfig::new(32, 48).with_depth(1));
    assert_eq!(keys(&bare), ["model.mm_projector.weight", "model.mm_projector.bias"]);
    // Either layout refuses the other's file, saying which LLaVA projector the file holds.
    let err = format::import::<B>(&fixtures().join("mlp1x_gelu.weights.safetensors"), &bare, &dev).unwrap_err().to_string();
    assert!(err.contains("[48, 32]") && err.contains("mlp1x_gelu"), "{err}");
    let err = format::import::<B>(&fixtures().join("projector_linear.weights.safetensors"), &seq, &dev).unwrap_err().to_string();
    assert!(err.contains("[48, 32]") && err.contains("LLaVA's `linear`"), "{err}");
}

#[test]
fn probing_the_output_width_reads_it_even_when_the_last_layer_is_missing() {
    let dev = Default::default();
    let file = TensorFile::read(&fixtures().join("mlp1x_gelu.weights.safetensors")).unwrap();
    // Provisional width = input width, as `train inspect connector` starts.
    let bare = ConnectorConfig::Mlp(MlpConfig::new(32, 32).with_depth(1));
    assert_eq!(bare.probe_d_output::<B>(&file, &dev).unwrap(), 48);
    let mut no_weight = file.clone();
    no_weight.tensors.remove("model.mm_projector.0.weight");
    let seq = ConnectorConfig::Mlp(MlpConfig::new(32, 32).with_depth(1).with_sequential(true));
    let d = seq.probe_d_output::<B>(&no_weight, &dev).unwrap();
    assert_eq!(d, 48, "from the bias");
    let config = seq.with_d_output(d);
    let err = config.init::<B>(&dev).unwrap().load(&no_weight, &config.namings(), &dev).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConnectorError::MissingKey { .. }), "{msg}");
    assert!(msg.contains("model.mm_projector.0.weight") && msg.contains("[48, 32]") && !msg.contains("[32, 32]"), "{msg}");
}

#[test]
fn open_flamingo_resampler_without_projector_loads_perceiver_keys_and_refuses_other_widths() {
    let dev = Default::default();
    let file = TensorFile::read(&fixtures().join("resampler_open_flamingo_bare.weights.safetensors")).unwrap();
    let config = ConnectorConfig::Resampler(ResamplerConfig::new(perceiver(true, 5), 16).with_projector_depth(0));
    assert_eq!(config.dims(), (16, 16));
    let c = config.init::<B>(&dev).unwrap();
    assert_eq!(c.dims(), (16, 16));
    assert_eq!(c.output_tokens(37), 5);
    // Extra Flamingo parts outside `perceiver.` are not the connector's business.
    let mut whole = file.clone();
    whole.tensors.insert("lang_encoder.lm_head.weight".into(), TensorData::new(vec![0f32; 4], [2, 2]));
    c.load(&whole, &config.namings(), &dev).unwrap();
    let wide = ConnectorConfig::Resampler(ResamplerConfig::new(perceiver(true, 5), 24).with_projector_depth(0));
    let err = wide.init::<B>(&dev).unwrap_err().to_string();
    assert!(err.contains("projector_depth") && err.contains("16") && err.contains("24"), "{err}");
}

#[test]
fn every_connector_matches_its_pytorch_reference() {
    let dev = Default::default();
    for (name, config) in cases() {
        let dir = fixtures();
        let connector = format::import::<B>(&dir.join(format!("{name}.weights.safetensors")), &config, &dev)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs = TensorFile::read(&dir.join(format!("{name}.inputs.safetensors"))).unwrap();
        let want = TensorFile::read(&dir.join(format!("{name}.output.safetensors"))).unwrap();
        let att = inputs.tensors.contains_key("cls_attention").then(|| tensor3(&inputs, "cls_attention"));
        let got = connector.forward(tensor3(&inputs, "features"), att).unwrap();
        let diff = max_abs_diff(&got.into_data(), want.get("output").unwrap());
        assert!(diff < 1e-4, "{name}: max |diff| {diff}");
    }
}

#[test]
fn llava_mm_projector_bin_pickle_imports() {
    let dev = Default::default();
    let dir = fixtures();
    let config = ConnectorConfig::Mlp(MlpConfig::new(16, 24));
    let connector = format::import::<B>(&dir.join("mm_projector.bin"), &config, &dev).unwrap();
    let inputs = TensorFile::read(&dir.join("mm_projector_bin.inputs.safetensors")).unwrap();
    let want = TensorFile::read(&dir.join("mm_projector_bin.output.safetensors")).unwrap();
    let got = connector.forward(tensor3(&inputs, "features"), None).unwrap();
    let diff = max_abs_diff(&got.into_data(), want.get("output").unwrap());
    assert!(diff < 1e-4, "max |diff| {diff}");
}

#[test]
fn anchors_equal_acformer_host_loop_at_clip_l_sizes() {
    let dir = fixtures();
    let att = TensorFile::read(&dir.join("anchors_attention.safetensors")).unwrap();
    for n in [145usize, 257] {
        let want = TensorFile::read(&dir.join(format!("anchors_{n}.safetensors"))).unwrap();
        let got = anchorage_connectors::kernels::select_anchors(tensor3(&att, "cls_attention"), n - 1).unwrap();
        assert_eq!(got.dims(), [2, n]);
        assert_eq!(
            got.into_data().convert::<i64>().to_vec::<i64>().unwrap(),
            want.get("indices").unwrap().to_vec::<i64>().unwrap(),
            "{n} anchors"
        );
    }
}

#[test]
fn missing_key_and_wrong_shape_are_refused_with_key_and_shapes() {
    let dev = Default::default();
    let dir = fixtures();
    let file = TensorFile::read(&dir.join("mlp2x_gelu.weights.safetensors")).unwrap();
    // Missing key.
    let mut missing = file.clone();
    missing.tensors.remove("model.mm_projector.2.bias");
    let config = ConnectorConfig::Mlp(MlpConfig::new(16, 24));
    let err = config.init::<B>(&dev).unwrap().load(&missing, &config.namings(), &dev).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConnectorError::MissingKey { .. }), "{msg}");
    assert!(msg.contains("model.mm_projector.2.bias") && msg.contains("[24]"), "{msg}");
    // Wrong shape: a connector built for a 32-wide LLM.
    let config = ConnectorConfig::Mlp(MlpConfig::new(16, 32));
    let err = config.init::<B>(&dev).unwrap().load(&file, &config.namings(), &dev).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConnectorError::WrongShape { .. }), "{msg}");
    assert!(msg.contains("model.mm_projector.0.weight") && msg.contains("[24, 16]") && msg.contains("[32, 16]"), "{msg}");
    // Unexpected key under the projector's prefix.
    let mut extra = file.clone();
    extra.tensors.insert("model.mm_projector.4.weight".into(), TensorData::new(vec![0f32; 4], [2, 2]));
    let config = ConnectorConfig::Mlp(MlpConfig::new(16, 24));
    let err = config.init::<B>(&dev).unwrap().load(&extra, &config.namings(), &dev).unwrap_err();
    assert!(err.to_string().contains("model.mm_projector.4.weight"), "{err}");
}

fn anchor_former_config() -> ConnectorConfig {
    cases().into_iter().find(|(n, _)| *n == "anchor_former").unwrap().1
}

#[test]
fn anchor_former_takes_any_number_of_unused_latents_or_none() {
    let dev = Default::default();
    let dir = fixtures();
    let file = TensorFile::read(&dir.join("anchor_former.weights.safetensors")).unwrap();
    let inputs = TensorFile::read(&dir.join("anchor_former.inputs.safetensors")).unwrap();
    let want = TensorFile::read(&dir.join("anchor_former.output.safetensors")).unwrap();
    let config = anchor_former_config();
    let mut few = file.clone();
    few.tensors.insert("model.mm_projector.0.latents".into(), TensorData::new(vec![0.5f32; 3 * 16], [3, 16]));
    let mut none = file.clone();
    none.tensors.remove("model.mm_projector.0.latents");
    for f in [few, none] {
        let c = config.init::<B>(&dev).unwrap().load(&f, &config.namings(), &dev).unwrap();
        let got = c.forward(tensor3(&inputs, "features"), Some(tensor3(&inputs, "cls_attention"))).unwrap();
        assert!(max_abs_diff(&got.into_data(), want.get("output").unwrap()) < 1e-4);
    }
}

#[test]
fn c_abstractor_drops_a_leading_cls_token_like_acformers_variant() {
    let dev = Default::default();
    let dir = fixtures();
    let config = cases().into_iter().find(|(n, _)| *n == "c_abstractor").unwrap().1;
    let c = format::import::<B>(&dir.join("c_abstractor.weights.safetensors"), &config, &dev).unwrap();
    let inputs = TensorFile::read(&dir.join("c_abstractor.inputs.safetensors")).unwrap();
    let want = TensorFile::read(&dir.join("c_abstractor.output.safetensors")).unwrap();
    let x = tensor3(&inputs, "features");
    let with_cls = Tensor::cat(vec![Tensor::<B, 3>::ones([2, 1, 16], &dev), x], 1);
    let got = c.forward(with_cls, None).unwrap();
    assert!(max_abs_diff(&got.into_data(), want.get("output").unwrap()) < 1e-4);
}

/// Gradients of every parameter, in upstream layout under the file's names.
struct GradExporter<'a> {
    grads: &'a <burn::backend::Autodiff<Flex> as burn::tensor::backend::AutodiffBackend>::Gradients,
    naming: anchorage_connectors::weights::Naming,
    out: Vec<(String, Option<TensorData>)>,
}

impl anchorage_connectors::weights::WeightIo<burn::backend::Autodiff<Flex>> for GradExporter<'_> {
    fn tensor<const D: usize>(
        &mut self,
        key: &str,
        param: &mut burn::module::Param<Tensor<burn::backend::Autodiff<Flex>, D>>,
        transpose: bool,
    ) -> anchorage_connectors::Result<()> {
        let g = param.val().grad(self.grads).map(|g| if transpose { g.transpose() } else { g }.into_data());
        self.out.push((self.naming.key(key), g));
        Ok(())
    }
}

#[test]
fn gradients_match_pytorch_for_every_parameter() {
    type A = burn::backend::Autodiff<Flex>;
    let dev = Default::default();
    let dir = fixtures();
    for (name, config) in cases() {
        let want = TensorFile::read(&dir.join(format!("{name}.output.safetensors"))).unwrap();
        let Some(g_out) = want.tensors.get("grad_output") else { continue };
        let file = TensorFile::read(&dir.join(format!("{name}.weights.safetensors"))).unwrap();
        let mut c = config.init::<A>(&dev).unwrap();
        let naming = c.detect_naming(&file, &config.namings()).unwrap();
        let c = c.load_with(&file, naming.clone(), &dev).unwrap();
        let inputs = TensorFile::read(&dir.join(format!("{name}.inputs.safetensors"))).unwrap();
        let t = |k: &str| inputs.tensors.get(k).map(|d| Tensor::<A, 3>::from_data(d.clone(), &dev));
        let out = c.forward(t("features").unwrap(), t("cls_attention")).unwrap();
        let g = Tensor::<A, 3>::from_data(g_out.clone(), &dev);
        let grads = (out * g).sum().backward();
        let mut exporter = GradExporter { grads: &grads, naming, out: Vec::new() };
        let mut c = c;
        c.visit_weights(&mut exporter).unwrap();
        let mut compared = 0;
        for (key, got) in exporter.out {
            match (got, want.tensors.get(&format!("grad.{key}"))) {
                (Some(got), Some(w)) => {
                    let scale = w.to_vec::<f32>().unwrap().iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    let diff = max_abs_diff(&got, w);
                    assert!(diff <= 1e-4 * scale, "{name} {key}: max |diff| {diff} (scale {scale})");
                    compared += 1;
                }
                (None, None) => {} // AcFormer's unused latents: no gradient on either side
                (got, w) => panic!("{name} {key}: gradient present here {} / in PyTorch {}", got.is_some(), w.is_some()),
            }
        }
        assert!(compared > 0, "{name}");
    }
}

#[test]
fn exports_written_before_projector_types_still_read() {
    // Metadata `config` as earlier anchorage versions wrote it (no `sequential`): depth 1 is `linear`.
    let old: ConnectorConfig =
        serde_json::from_str(r#"{"kind":"mlp","d_input":16,"d_output":24,"depth":1,"activation":"gelu"}"#).unwrap();
    assert_eq!(old, ConnectorConfig::Mlp(MlpConfig::new(16, 24).with_depth(1)));
    let new = ConnectorConfig::Mlp(MlpConfig::new(32, 48).with_depth(1).with_sequential(true));
    let back: ConnectorConfig = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
    assert_eq!(back, new);
}
