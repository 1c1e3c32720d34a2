//! Every shell command in README.md runs as written, so the README cannot rot. The fenced `sh`
//! blocks are read top to bottom; each command (continuation lines joined) runs through `sh` in one
//! scratch folder holding copies of `recipes/` and `data-manifests/`, with `cargo run [--release] --`
//! and `train` meaning this build's binary. A trailing `# [dry-run: why]` runs the command with
//! `--dry-run` (it needs GPUs, several machines or real data); `# [not run by tests/readme.rs: why]`
//! skips it. Any other command (one this test cannot run) fails the test until it is marked.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One command of a README block.
#[derive(Debug)]
struct ReadmeCommand {
    line: usize,
    text: String,
    dry_run: bool,
    skip: bool,
}

fn commands(readme: &str) -> Vec<ReadmeCommand> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in readme.lines().enumerate() {
        let line = raw.trim_end();
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let (start, mut text) = match pending.take() {
            Some((start, so_far)) => (start, so_far + " " + line.trim_start()),
            None => (i + 1, line.to_string()),
        };
        if text.ends_with('\\') {
            text.pop();
            pending = Some((start, text.trim_end().to_string()));
            continue;
        }
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let (command, comment) = match text.find("  # ") {
            Some(at) => (&text[..at], &text[at..]),
            None => (text, ""),
        };
        let command = command.trim().trim_start_matches("node0$ ").trim_start_matches("node1$ ");
        out.push(ReadmeCommand {
            line: start,
            text: command.to_string(),
            dry_run: comment.contains("[dry-run:"),
            skip: comment.contains("[not run by tests/readme.rs:"),
        });
    }
    out
}

/// The command with the binary in place of `cargo run [--release] --` or `train`; `None` when it
/// runs something else.
fn with_binary(command: &str, binary: &Path) -> Option<String> {
    let rest = ["cargo run --release -- ", "cargo run -- ", "train "].iter().find_map(|p| command.strip_prefix(p))?;
    Some(format!("'{}' {rest}", binary.display()))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn every_readme_shell_command_runs_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_train"));
    let scratch = tempfile::tempdir().unwrap();
    for folder in ["recipes", "data-manifests"] {
        copy_dir(&root.join(folder), &scratch.path().join(folder));
    }
    let all = commands(&readme);
    assert!(all.iter().filter(|c| !c.skip).count() >= 5, "{all:?}");
    for c in all.iter().filter(|c| !c.skip) {
        let Some(mut shell) = with_binary(&c.text, &binary) else {
            panic!("README.md line {}: `{}` is neither `cargo run --` nor `train`: mark it `# [not run by tests/readme.rs: why]`", c.line, c.text);
        };
        if c.dry_run {
            shell.push_str(" --dry-run");
        }
        let out = Command::new("sh").arg("-c").arg(&shell).current_dir(scratch.path()).env("RUST_LOG", "warn").output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "README.md line {}: `{}` failed:\n{text}", c.line, c.text);
    }
}

#[test]
fn marked_and_continued_commands_are_read_as_one() {
    let readme = "```sh\n# a comment\ntrain a \\\n    --b c  # stage 2\ntrain d  # [dry-run: gpu]\nnode0$ train e\nx y  # [not run by tests/readme.rs: no]\n```\n```\ntrain ignored\n```\n";
    let c = commands(readme);
    let got: Vec<(&str, bool, bool)> = c.iter().map(|c| (c.text.as_str(), c.dry_run, c.skip)).collect();
    assert_eq!(got, [("train a --b c", false, false), ("train d", true, false), ("train e", false, false), ("x y", false, true)]);
    assert_eq!(c[0].line, 3);
}
