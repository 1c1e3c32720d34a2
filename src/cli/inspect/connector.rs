//! `train inspect connector`: run a connector, given as a recipe `[connector]` table, on given
//! features with weights under upstream names.

use std::collections::HashMap;
use std::path::PathBuf;

use anchorage_connectors::{ConnectorConfig, TensorFile};
use anchorage_model::spec::{connector_config, ConnectorDims};
use anchorage_model::spec::ConnectorSection;
use anyhow::{anyhow, bail, Context};
use burn::tensor::Tensor;
use clap::Args;

use crate::backend::Flex;

#[derive(Debug, Args)]
pub struct ConnectorArgs {
    /// TOML file with a `[connector]` table, as in recipes.
    #[arg(long)]
    pub connector: PathBuf,
    /// Weights under upstream key names (safetensors, or a PyTorch `mm_projector.bin`).
    #[arg(long)]
    pub weights: PathBuf,
    /// safetensors with `features` [B,T,D] (Anchor Former: CLS at token 0, plus `cls_attention` [B,H,T]).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where to write `output` [B,Q,D_out] (safetensors).
    #[arg(long)]
    pub out: PathBuf,
}

/// Reads the `[connector]` table of a TOML file.
pub fn read_section(path: &std::path::Path) -> anyhow::Result<ConnectorSection> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: toml::Value = text.parse().with_context(|| format!("{}: not TOML", path.display()))?;
    let table = value.get("connector").ok_or_else(|| anyhow!("{}: no [connector] table", path.display()))?.clone();
    let section: ConnectorSection = table.try_into().with_context(|| format!("{}: [connector]", path.display()))?;
    section.check().map_err(|(key, msg)| anyhow!("{}: connector.{key}: {msg}", path.display()))?;
    Ok(section)
}

pub fn run(args: ConnectorArgs) -> anyhow::Result<()> {
    let device = Default::default();
    let section = read_section(&args.connector)?;
    let inputs = TensorFile::read(&args.inputs)?;
    let features = inputs.get("features")?;
    let [b, t, d] = match features.shape.as_slice() {
        [b, t, d] => [*b, *t, *d],
        other => bail!("{}: `features` has shape {other:?}, expected [B, T, D]", args.inputs.display()),
    };
    let weights = TensorFile::read(&args.weights)?;
    let provisional: ConnectorConfig = connector_config(&section, ConnectorDims { d_vision: d, d_llm: d, vision_tokens: t });
    let d_llm = provisional.probe_d_output::<Flex>(&weights, &device)?;
    let config = provisional.with_d_output(d_llm);
    let connector = config.init::<Flex>(&device)?.load(&weights, &config.namings(), &device)?;
    let features = Tensor::<Flex, 3>::from_data(features.clone(), &device);
    let cls_attention = match inputs.tensors.get("cls_attention") {
        Some(a) if a.shape.len() == 3 => Some(Tensor::<Flex, 3>::from_data(a.clone(), &device)),
        Some(a) => bail!("{}: `cls_attention` has shape {:?}, expected [B, H, T]", args.inputs.display(), a.shape.as_slice()),
        None if config.needs_cls_attention() => {
            bail!("{}: the anchor former needs `cls_attention` [B, H, T] next to `features`", args.inputs.display())
        }
        None => None,
    };
    let output = connector.forward(features, cls_attention)?;
    let dims = output.dims();
    TensorFile::write(&args.out, &[("output".to_string(), output.into_data())], &HashMap::new())?;
    println!("kind:           {}", config.kind());
    println!("input:          [{b}, {t}, {d}]");
    println!("output:         {dims:?} ({} tokens per image)", connector.output_tokens(t));
    println!("parameters:     {}", connector.parameter_count());
    println!("wrote:          {}", args.out.display());
    Ok(())
}
