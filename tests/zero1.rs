//! ZeRO-1 (`optim.zero_stage = 1`) on CPU replicas (two flex "devices"), on the tiny instruction
//! tuning recipe with the LLM trained in full, so there are many parameters to shard: the sharded
//! run trains exactly like the unsharded one, each rank's checkpoint file holds only its share of
//! the AdamW state, a killed run resumes to the uninterrupted losses, and a checkpoint resumed on
//! another world size is refused naming both sizes. A bf16 LLM's f32 master is sharded too, and
//! gathered whole into its checkpoints.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anchorage_connectors::format as connector_file;
use anchorage_model::CheckpointWeights;
use anchorage_train::Recipe;
use burn::backend::Flex;
use common::losses;

fn args(dir: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let sets = ["llm.training=\"full\"", "devices.ids=[0,1]"];
    common::stage_args("ift", "recipes/tiny/ift.toml", dir, name, &sets, extra)
}

fn run(dir: &Path, name: &str, extra: &[&str]) {
    common::train_ok(&args(dir, name, extra));
}

fn connector(run: &Path) -> Vec<Vec<f32>> {
    let (c, _, _) = connector_file::load::<Flex>(&run.join("connector.safetensors"), &Default::default()).unwrap();
    common::parameters(&c)
}

/// Each step's logged gradient norm, as written (a sharded run sums it from the ranks' shares).
fn grad_norms(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["grad_norm"].as_f64().unwrap()).collect()
}

fn size(path: PathBuf) -> u64 {
    std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len()
}

#[test]
fn sharded_adamw_trains_like_unsharded_and_each_rank_keeps_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--set", "optim.epochs=2", "--set", "checkpoint.every_steps=4"];
    run(dir.path(), "plain", &common);
    run(dir.path(), "zero", &[&common[..], &["--set", "optim.zero_stage=1"]].concat());
    let (plain, zero) = (dir.path().join("plain"), dir.path().join("zero"));

    // x + 0 = x: sharing the owners' stepped values is exact, so the runs agree bit for bit.
    let (lp, lz) = (losses(&plain), losses(&zero));
    assert_eq!(lp.len(), 8);
    assert_eq!(lz, lp, "ZeRO-1 must train exactly like unsharded AdamW");
    assert_eq!(connector(&zero), connector(&plain));
    // Each rank holds its own parameters' summed gradients only; the norm, summed from the two
    // shares, is the whole one's bit for bit, and it clips (grad_clip = 1).
    let norms = grad_norms(&plain);
    assert_eq!(grad_norms(&zero), norms);
    assert!(norms.iter().any(|&n| n > 1.0), "no step clipped: {norms:?}");

    // Each rank's file holds its share only: about half of the whole state each, together about
    // the whole. The unsharded checkpoint has no shard files, the sharded one no optimizer.bin.
    let (whole_dir, shard_dir) = (plain.join("step-00000008"), zero.join("step-00000008"));
    let whole = size(whole_dir.join("optimizer.bin"));
    let shards = [size(shard_dir.join("optim-rank-0.bin")), size(shard_dir.join("optim-rank-1.bin"))];
    for s in shards {
        assert!(s * 10 < whole * 7, "a shard of {s} bytes against {whole} unsharded: {shards:?}");
    }
    let sum = shards[0] + shards[1];
    assert!(sum * 10 > whole * 9 && sum * 10 < whole * 11, "shards {shards:?} against {whole} unsharded");
    assert!(!shard_dir.join("optimizer.bin").exists() && !whole_dir.join("optim-rank-0.bin").exists());
    let state = std::fs::read_to_string(shard_dir.join("state.json")).unwrap();
    assert!(state.contains("\"zero_world_size\": 2"), "{state}");
    let state = std::fs::read_to_string(whole_dir.join("state.json")).unwrap();
    assert!(!state.contains("zero_world_size"), "stage 0 writes state.json as before: {state}");
}

/// The `master_elements` of each rank's log line when it shards an f32 master (`RUST_LOG=info`).
fn master_elements(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|line| line.split("master_elements=").nth(1))
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap())
        .collect()
}

/// The weights of a step checkpoint's `trainable.bin`, loaded as `--resume` loads them (the bytes
/// differ between processes: they hold burn's random parameter ids).
fn weights(run: &Path, step: &str) -> Vec<Vec<f32>> {
    let spec = Recipe::from_saved(&run.join("recipe.toml")).unwrap().model_spec();
    let model = spec.build::<Flex, Flex>(&Default::default(), None).unwrap().model;
    let path = run.join(step).join("trainable.bin");
    let loaded = CheckpointWeights::load_bytes(model.trainable, model.training, std::fs::read(&path).unwrap(), &path, &Default::default()).unwrap();
    common::parameters(&loaded)
}

