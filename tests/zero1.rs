//! ZeRO-1 (`optim.zero_stage = 1`) on CPU replicas (two flex "devices"), on the tiny instruction
//! tuning recipe with the LLM trained in full, so there are many parameters to shard: the sharded
//! run trains exactly like the unsharded one, each rank's checkpoint file holds only its share of
//! the AdamW state, a killed run resumes to the uninterrupted losses, and a checkpoint resumed on
//! another world size is refused naming both sizes.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anchorage_connectors::format as connector_file;
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

/// Starts two nodes (processes joined on localhost) of two devices each, training run `name`;
/// node 1 first, then node 0.
fn start_two_nodes(dir: &Path, name: &str, extra: &[&str]) -> [std::process::Child; 2] {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let master = format!("127.0.0.1:{port}");
    let node = |rank: &str| {
        let nodes = ["--set", "optim.micro_batch=2", "--set", "devices.nodes=2", "--master", &master, "--node-rank", rank];
        let a = args(dir, name, &[extra, &nodes[..]].concat());
        Command::new(env!("CARGO_BIN_EXE_train")).args(&a).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    [node("1"), node("0")]
}

/// Two nodes of two devices training run `name` to the end.
fn two_nodes(dir: &Path, name: &str, extra: &[&str]) {
    let [n1, n0] = start_two_nodes(dir, name, extra);
    let (o0, o1) = (n0.wait_with_output().unwrap(), n1.wait_with_output().unwrap());
    assert!(o0.status.success(), "node 0: {}", common::text(&o0));
    assert!(o1.status.success(), "node 1: {}", common::text(&o1));
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
    assert_eq!(connector(&zero), connector(&plain));
    let whole = size(plain.join("step-00000008/optimizer.bin"));
    let shards: Vec<u64> = (0..4).map(|r| size(zero.join(format!("step-00000008/optim-rank-{r}.bin")))).collect();
    let sum: u64 = shards.iter().sum();
    assert!(shards.iter().all(|s| s * 10 < whole * 5), "shards {shards:?} against {whole} unsharded");
    assert!(sum * 10 > whole * 9 && sum * 10 < whole * 11, "shards {shards:?} against {whole} unsharded");

    // Both nodes killed (SIGKILL) after at least 5 logged steps, then resumed: each node reads its
    // own ranks' shards, and the losses are the uninterrupted run's.
    let killed = dir.path().join("killed");
    let extra = ["--set", "optim.epochs=2", "--set", "checkpoint.every_steps=2", "--set", "optim.zero_stage=1"];
    let mut nodes = start_two_nodes(dir.path(), "killed", &extra);
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
