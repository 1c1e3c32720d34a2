//! `train inspect connector`, `train inspect anchors` and `train export` as a user meets them, on
//! the PyTorch reference fixtures of `tests/fixtures/connectors/generate.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorage_connectors::format::{self, ConnectorMeta, ExportFormat};
use anchorage_connectors::perceiver::PerceiverConfig;
use anchorage_connectors::{AnchorFormerConfig, CAbstractorConfig, ConnectorConfig, MlpConfig, ResamplerConfig, TensorFile};
use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};

const FIX: &str = "tests/fixtures/connectors";

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train")).args(args).env("RUST_LOG", "warn").output().expect("run train")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn fix(name: &str) -> String {
    format!("{FIX}/{name}")
}

fn max_abs_diff(a: &TensorData, b: &TensorData) -> f32 {
    assert_eq!(a.shape, b.shape);
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn inspect_connector_matches_every_pytorch_reference() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "linear",
        "mlp2x_gelu",
        "mlp3x_gelu",
        "c_abstractor",
        "resampler_acformer",
        "resampler_open_flamingo",
        "anchor_former",
        "mlp1x_gelu",
        "projector_linear",
        "resampler_open_flamingo_bare",
    ] {
        let out = dir.path().join(format!("{name}.out.safetensors"));
        let o = train(&[
            "inspect",
            "connector",
            "--connector",
            &fix(&format!("{name}.toml")),
            "--weights",
            &fix(&format!("{name}.weights.safetensors")),
            "--inputs",
            &fix(&format!("{name}.inputs.safetensors")),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(text(&o).contains("parameters:"), "{}", text(&o));
        let got = TensorFile::read(&out).unwrap();
        let want = TensorFile::read(Path::new(&fix(&format!("{name}.output.safetensors")))).unwrap();
        let diff = max_abs_diff(got.get("output").unwrap(), want.get("output").unwrap());
        assert!(diff < 1e-4, "{name}: max |diff| {diff}");
    }
}

#[test]
fn inspect_connector_refuses_missing_key_and_wrong_shape_naming_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let src = TensorFile::read(Path::new(&fix("resampler_acformer.weights.safetensors"))).unwrap();
    let run = |tensors: Vec<(String, TensorData)>| {
        let w = dir.path().join("w.safetensors");
        TensorFile::write(&w, &tensors, &HashMap::new()).unwrap();
        let out = dir.path().join("o.safetensors");
        train(&[
            "inspect",
            "connector",
            "--connector",
            &fix("resampler_acformer.toml"),
            "--weights",
            w.to_str().unwrap(),
            "--inputs",
            &fix("resampler_acformer.inputs.safetensors"),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let key = "model.mm_projector.0.layers.1.0.to_kv.weight";
    let missing: Vec<_> = src.tensors.iter().filter(|(k, _)| *k != key).map(|(k, v)| (k.clone(), v.clone())).collect();
    let o = run(missing);
    assert!(!o.status.success());
    assert!(text(&o).contains(key) && text(&o).contains("missing") && text(&o).contains("[32, 16]"), "{}", text(&o));
    let wrong: Vec<_> = src
        .tensors
        .iter()
        .map(|(k, v)| if k == key { (k.clone(), TensorData::new(vec![0f32; 30 * 16], [30, 16])) } else { (k.clone(), v.clone()) })
        .collect();
    let o = run(wrong);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains(key) && t.contains("[30, 16]") && t.contains("[32, 16]"), "{t}");
}

/// A `linear` recipe given `mlp1x_gelu` weights (a `[48, 32]` layer at `mm_projector.0`): the
/// error names the true shape and the projector type the file holds.
#[test]
fn inspect_connector_names_the_true_shape_and_the_other_llava_projector_type() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("linear.toml");
    std::fs::write(&toml, "[connector]\nkind = \"mlp\"\nprojector_type = \"linear\"\n").unwrap();
    let out = dir.path().join("o.safetensors");
    let o = train(&[
        "inspect",
        "connector",
        "--connector",
        toml.to_str().unwrap(),
        "--weights",
        &fix("mlp1x_gelu.weights.safetensors"),
        "--inputs",
        &fix("mlp1x_gelu.inputs.safetensors"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("missing key") && t.contains("[48, 32]") && !t.contains("[32, 32]") && t.contains("mlp1x_gelu"), "{t}");
    // An unknown projector type is a recipe error naming the key.
    std::fs::write(&toml, "[connector]\nkind = \"mlp\"\nprojector_type = \"mlp2x_relu\"\n").unwrap();
    let o = train(&["inspect", "connector", "--connector", toml.to_str().unwrap(), "--weights", &fix("mlp1x_gelu.weights.safetensors"), "--inputs", &fix("mlp1x_gelu.inputs.safetensors"), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("mlp2x_relu"), "{}", text(&o));
}

#[test]
fn inspect_anchors_returns_the_reference_indices_and_draws_them() {
    let dir = tempfile::tempdir().unwrap();
    for n in [145usize, 257] {
        let out = dir.path().join(format!("a{n}.safetensors"));
        let png = dir.path().join(format!("a{n}.png"));
        let o = train(&[
            "inspect",
            "anchors",
            "--attention",
            &fix("anchors_attention.safetensors"),
            "--count",
            &(n - 1).to_string(),
            "--out",
            out.to_str().unwrap(),
            "--image",
            &fix("anchors_image.png"),
            "--png",
            png.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let got = TensorFile::read(&out).unwrap();
        let want = TensorFile::read(Path::new(&fix(&format!("anchors_{n}.safetensors")))).unwrap();
        let g = got.get("indices").unwrap();
        assert_eq!(g.shape.as_slice(), &[2, n]);
        assert_eq!(g.to_vec::<i64>().unwrap(), want.get("indices").unwrap().to_vec::<i64>().unwrap());
        let heads = got.get("heads").unwrap().to_vec::<i64>().unwrap();
        assert_eq!(heads[0], -1, "CLS is nobody's pick");
        assert!(heads.iter().all(|h| (-1..16).contains(h)));
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert_ne!(bytes, std::fs::read(fix("anchors_image.png")).unwrap(), "anchors were drawn");
    }
    let o = train(&["inspect", "anchors", "--attention", &fix("anchors_attention.safetensors"), "--count", "100", "--out", "/dev/null"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not a multiple of the 16"), "{}", text(&o));
}

fn perceiver(kv: bool, latents: usize) -> PerceiverConfig {
    PerceiverConfig::new(16).with_depth(2).with_heads(2).with_dim_head(8).with_num_latents(latents).with_ff_mult(2).with_kv_includes_latents(kv)
}

/// Fabricates a run folder as the trainer leaves it: connector.safetensors (anchorage format) and recipe.toml.
fn run_folder(dir: &Path, name: &str, config: &ConnectorConfig) -> PathBuf {
    let dev = Default::default();
    let c = format::import::<Flex>(Path::new(&fix(&format!("{name}.weights.safetensors"))), config, &dev).unwrap();
    let run = dir.join(name);
    let meta = ConnectorMeta { step: 2181, ..Default::default() };
    format::save(&c, config, &meta, ExportFormat::Anchorage, &run.join("connector.safetensors")).unwrap();
    std::fs::copy("recipes/pretrain/anchor_former_145.toml", run.join("recipe.toml")).unwrap();
    run
}

fn forward(file: &Path, name: &str) -> TensorData {
    let dev = Default::default();
    let (c, _, _) = format::load::<Flex>(file, &dev).unwrap();
    let inputs = TensorFile::read(Path::new(&fix(&format!("{name}.inputs.safetensors")))).unwrap();
    let t = |k: &str| inputs.tensors.get(k).map(|d| Tensor::<Flex, 3>::from_data(d.clone(), &dev));
    c.forward(t("features").unwrap(), t("cls_attention")).unwrap().into_data()
}

#[test]
fn export_writes_upstream_names_with_metadata_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    // (fixture, config, [(format, keys the export must hold)])
    type Case = (&'static str, ConnectorConfig, Vec<(&'static str, &'static [&'static str])>);
    let cases: Vec<Case> = vec![
        (
            "mlp2x_gelu",
            ConnectorConfig::Mlp(MlpConfig::new(16, 24)),
            vec![
                ("llava", &["model.mm_projector.0.weight", "model.mm_projector.2.bias"]),
                ("hf-llava", &["multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_2.bias"]),
                ("anchorage", &["connector.0.weight"]),
            ],
        ),
        (
            "anchor_former",
            ConnectorConfig::AnchorFormer(AnchorFormerConfig::new(perceiver(false, 144), 24).with_anchors(9)),
            vec![(
                "llava",
                &["model.mm_projector.0.latents", "model.mm_projector.0.layers.1.0.to_kv.weight", "model.mm_projector.0.layers.0.1.3.weight", "model.mm_projector.1.weight", "model.mm_projector.3.bias"],
            )],
        ),
        (
            "c_abstractor",
            ConnectorConfig::CAbstractor(CAbstractorConfig::new(16, 24, 36).with_hidden_size(12).with_depth(2).with_num_queries(9)),
            vec![("llava", &["abstractor.pos_emb", "abstractor.net.0.b1.downsample.conv.weight", "abstractor.net.2.b2.se.fc1.bias", "abstractor.readout.2.weight"])],
        ),
        (
            "mlp1x_gelu",
            ConnectorConfig::Mlp(MlpConfig::new(32, 48).with_depth(1).with_sequential(true)),
            vec![("llava", &["model.mm_projector.0.weight", "model.mm_projector.0.bias"]), ("anchorage", &["connector.0.weight"])],
        ),
        (
            "projector_linear",
            ConnectorConfig::Mlp(MlpConfig::new(32, 48).with_depth(1)),
            vec![("llava", &["model.mm_projector.weight", "model.mm_projector.bias"]), ("anchorage", &["connector.weight"])],
        ),
        (
            "resampler_open_flamingo_bare",
            ConnectorConfig::Resampler(ResamplerConfig::new(perceiver(true, 5), 16).with_projector_depth(0)),
            vec![(
                "llava",
                &["perceiver.latents", "perceiver.layers.1.0.to_kv.weight", "perceiver.layers.0.1.3.weight", "perceiver.norm.weight"],
            )],
        ),
        (
            "resampler_open_flamingo",
            ConnectorConfig::Resampler(ResamplerConfig::new(perceiver(true, 5), 24)),
            vec![("llava", &["model.mm_projector.0.latents", "model.mm_projector.0.norm.weight", "model.mm_projector.3.weight"])],
        ),
    ];
    for (name, config, formats) in cases {
        let run = run_folder(dir.path(), name, &config);
        let reference = TensorFile::read(Path::new(&fix(&format!("{name}.output.safetensors")))).unwrap();
        for (fmt, keys) in formats {
            let out = dir.path().join(format!("{name}.{fmt}.safetensors"));
            let o = train(&["export", run.to_str().unwrap(), "--format", fmt, "--out", out.to_str().unwrap()]);
            assert!(o.status.success(), "{name} {fmt}: {}", text(&o));
            let file = TensorFile::read(&out).unwrap();
            for k in keys {
                assert!(file.tensors.contains_key(*k), "{name} {fmt}: no {k} in {:?}", file.tensors.keys().collect::<Vec<_>>());
            }
            if fmt == "llava" {
                // Exactly the upstream module's state dict, as the fixture holds it.
                let upstream = TensorFile::read(Path::new(&fix(&format!("{name}.weights.safetensors")))).unwrap();
                assert_eq!(file.tensors.keys().collect::<Vec<_>>(), upstream.tensors.keys().collect::<Vec<_>>(), "{name}");
            }
            assert_eq!(file.metadata["format"], fmt);
            assert_eq!(file.metadata["kind"], config.kind());
            assert_eq!(file.metadata["step"], "2181");
            assert_eq!(file.metadata["select_layer"], "-2");
            assert_eq!(file.metadata["vision_id"], "openai/clip-vit-large-patch14-336");
            assert_eq!(file.metadata["recipe_hash"].len(), 16);
            // Round trip: the exported file loads back and computes the reference output.
            let diff = max_abs_diff(&forward(&out, name), reference.get("output").unwrap());
            assert!(diff < 1e-4, "{name} {fmt}: max |diff| {diff}");
            // And import by config alone (no metadata needed) reads the same names.
            let dev = Default::default();
            format::import::<Flex>(&out, &config, &dev).unwrap();
        }
    }
    let run = dir.path().join("anchor_former");
    let o = train(&["export", run.to_str().unwrap(), "--format", "hf-llava", "--out", dir.path().join("x.safetensors").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("only a 2-layer MLP"), "{}", text(&o));
}

/// The committed hf-llava export is what `train export` writes today for the mlp2x_gelu fixture;
/// `hf_llava_check.py` loads that file into transformers' LlavaForConditionalGeneration and records
/// the result in hf_llava_check.json. Set ANCHORAGE_WRITE_FIXTURES=1 to rewrite the export.
#[test]
fn hf_llava_export_fixture_is_current_and_loads_in_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConnectorConfig::Mlp(MlpConfig::new(16, 24));
    let run = run_folder(dir.path(), "mlp2x_gelu", &config);
    let out = dir.path().join("hf.safetensors");
    let o = train(&["export", run.to_str().unwrap(), "--format", "hf-llava", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let committed = PathBuf::from(fix("hf_llava_export.safetensors"));
    if std::env::var("ANCHORAGE_WRITE_FIXTURES").is_ok() {
        std::fs::copy(&out, &committed).unwrap();
    }
    let (a, b) = (TensorFile::read(&out).unwrap(), TensorFile::read(&committed).unwrap());
    assert_eq!(a.tensors.keys().collect::<Vec<_>>(), b.tensors.keys().collect::<Vec<_>>());
    for (k, v) in &a.tensors {
        assert_eq!(v, &b.tensors[k], "{k}");
    }
    let check: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fix("hf_llava_check.json")).unwrap()).unwrap();
    assert_eq!(check["missing_projector_keys"], serde_json::json!([]), "{check}");
    assert_eq!(check["unexpected_keys"], serde_json::json!([]), "{check}");
    assert!(check["max_abs_diff"].as_f64().unwrap() < 1e-4, "{check}");
}

#[test]
fn inspect_anchors_takes_the_cls_row_of_a_full_attention_map() {
    let dir = tempfile::tempdir().unwrap();
    // [1, 2, 5, 5]: only row 0 (CLS) matters. Head 0 prefers token 4, head 1 token 4 then 1.
    let mut v = vec![0.2f32; 2 * 5 * 5];
    v[..5].copy_from_slice(&[0.0, 0.1, 0.2, 0.3, 0.4]);
    v[25..30].copy_from_slice(&[0.0, 0.3, 0.1, 0.2, 0.4]);
    let f = dir.path().join("att.safetensors");
    TensorFile::write(&f, &[("attention".into(), TensorData::new(v, [1, 2, 5, 5]))], &HashMap::new()).unwrap();
    let out = dir.path().join("o.safetensors");
    let o = train(&["inspect", "anchors", "--attention", f.to_str().unwrap(), "--count", "2", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let got = TensorFile::read(&out).unwrap();
    assert_eq!(got.get("indices").unwrap().to_vec::<i64>().unwrap(), vec![0, 1, 4]);
    assert_eq!(got.get("heads").unwrap().to_vec::<i64>().unwrap(), vec![-1, 1, 0]);
}