/// A bf16 LLM trained in full keeps an f32 master (`master.rs`). Sharded, each rank keeps the f32
/// master of its own share only and the LLM in bf16, and the run still trains bit for bit like the
/// unsharded one, whose ranks each hold the whole f32 master: node 0 gathers the masters into the
/// same f32 `trainable.bin`. A run resumed from its step-4 checkpoint writes the same step 8.
#[test]
fn a_bf16_llm_shards_its_f32_master_and_checkpoints_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--set", "llm.dtype=\"bf16\"", "--set", "optim.epochs=2", "--set", "checkpoint.every_steps=4"];
    run(dir.path(), "plain", &common);
    let sharded = [&common[..], &["--set", "optim.zero_stage=1"]].concat();
    let out = Command::new(env!("CARGO_BIN_EXE_train")).args(args(dir.path(), "zero", &sharded)).env("RUST_LOG", "info").output().unwrap();
    let log = common::text(&out);
    assert!(out.status.success(), "{log}");
    let (plain, zero) = (dir.path().join("plain"), dir.path().join("zero"));

    // Each rank holds the f32 master of about half of the LLM.
    let shares = master_elements(&log);
    assert_eq!(shares.len(), 2, "one line per rank: {log}");
    let llm: u64 = shares.iter().sum();
    assert!(shares.iter().all(|&s| s * 10 > llm * 3 && s * 10 < llm * 7), "{shares:?}");

    assert_eq!(losses(&plain).len(), 8);
    assert_eq!(losses(&zero), losses(&plain), "a sharded f32 master must train exactly like the whole one");
    assert_eq!(grad_norms(&zero), grad_norms(&plain));
    assert_eq!(connector(&zero), connector(&plain));
    for step in ["step-00000004", "step-00000008"] {
        // Bit for bit: a master assembled from bf16 values would differ in the low bits.
        assert!(weights(&plain, step) == weights(&zero, step), "{step}: the gathered f32 LLM differs from the unsharded run's");
    }

    // As if the run had died after its step-4 checkpoint: resumed (masters split again from the
    // gathered f32 LLM, AdamW from the shards), it reaches the same f32 weights at step 8. (The
    // shard files' bytes are not compared: burn writes AdamW's record as a hash map, in an order
    // that changes from process to process.)
    let step8 = "step-00000008";
    let trained = weights(&zero, step8);
    std::fs::remove_dir_all(zero.join(step8)).unwrap();
    run(dir.path(), "zero", &[&sharded[..], &["--resume", zero.to_str().unwrap()]].concat());
    assert!(weights(&zero, step8) == trained, "the resumed run's step-8 weights differ");
    assert_eq!(losses(&zero), losses(&plain));

    // Two micro-batches a rank each step: the bf16 gradients are added in f32 before the sum.
    let accumulating = [&common[..], &["--set", "optim.micro_batch=2"]].concat();
    run(dir.path(), "plain-accum", &accumulating);
    run(dir.path(), "zero-accum", &[&accumulating[..], &["--set", "optim.zero_stage=1"]].concat());
    let (plain, zero) = (dir.path().join("plain-accum"), dir.path().join("zero-accum"));
    assert_eq!(losses(&zero), losses(&plain));
    assert_eq!(grad_norms(&zero), grad_norms(&plain));
    assert!(weights(&plain, step8) == weights(&zero, step8), "accumulating: the gathered f32 LLM differs");
}

