//! An AnyRes data set on the tiny data (data-manifests/tiny/data): each image sample carries the
//! base view as its pixels (what the single-view `anyres` preprocessing gives too) and the grid
//! tiles of `AnyResProcessor`, and over-length is judged on the packed visual-token count.

use std::path::{Path, PathBuf};

use anchorage_data::image::{decode_rgb, preprocess_rgb, TilePacking};
use anchorage_data::{
    AnyResData, AnyResProcessor, Aspect, ClipImageProcessor, DatasetConfig, FaultReason, LlavaDataset, OverLength, Template,
};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests/tiny/data")
}

fn processor() -> AnyResProcessor {
    AnyResProcessor::new(ClipImageProcessor::with_size(16), vec![(16, 32), (32, 16), (32, 32)]).unwrap()
}

fn dataset(max_len: usize, packing: TilePacking) -> LlavaDataset {
    LlavaDataset::open(DatasetConfig {
        annotations: data().join("pretrain.json"),
        image_root: data().join("images"),
        tokenizer: data().join("tokenizer.json"),
        template: Template::Plain,
        aspect: Aspect::AnyRes,
        processor: ClipImageProcessor::with_size(16),
        max_len,
        image_tokens: 16,
        over_length: OverLength::Skip,
        anyres: Some(AnyResData { processor: processor(), packing }),
    })
    .unwrap()
}

#[test]
fn samples_carry_the_base_view_and_the_grid_tiles() {
    let packing = TilePacking::Spatial { side: 4 };
    let ds = dataset(4096, packing);
    let mut grids = std::collections::BTreeSet::new();
    let mut checked = 0;
    let records: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data().join("pretrain.json")).unwrap()).unwrap();
    for i in 0..ds.len() {
        let Ok(s) = ds.get(i) else { continue };
        let (Some(base), Some(views)) = (&s.pixels, &s.anyres) else { continue };
        let path = data().join("images").join(records[i]["image"].as_str().unwrap());
        let want = processor().preprocess_file(&path).unwrap();
        assert_eq!(base, &want.tiles[0], "{}", s.id);
        assert_eq!(views.tiles, want.tiles[1..].to_vec(), "{}", s.id);
        assert_eq!(views.image_size, (want.image_size.0 as usize, want.image_size.1 as usize));
        assert_eq!(views.tiles.len(), views.grid.0 * views.grid.1);
        // The single-view path with `anyres` gives the same base view.
        assert_eq!(&preprocess_rgb(&decode_rgb(&path).unwrap(), Aspect::AnyRes, &ClipImageProcessor::with_size(16)), base);
        grids.insert(views.grid);
        checked += 1;
    }
    assert!(checked > 10, "{checked}");
    assert!(grids.len() > 1, "the tiny images should pick several grids: {grids:?}");
}

#[test]
fn over_length_counts_the_packed_visual_tokens() {
    let packing = TilePacking::Spatial { side: 4 };
    let fits = dataset(4096, packing);
    // Each image sample's length after splicing its packed rows (one placeholder each).
    let spliced: Vec<(usize, usize)> = (0..fits.len())
        .filter_map(|i| fits.get(i).ok().and_then(|s| s.anyres.as_ref().map(|v| (i, s.input_ids.len() - 1 + packing.packed_tokens(v.grid, v.image_size)))))
        .collect();
    let mut lengths: Vec<usize> = spliced.iter().map(|&(_, n)| n).collect();
    lengths.sort();
    let max_len = lengths[lengths.len() / 2];
    // Some samples would fit with 16 tokens per image (the base view alone) but not packed.
    assert!(spliced.iter().any(|&(i, n)| fits.get(i).unwrap().input_ids.len() - 1 + 16 <= max_len && n > max_len));
    let ds = dataset(max_len, packing);
    for &(i, n) in &spliced {
        match ds.get(i) {
            Ok(_) => assert!(n <= max_len, "sample {i}: {n} tokens kept at max length {max_len}"),
            Err((id, f)) => {
                assert!(n > max_len, "{id}: {n} tokens refused at max length {max_len}: {f:?}");
                assert_eq!(f.reason, FaultReason::OverLength, "{id}");
                assert!(f.detail.contains(&format!("{n} tokens")), "{}", f.detail);
            }
        }
    }
    assert!(spliced.iter().any(|&(_, n)| n > max_len) && spliced.iter().any(|&(_, n)| n <= max_len));
}
