//! The anchors PNGs of the demo: for a few eval images, the Anchor Former run's tower computes the
//! select layer's CLS attention, AcFormer's selection picks the anchors, and they are drawn over
//! the image coloured by the head that chose them (as `train inspect anchors --png` draws them).

use std::path::{Path, PathBuf};

use anchorage_connectors::{anchors_png, kernels, ConnectorConfig};
use anchorage_model::stack_images;
use anchorage_model::ImageInput;
use anyhow::{bail, Context};

/// Draws the anchors of the first `n` eval images into `out`; returns the folder.
pub fn draw(run: &Path, world: &Path, out: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let m = crate::cli::run_model::open::<crate::backend::Flex>(run, &[], &Default::default())?;
    let ConnectorConfig::AnchorFormer(config) = &m.model.connector_config else { bail!("{}: not an anchor_former run", run.display()) };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for i in 0..n {
        let image = world.join("images/eval").join(format!("{i:06}.png"));
        let prompt = m.prompt("", Some(&image))?;
        let input = ImageInput { input_ids: &prompt.input_ids, pixels: prompt.pixels.as_ref() };
        let (pixels, _) = stack_images::<crate::backend::Flex>(&[input], m.model.image_size, &m.model.device)?;
        let (_, cls) = m.model.encode_images(pixels)?;
        let cls = cls.context("the tower returned no CLS attention")?;
        let tokens = cls.dims()[2];
        let (indices, heads) = kernels::select_anchors_with_heads(cls, config.anchors - 1)?;
        let idx = indices.into_data().convert::<i64>().to_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let hd = heads.into_data().convert::<i64>().to_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let pairs: Vec<(i64, i64)> = idx.into_iter().zip(hd).collect();
        anchors_png::draw_anchors(&image, tokens, &pairs, &out.join(format!("{i:06}.png")))?;
    }
    Ok(out.to_path_buf())
}
