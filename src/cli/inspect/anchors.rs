//! `train inspect anchors`: AcFormer's anchor selection on a CLS attention row, optionally drawn
//! over the image.

use std::collections::HashMap;
use std::path::PathBuf;

use anchorage_connectors::{anchors_png, kernels, TensorFile};
use anyhow::{bail, Context};
use burn::tensor::Tensor;
use clap::Args;

use crate::backend::Flex;

#[derive(Debug, Args)]
pub struct AnchorsArgs {
    /// safetensors with `cls_attention` [B,H,T] (row 0 of the select layer's attention; CLS at token 0).
    #[arg(long)]
    pub attention: PathBuf,
    /// Anchors besides CLS (a multiple of H; 144 → 145 anchors, 256 → 257).
    #[arg(long)]
    pub count: usize,
    /// Where to write `indices` [B,N+1] i64 (and `heads` [B,N+1] i64: the head that chose each, -1 for CLS).
    #[arg(long)]
    pub out: PathBuf,
    /// The image the attention came from, to draw the anchors over (with --png).
    #[arg(long, requires = "png")]
    pub image: Option<PathBuf>,
    /// Where to write the drawing (PNG), anchors coloured by the head that chose them.
    #[arg(long, requires = "image")]
    pub png: Option<PathBuf>,
    /// Which sample of the batch to draw.
    #[arg(long, default_value_t = 0)]
    pub sample: usize,
}

pub fn run(args: AnchorsArgs) -> anyhow::Result<()> {
    let device = Default::default();
    let file = TensorFile::read(&args.attention)?;
    // `cls_attention` [B,H,T]; a full attention map [B,H,T,T] (key `attention`) gives its CLS row.
    let att = match (file.tensors.get("cls_attention"), file.tensors.get("attention")) {
        (Some(a), _) => a,
        (None, Some(a)) => a,
        (None, None) => file.get("cls_attention")?,
    };
    let att = match att.shape.as_slice() {
        [_, _, _] => Tensor::<Flex, 3>::from_data(att.clone(), &device),
        [b, h, t, t2] if t == t2 => {
            Tensor::<Flex, 4>::from_data(att.clone(), &device).narrow(2, 0, 1).reshape([*b, *h, *t])
        }
        other => bail!("{}: `cls_attention` has shape {other:?}, expected [B, H, T] (or a full map [B, H, T, T])", args.attention.display()),
    };
    let [b, h, t] = att.dims();
    let (indices, heads) = kernels::select_anchors_with_heads(att, args.count)
        .with_context(|| format!("{}: cls_attention [{b}, {h}, {t}]", args.attention.display()))?;
    let indices = indices.into_data().convert::<i64>();
    let heads = heads.into_data().convert::<i64>();
    TensorFile::write(&args.out, &[("indices".into(), indices.clone()), ("heads".into(), heads.clone())], &HashMap::new())?;
    println!("anchors:        {} per image ({} heads × {} + CLS)", args.count + 1, h, args.count / h.max(1));
    println!("wrote:          {}", args.out.display());
    if let (Some(image), Some(png)) = (&args.image, &args.png) {
        if args.sample >= b {
            bail!("--sample {} is outside the batch of {b}", args.sample);
        }
        let n = args.count + 1;
        let idx = indices.to_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let hd = heads.to_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let pairs: Vec<(i64, i64)> = (0..n).map(|i| (idx[args.sample * n + i], hd[args.sample * n + i])).collect();
        anchors_png::draw_anchors(image, t, &pairs, png)?;
        println!("drew:           {}", png.display());
    }
    Ok(())
}
