//! `train compare RUN... --out DIR`: runs × benchmarks with visual tokens, latency and training
//! time (Markdown and CSV), and PNG plots (accuracy vs visual tokens, accuracy vs prefill latency),
//! from each run's `eval/summary.json`, `model.toml` and `train_summary.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anchorage_eval::compare::{csv_table, markdown_table, plot_png, Axis, Plot, RunRow};
use anchorage_eval::run::Efficiency;
use anyhow::Context;
use clap::Args;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run folders evaluated with `train eval suite` (or by `train demo`).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Folder for compare.md, compare.csv and the plots.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let table = write(&args.runs, &args.out)?;
    println!("{table}");
    println!("wrote:          {}", args.out.display());
    Ok(())
}

/// Writes the comparison of `runs` into `out`; returns the Markdown table.
pub fn write(runs: &[PathBuf], out: &Path) -> anyhow::Result<String> {
    let rows = runs.iter().map(|r| row(r)).collect::<anyhow::Result<Vec<_>>>()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let md = markdown_table(&rows);
    std::fs::write(out.join("compare.md"), &md).with_context(|| format!("writing {}", out.join("compare.md").display()))?;
    std::fs::write(out.join("compare.csv"), csv_table(&rows)).with_context(|| format!("writing {}", out.join("compare.csv").display()))?;
    let benches: Vec<String> = rows.iter().flat_map(|r| r.scores.keys().cloned()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    for bench in &benches {
        for (axis, file, label) in [(Axis::VisualTokens, "tokens", "visual tokens"), (Axis::PrefillLatency, "latency", "prefill latency")] {
            let plot = Plot { title: format!("{bench}: accuracy vs {label}"), x: axis, bench: bench.clone(), log_x: false };
            plot_png(&out.join(format!("{bench}-accuracy-vs-{file}.png")), &plot, &rows)?;
        }
    }
    Ok(md)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

/// One run's row from its folder.
fn row(run: &Path) -> anyhow::Result<RunRow> {
    let summary = read_json(&run.join("eval/summary.json")).with_context(|| format!("{}: evaluate it first (`train eval suite`)", run.display()))?;
    let card: toml::Table = std::fs::read_to_string(run.join("model.toml")).with_context(|| format!("reading {}/model.toml", run.display()))?.parse()?;
    let connector = connector_name(card.get("connector"));
    let compression = card.get("compression").and_then(|c| c.get("method")).and_then(|m| m.as_str()).unwrap_or("none").to_string();
    let mut scores = BTreeMap::new();
    let mut each = Vec::new();
    for (bench, result) in summary.get("benches").and_then(Value::as_object).into_iter().flatten() {
        if let Some(h) = result.get("headline").and_then(Value::as_f64) {
            scores.insert(bench.clone(), h);
        }
        let e: Efficiency = serde_json::from_value(result["efficiency"].clone()).with_context(|| format!("{}/eval/summary.json: {bench}: efficiency", run.display()))?;
        each.push(e);
    }
    // Means over the run's benchmarks of each benchmark's own figure.
    let mean = |f: fn(&Efficiency) -> f64| each.iter().map(f).sum::<f64>() / each.len().max(1) as f64;
    let train_seconds = read_json(&run.join("train_summary.json")).ok().and_then(|s| s.get("train_seconds").and_then(Value::as_f64));
    let name = run.file_name().and_then(|n| n.to_str()).unwrap_or("run").to_string();
    Ok(RunRow {
        name,
        connector,
        compression,
        visual_tokens: mean(Efficiency::visual_tokens_per_prompt),
        prefill_flops: Some(mean(Efficiency::prefill_flops_per_prompt)).filter(|f| *f > 0.0),
        prefill_latency_s: mean(Efficiency::prefill_latency),
        decode_tokens_per_s: mean(Efficiency::decode_tokens_per_s),
        train_seconds,
        scores,
    })
}

/// The connector as LLaVA names it (`mlp2x_gelu`, `linear`) or by its kind.
fn connector_name(table: Option<&toml::Value>) -> String {
    let kind = table.and_then(|t| t.get("kind")).and_then(|k| k.as_str()).unwrap_or("unknown");
    match (kind, table.and_then(|t| t.get("depth")).and_then(|d| d.as_integer())) {
        ("mlp", Some(1)) => "linear".into(),
        ("mlp", Some(d)) => format!("mlp{d}x_gelu"),
        ("mlp", None) => "mlp2x_gelu".into(),
        (k, _) => k.to_string(),
    }
}
