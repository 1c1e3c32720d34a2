//! JPEG decode speed (and equality) side by side with Pillow: tests/fixtures/data/bench_decode.py
//! makes the files, runs this example and `Image.open(f).convert("RGB")` on them.
//!
//! cargo run --release -p anchorage-data --example bench_decode -- DIR ROUNDS
//! Prints one JSON line: {"files", "best_seconds", "sha256": {file: sha256 of the RGB bytes}}.

use std::path::PathBuf;
use std::time::Instant;

use anchorage_data::image::decode_rgb_bytes;
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 {
        return Err("usage: bench_decode DIR ROUNDS".into());
    }
    let rounds: usize = args[1].parse()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args[0])?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.retain(|f| f.extension().is_some_and(|e| e == "jpg"));
    files.sort();
    // Read once: the timing is the decoder's (Pillow's side also reads from memory).
    let bytes: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let mut best = f64::INFINITY;
    let mut checksum = 0u64;
    for _ in 0..rounds {
        let t = Instant::now();
        for (f, b) in files.iter().zip(&bytes) {
            let img = decode_rgb_bytes(b, f)?;
            checksum += img.data[img.data.len() / 2] as u64;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mut sums = serde_json::Map::new();
    for (f, b) in files.iter().zip(&bytes) {
        let img = decode_rgb_bytes(b, f)?;
        let hex: String = Sha256::digest(&img.data).iter().map(|b| format!("{b:02x}")).collect();
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        sums.insert(name, hex.into());
    }
    let out = serde_json::json!({"files": files.len(), "best_seconds": best, "checksum": checksum, "sha256": sums});
    println!("{out}");
    Ok(())
}
