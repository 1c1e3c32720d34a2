//! `train bench prefill`: what each compression method saves at thousands of visual tokens, side
//! by side in one run. A frozen CLIP tower (the tiny built-in, run at `--image-size` with
//! interpolated positions: 216 px gives 2916 visual tokens, LLaVA-NeXT AnyRes' order of 2880) and
//! an MLP connector feed a random-weight Llama of Vicuna-7B's depth at reduced width; each method
//! runs the same prompt's prefill. Each method runs in its own child process, so its peak resident
//! memory (`VmHWM`) is its own.

use std::time::Duration;

use anchorage_compress::CompressionPolicy;
use anchorage_data::PixelValues;
use anchorage_llm::LlamaConfig;
use anchorage_model::spec::{connector_config, ConnectorDims, ConnectorSection, FeatureSelect};
use anchorage_model::spec::LlmTraining;
use anchorage_model::{Llava, Prompt, Trainable, VisionSelect};
use anchorage_vision::{ClipVisionConfig, ClipVisionModel};
use anyhow::{bail, Context};
use clap::Args;
use burn::module::Module;
use serde_json::{json, Value};

use crate::backend::Flex;

#[derive(Debug, Args)]
pub struct PrefillArgs {
    /// Input side of the tiny CLIP tower (patch 4): 216 px = 2916 visual tokens.
    #[arg(long, default_value_t = 216)]
    pub image_size: usize,
    /// LLM width (Vicuna-7B: 4096); heads of 128 as in Vicuna.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// LLM depth (Vicuna-7B: 32).
    #[arg(long, default_value_t = 32)]
    pub layers: usize,
    /// Text tokens after the image.
    #[arg(long, default_value_t = 64)]
    pub text_len: usize,
    /// Timed prefills per method (the median is reported), after one untimed.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Compression policies as recipe `[compression]` tables in TOML inline form; default: none,
    /// FastV (K=2, R=50%), HiMAP and ACT-IN-LLM with their defaults.
    #[arg(long = "compression", value_name = "TOML")]
    pub compression: Vec<String>,
    /// Internal: run one policy and print its measurement as JSON.
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

/// One method's measurement.
#[derive(Debug)]
struct Measured {
    policy: String,
    visual_tokens: usize,
    prompt_tokens: usize,
    mean_kept_kv: f64,
    prefill_gflops: f64,
    prefill_ms: f64,
    peak_rss_mib: f64,
}

const DEFAULT_POLICIES: [&str; 4] = [
    r#"method = "none""#,
    r#"method = "fastv", layer = 2, keep_ratio = 0.5"#,
    r#"method = "himap""#,
    r#"method = "act""#,
];

pub fn run(args: PrefillArgs) -> anyhow::Result<()> {
    if let Some(policy) = &args.child {
        let m = measure(&args, policy)?;
        let line = json!({"policy": m.policy, "visual_tokens": m.visual_tokens, "prompt_tokens": m.prompt_tokens, "mean_kept_kv": m.mean_kept_kv,
            "prefill_gflops": m.prefill_gflops, "prefill_ms": m.prefill_ms, "peak_rss_mib": m.peak_rss_mib});
        println!("{line}");
        return Ok(());
    }
    let policies: Vec<String> = if args.compression.is_empty() { DEFAULT_POLICIES.map(String::from).to_vec() } else { args.compression.clone() };
    for p in &policies {
        parse_policy(p)?.check(args.layers).map_err(|e| anyhow::anyhow!("--compression {p}: {e}"))?;
    }
    let exe = std::env::current_exe().context("locating the train binary")?;
    let mut rows = Vec::new();
    for policy in &policies {
        let out = std::process::Command::new(&exe)
            .args(["bench", "prefill", "--image-size", &args.image_size.to_string(), "--hidden", &args.hidden.to_string()])
            .args(["--layers", &args.layers.to_string(), "--text-len", &args.text_len.to_string(), "--repeats", &args.repeats.to_string()])
            .args(["--child", policy])
            .output()
            .context("running a measurement child")?;
        if !out.status.success() {
            bail!("{policy}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(line.lines().last().unwrap_or_default()).with_context(|| format!("{policy}: {line}"))?;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        rows.push(Measured {
            policy: policy.clone(),
            visual_tokens: f("visual_tokens") as usize,
            prompt_tokens: f("prompt_tokens") as usize,
            mean_kept_kv: f("mean_kept_kv"),
            prefill_gflops: f("prefill_gflops"),
            prefill_ms: f("prefill_ms"),
            peak_rss_mib: f("peak_rss_mib"),
        });
    }
    print_table(&args, &rows);
    Ok(())
}

/// `method = "fastv", layer = 2` (the inside of an inline table, braces optional).
fn parse_policy(text: &str) -> anyhow::Result<CompressionPolicy> {
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    let doc: toml::Table = toml::from_str(&format!("c = {{ {inner} }}")).with_context(|| format!("--compression {text}: not TOML"))?;
    let table = doc.get("c").cloned().context("no table")?;
    table.try_into().with_context(|| format!("--compression {text}: not a [compression] table"))
}

fn print_table(args: &PrefillArgs, rows: &[Measured]) {
    println!("prefill at {} px (tiny CLIP, patch 4) -> {} visual tokens; Llama {} layers x {} wide; {} text tokens; median of {}", args.image_size, rows.first().map_or(0, |r| r.visual_tokens), args.layers, args.hidden, args.text_len, args.repeats);
    println!("| policy | prompt tokens | mean K/V kept per layer | prefill GFLOPs | vs none | prefill ms | vs none | peak RSS MiB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let base = rows.first();
    for r in rows {
        let (f, t) = base.map_or((1.0, 1.0), |b| (r.prefill_gflops / b.prefill_gflops, r.prefill_ms / b.prefill_ms));
        println!("| `{}` | {} | {:.0} | {:.2} | {f:.2}x | {:.0} | {t:.2}x | {:.0} |", r.policy, r.prompt_tokens, r.mean_kept_kv, r.prefill_gflops, r.prefill_ms, r.peak_rss_mib);
    }
}

/// Builds the model for `policy` and times its prefill.
fn measure(args: &PrefillArgs, policy: &str) -> anyhow::Result<Measured> {
    let compression = parse_policy(policy)?;
    let model = build(args, compression)?;
    let pixels = PixelValues::zeros(args.image_size);
    let mut ids = vec![1i64, -200];
    ids.extend((0..args.text_len as i64).map(|i| 3 + i % 500));
    let prompt = Prompt { input_ids: ids, pixels: Some(pixels), anyres: None };
    let mut times = Vec::new();
    let mut last = None;
    for i in 0..=args.repeats {
        let g = model.generate(std::slice::from_ref(&prompt), 1, &[], 0)?;
        if i > 0 {
            times.push(g.prefill_time);
        }
        last = Some(g);
    }
    let g = last.context("no prefill ran")?;
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or(Duration::ZERO);
    let kept = g.kept_kv.as_ref().map_or(g.prompt_tokens[0] as f64, |k| k.iter().sum::<usize>() as f64 / k.len().max(1) as f64);
    Ok(Measured {
        policy: policy.to_string(),
        visual_tokens: g.visual_tokens[0],
        prompt_tokens: g.prompt_tokens[0],
        mean_kept_kv: kept,
        prefill_gflops: g.prefill_flops / 1e9,
        prefill_ms: median.as_secs_f64() * 1e3,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// The tiny CLIP at `image_size`, an MLP connector, and a random Llama of the given size.
fn build(args: &PrefillArgs, compression: CompressionPolicy) -> anyhow::Result<Llava<Flex>> {
    let device = &Default::default();
    let vision_config = ClipVisionConfig::tiny();
    vision_config.check_input_size(args.image_size, args.image_size).map_err(anyhow::Error::msg)?;
    <Flex as burn::tensor::backend::Backend>::seed(device, 0);
    let vision: ClipVisionModel<Flex> = vision_config.init(device);
    if args.hidden == 0 || args.hidden % 128 != 0 {
        bail!("--hidden {} must be a positive multiple of 128 (heads of 128, as Vicuna's)", args.hidden);
    }
    let heads = args.hidden / 128;
    // Vicuna-7B's layer recipe at reduced width (heads of 128, SwiGLU 11008/4096 of the width).
    let llm_config = LlamaConfig {
        vocab_size: 1024,
        hidden_size: args.hidden,
        intermediate_size: args.hidden * 11008 / 4096,
        num_hidden_layers: args.layers,
        num_attention_heads: heads,
        num_key_value_heads: heads,
        head_dim: 128,
        ..LlamaConfig::vicuna_7b()
    };
    let llm = llm_config.init::<Flex>(device).no_grad();
    let vision_tokens = vision_config.num_tokens_at(args.image_size, args.image_size) - 1;
    let section: ConnectorSection = toml::from_str(r#"kind = "mlp""#)?;
    let config = connector_config(&section, ConnectorDims { d_vision: vision_config.hidden_size, d_llm: args.hidden, vision_tokens });
    let connector = config.init::<Flex>(device)?;
    let select = VisionSelect::new(&vision, -2, FeatureSelect::Patch, false)?;
    Ok(Llava {
        vision,
        trainable: Trainable::new(connector, llm),
        training: LlmTraining::Frozen,
        select,
        compression,
        image_tokens: config.output_tokens(vision_tokens),
        connector_config: config,
        image_size: args.image_size,
        device: device.clone(),
        llm_compute: None,
    })
}

/// This process's peak resident memory (`VmHWM` in /proc/self/status), 0 where unavailable.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
