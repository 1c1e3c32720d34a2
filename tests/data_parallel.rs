//! Data parallel on the embedded default: two replicas on one node (two flex "devices" sharing the
//! CPU) and two nodes of two replicas (two processes joined through `--master` on localhost) train
//! the same losses, skip counts and connector as one device accumulating the same micro-batches.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use anchorage_connectors::format as connector_file;
use burn::backend::Flex;

fn args(dir: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    common::stage_args("pretrain", "recipes/tiny/pretrain.toml", dir, name, &["optim.epochs=2"], extra)
}

fn run(dir: &Path, name: &str, extra: &[&str]) {
    common::train_ok(&args(dir, name, extra));
}

/// (losses, final skip counts) from metrics.jsonl.
fn metrics(run: &Path) -> (Vec<f64>, serde_json::Value) {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let losses = rows.iter().map(|r| r["loss"].as_f64().unwrap()).collect();
    (losses, rows.last().unwrap()["skipped"].clone())
}

/// Same losses (to f32 summation order), same skips, same connector weights.
fn assert_same_training(a: &Path, b: &Path) {
    let ((la, sa), (lb, sb)) = (metrics(a), metrics(b));
    assert_eq!(la.len(), lb.len());
    assert!(la.len() >= 8);
    for (x, y) in la.iter().zip(&lb) {
        assert!((x - y).abs() <= 1e-6 * x.abs(), "losses differ: {la:?} vs {lb:?}");
    }
    assert_eq!(sa, sb, "skip counts differ");
    assert!(sa.as_object().is_some_and(|m| !m.is_empty()), "the tiny data has bad samples: {sa}");
    let device = Default::default();
    let (ca, _, _) = connector_file::load::<Flex>(&a.join("connector.safetensors"), &device).unwrap();
    let (cb, _, _) = connector_file::load::<Flex>(&b.join("connector.safetensors"), &device).unwrap();
    let (ta, tb) = (common::parameters(&ca), common::parameters(&cb));
    assert_eq!(ta.len(), tb.len());
    for (i, (x, y)) in ta.iter().zip(&tb).enumerate() {
        let diff = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-5, "parameter {i}: connectors differ by {diff}");
    }
}

#[test]
fn two_devices_train_like_one_device_accumulating() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), "one", &[]);
    run(dir.path(), "two", &["--set", "devices.ids=[0,1]"]);
    let plan = std::fs::read_to_string(dir.path().join("two/plan.txt")).unwrap();
    assert!(plan.contains("grad accumulation:   1 = 8 / (4 × 2)"), "{plan}");
    assert_same_training(&dir.path().join("one"), &dir.path().join("two"));
}

#[test]
fn gradients_summed_in_bf16_train_close_to_f32_but_not_identically() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), "f32", &["--set", "devices.ids=[0,1]"]);
    run(dir.path(), "bf16", &["--set", "devices.ids=[0,1]", "--set", "devices.reduce_dtype=\"bf16\""]);
    let ((a, _), (b, _)) = (metrics(&dir.path().join("f32")), metrics(&dir.path().join("bf16")));
    assert_eq!(a.len(), b.len());
    // The first loss comes before any update; later ones follow bf16-rounded gradients.
    assert!((a[0] - b[0]).abs() <= 1e-6 * a[0].abs(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 2e-2 * x.abs(), "bf16 sums drift too far: {a:?} vs {b:?}");
    }
    let device = Default::default();
    let (ca, _, _) = connector_file::load::<Flex>(&dir.path().join("f32/connector.safetensors"), &device).unwrap();
    let (cb, _, _) = connector_file::load::<Flex>(&dir.path().join("bf16/connector.safetensors"), &device).unwrap();
    let diff = common::parameters(&ca).iter().zip(&common::parameters(&cb)).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0f32, f32::max);
    assert!(diff > 0.0 && diff < 1e-2, "bf16 sums changed the connector by {diff}");
    let recipe = std::fs::read_to_string(dir.path().join("bf16/recipe.toml")).unwrap();
    assert!(recipe.contains("reduce_dtype = \"bf16\""), "{recipe}");
}

#[test]
fn two_nodes_of_two_devices_train_like_one_device_accumulating() {
    let dir = tempfile::tempdir().unwrap();
    // micro 2: 4 slices per step, one per replica (2 nodes × 2 devices), or 4 accumulated on one.
    run(dir.path(), "one", &["--set", "optim.micro_batch=2"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let master = format!("127.0.0.1:{port}");
    let node = |rank: &str| {
        let a = args(
            dir.path(),
            "nodes",
            &["--set", "optim.micro_batch=2", "--set", "devices.ids=[0,1]", "--set", "devices.nodes=2", "--master", &master, "--node-rank", rank],
        );
        Command::new(env!("CARGO_BIN_EXE_train")).args(&a).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (n1, n0) = (node("1"), node("0"));
    let (o0, o1) = (n0.wait_with_output().unwrap(), n1.wait_with_output().unwrap());
    assert!(o0.status.success(), "node 0: {}", common::text(&o0));
    assert!(o1.status.success(), "node 1: {}", common::text(&o1));
    assert_same_training(&dir.path().join("one"), &dir.path().join("nodes"));
}

#[test]
fn several_nodes_need_a_rank_and_the_master_address() {
    let dir = tempfile::tempdir().unwrap();
    let a = args(dir.path(), "x", &["--set", "devices.nodes=2"]);
    let out = common::train(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let text = common::text(&out);
    assert!(text.contains("--node-rank") && text.contains("--master"), "{text}");
    let a = args(dir.path(), "x", &["--set", "devices.nodes=2", "--node-rank", "2", "--master", "127.0.0.1:1"]);
    let text = common::text(&common::train(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(text.contains("--node-rank 2") && text.contains("below 2"), "{text}");
}