/// Starts two nodes (processes joined on localhost) of two devices each, training run `name`
/// with `RUST_LOG=log`; node 1 first, then node 0.
fn start_two_nodes(dir: &Path, name: &str, extra: &[&str], log: &str) -> [std::process::Child; 2] {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let master = format!("127.0.0.1:{port}");
    let node = |rank: &str| {
        let nodes = ["--set", "optim.micro_batch=2", "--set", "devices.nodes=2", "--master", &master, "--node-rank", rank];
        let a = args(dir, name, &[extra, &nodes[..]].concat());
        Command::new(env!("CARGO_BIN_EXE_train")).args(&a).env("RUST_LOG", log).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    [node("1"), node("0")]
}

/// Two nodes of two devices training run `name` to the end; their logs (`RUST_LOG=info`), node 0's
/// first.
fn two_nodes(dir: &Path, name: &str, extra: &[&str]) -> String {
    let [n1, n0] = start_two_nodes(dir, name, extra, "info");
    let (o0, o1) = (n0.wait_with_output().unwrap(), n1.wait_with_output().unwrap());
    assert!(o0.status.success(), "node 0: {}", common::text(&o0));
    assert!(o1.status.success(), "node 1: {}", common::text(&o1));
    common::text(&o0) + &common::text(&o1)
}

#[test]
fn over_two_nodes_node_0_checkpoints_every_rank_shard() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--set", "optim.epochs=2", "--set", "checkpoint.every_steps=4"];
    two_nodes(dir.path(), "plain", &common);
    two_nodes(dir.path(), "zero", &[&common[..], &["--set", "optim.zero_stage=1"]].concat());
    let (plain, zero) = (dir.path().join("plain"), dir.path().join("zero"));
    assert_eq!(losses(&plain).len(), 8);
    assert_eq!(losses(&zero), losses(&plain), "ZeRO-1 over two nodes must train exactly like unsharded AdamW");
    assert_eq!(grad_norms(&zero), grad_norms(&plain), "the norm summed from four shares");
    assert_eq!(connector(&zero), connector(&plain));
    let whole = size(plain.join("step-00000008/optimizer.bin"));
    let shards: Vec<u64> = (0..4).map(|r| size(zero.join(format!("step-00000008/optim-rank-{r}.bin")))).collect();
    let sum: u64 = shards.iter().sum();
    assert!(shards.iter().all(|s| s * 10 < whole * 5), "shards {shards:?} against {whole} unsharded");
    assert!(sum * 10 > whole * 9 && sum * 10 < whole * 11, "shards {shards:?} against {whole} unsharded");

    // A bf16 LLM: each of the four ranks keeps the f32 master of its share, and node 0 gathers
    // the other node's masters over the link into the unsharded run's f32 weights.
    let bf16 = ["--set", "llm.dtype=\"bf16\""];
    two_nodes(dir.path(), "plain-bf16", &[&common[..], &bf16].concat());
    let log = two_nodes(dir.path(), "zero-bf16", &[&common[..], &bf16, &["--set", "optim.zero_stage=1"]].concat());
    let shares = master_elements(&log);
    let llm: u64 = shares.iter().sum();
    // (Ownership balances every trained element, the connector's too, and the tiny LLM has a few
    // large tensors: the shares are uneven, each a part.)
    assert!(shares.len() == 4 && shares.iter().all(|&s| s > 0 && s * 2 < llm), "{shares:?}: {log}");
    let (plain_bf16, zero_bf16) = (dir.path().join("plain-bf16"), dir.path().join("zero-bf16"));
    assert_eq!(losses(&zero_bf16), losses(&plain_bf16));
    assert_eq!(grad_norms(&zero_bf16), grad_norms(&plain_bf16));
    assert!(weights(&zero_bf16, "step-00000008") == weights(&plain_bf16, "step-00000008"), "the f32 LLM gathered over two nodes differs");

    // Both nodes killed (SIGKILL) after at least 5 logged steps, then resumed: each node reads its
    // own ranks' shards, and the losses are the uninterrupted run's.
    let killed = dir.path().join("killed");
    let extra = ["--set", "optim.epochs=2", "--set", "checkpoint.every_steps=2", "--set", "optim.zero_stage=1"];
    // (Logging at warn: nothing reads the pipes before the kill.)
    let mut nodes = start_two_nodes(dir.path(), "killed", &extra, "warn");
    let start = Instant::now();
    while losses_logged(&killed) < 5 && start.elapsed() < Duration::from_secs(300) && nodes[1].try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(2));
    }
    for node in &mut nodes {
        let _ = node.kill();
        node.wait().unwrap();
    }
    let before = losses_logged(&killed);
    assert!((5..8).contains(&before), "killed after {before} logged steps");
    two_nodes(dir.path(), "killed", &[&extra[..], &["--resume", killed.to_str().unwrap()]].concat());
    assert_eq!(losses(&killed), losses(&zero), "killed after {before} logged steps");
}

/// Every file under a run folder with its bytes, to show a refused resume changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "train.lock") {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_killed_sharded_run_resumes_on_its_world_size_only() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--set", "optim.epochs=3", "--set", "checkpoint.every_steps=2", "--set", "optim.zero_stage=1"];
    run(dir.path(), "whole", &common);
    let whole = losses(&dir.path().join("whole"));
    assert_eq!(whole.len(), 12);

    // SIGKILL after at least 5 logged steps (a checkpoint at step 4 or later exists).
    let run_dir = dir.path().join("killed");
    let a = args(dir.path(), "killed", &common);
    let mut child = Command::new(env!("CARGO_BIN_EXE_train")).args(&a).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while losses_logged(&run_dir) < 5 && start.elapsed() < Duration::from_secs(300) && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = losses_logged(&run_dir);
    assert!((5..12).contains(&before), "killed after {before} logged steps");

    // Another world size is refused, naming both, and nothing in the run folder changes.
    let files = snapshot(&run_dir);
    let resume = ["--resume", run_dir.to_str().unwrap()];
    for (other, devices, micro) in [(4, "devices.ids=[0,1,2,3]", "optim.micro_batch=2"), (1, "devices.ids=[0]", "optim.micro_batch=4")] {
        let a = args(dir.path(), "killed", &[&common[..], &resume, &["--set", devices, "--set", micro]].concat());
        let out = common::train(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let text = common::text(&out);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("optim.zero_stage") && text.contains("a world of 2") && text.contains(&format!("a world of {other}")), "{text}");
        assert_eq!(snapshot(&run_dir), files, "a refused resume changed the run folder");
    }

    // The same world size resumes to exactly the uninterrupted losses.
    run(dir.path(), "killed", &[&common[..], &resume].concat());
    assert_eq!(losses(&run_dir), whole, "killed after {before} logged steps");
}

fn losses_logged(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map(|t| t.lines().count()).unwrap_or(0)
}
