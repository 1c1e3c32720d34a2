//! Draws `docs/images/compare-example.png`, the example of a `train compare` plot in the docs,
//! and prints the Markdown table of the same runs. The numbers are made up, shaped like
//! LLaVA-1.5-7B runs: `cargo run -p anchorage-eval --example compare_example [DIR]` (with `DIR`,
//! also both tables and three more plots there).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anchorage_eval::compare::{csv_table, markdown_table, plot_png, Axis, Plot, RunRow};

/// (connector, compression, visual tokens, prefill seconds, TextVQA, POPE)
const RUNS: [(&str, &str, f64, f64, Option<f64>, f64); 9] = [
    ("mlp2x_gelu", "none", 576.0, 0.212, Some(58.2), 85.9),
    ("mlp2x_gelu", "fastv", 288.0, 0.151, Some(57.4), 85.1),
    ("mlp2x_gelu", "himap", 144.0, 0.118, Some(56.8), 84.6),
    ("mlp2x_gelu", "act", 144.0, 0.121, Some(55.6), 84.9),
    ("c_abstractor", "none", 144.0, 0.104, Some(54.9), 84.3),
    ("resampler", "none", 64.0, 0.081, Some(50.7), 82.0),
    ("anchor_former", "none", 145.0, 0.107, Some(57.1), 85.3),
    ("anchor_former", "fastv", 72.0, 0.088, Some(55.8), 84.4),
    ("c_abstractor", "fastv", 72.0, 0.086, None, 83.1),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: Vec<RunRow> = RUNS
        .iter()
        .map(|&(connector, compression, tokens, latency, textvqa, pope)| {
            let mut scores = BTreeMap::from([("POPE".to_string(), pope)]);
            if let Some(t) = textvqa {
                scores.insert("TextVQA".to_string(), t);
            }
            RunRow {
                name: format!("{connector}-{compression}"),
                connector: connector.to_string(),
                compression: compression.to_string(),
                visual_tokens: tokens,
                prefill_flops: Some(2.0 * 6.7e9 * (tokens + 64.0)),
                prefill_latency_s: latency,
                decode_tokens_per_s: 31.5,
                train_seconds: Some(5.5 * 3600.0),
                scores,
            }
        })
        .collect();
    print!("{}", markdown_table(&rows));

    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images/compare-example.png");
    let drawn = plot_png(&out, &Plot::accuracy_vs_tokens("TextVQA"), &rows)?;
    println!("wrote {} ({} runs drawn, {} left out)", out.display(), drawn.points.len(), drawn.skipped.len());

    // With a folder argument, the rest of what `train compare` writes goes there too.
    if let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("compare.md"), markdown_table(&rows))?;
        std::fs::write(dir.join("compare.csv"), csv_table(&rows))?;
        plot_png(&dir.join("textvqa-latency.png"), &Plot::accuracy_vs_latency("TextVQA"), &rows)?;
        plot_png(&dir.join("pope-tokens.png"), &Plot::accuracy_vs_tokens("POPE"), &rows)?;
        let flops = Plot {
            title: "POPE: score vs prefill FLOPs".into(),
            x: Axis::PrefillFlops,
            bench: "POPE".into(),
            log_x: false,
        };
        plot_png(&dir.join("pope-flops.png"), &flops, &rows)?;
        println!("wrote the tables and three more plots to {}", dir.display());
    }
    Ok(())
}
