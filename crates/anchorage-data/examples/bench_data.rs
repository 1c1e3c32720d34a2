//! Single-thread throughput of the data pipeline, for tests/fixtures/data/bench_data.py (which
//! runs the PIL/LLaVA side on the same inputs and prints the ratios).
//!
//! cargo run --release -p anchorage-data --example bench_data -- IMAGES_DIR ASPECT RECORDS.json TOKENIZER.json TEMPLATE REPEAT
//! Prints one JSON line: {"images", "image_seconds", "samples", "token_seconds"}.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anchorage_data::image::{load_pixel_values, ClipImageProcessor};
use anchorage_data::text::{read_records, tokenize_record, TextTokenizer};
use anchorage_data::{Aspect, Template};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 6 {
        return Err("usage: bench_data IMAGES_DIR square|pad RECORDS.json TOKENIZER.json plain|vicuna_v1 REPEAT".into());
    }
    let aspect = if args[1] == "pad" { Aspect::Pad } else { Aspect::Square };
    let template = if args[4] == "plain" { Template::Plain } else { Template::VicunaV1 };
    let repeat: usize = args[5].parse()?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(&args[0])?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let p = ClipImageProcessor::clip_vit_l14_336();
    // Warm-up (page cache, allocator), then the timed pass.
    for f in files.iter().take(2) {
        load_pixel_values(f, aspect, &p)?;
    }
    let t = Instant::now();
    let mut checksum = 0f64;
    for f in &files {
        let px = load_pixel_values(f, aspect, &p)?;
        checksum += px.data[px.data.len() / 2] as f64;
    }
    let image_seconds = t.elapsed().as_secs_f64();
    // Where the time goes: decoding alone.
    let t = Instant::now();
    for f in &files {
        let img = anchorage_data::image::decode_rgb(f)?;
        checksum += img.data[0] as f64;
    }
    let decode_seconds = t.elapsed().as_secs_f64();
    if std::env::var_os("BENCH_STAGES").is_some() {
        let img = anchorage_data::image::decode_rgb(&files[0])?;
        let (w, h) = anchorage_data::image::resize_output_size(img.width, img.height, 336);
        let t = Instant::now();
        for _ in 0..20 {
            let r = anchorage_data::image::resize_bicubic(&img, w, h);
            checksum += r.data[0] as f64;
        }
        eprintln!("resize {}x{} -> {w}x{h}: {:.2} ms", img.width, img.height, t.elapsed().as_secs_f64() * 50.0);
        let r = anchorage_data::image::resize_bicubic(&img, w, h);
        let t = Instant::now();
        for _ in 0..20 {
            let c = anchorage_data::image::center_crop(&r, 336);
            let px = p.normalize(&c);
            checksum += px.data[0] as f64;
        }
        eprintln!("crop+normalize: {:.2} ms", t.elapsed().as_secs_f64() * 50.0);
    }

    let tok = TextTokenizer::from_file(Path::new(&args[3]))?;
    let records: Vec<_> = read_records(Path::new(&args[2]))?.into_iter().filter_map(Result::ok).collect();
    let t = Instant::now();
    let mut n = 0usize;
    for _ in 0..repeat {
        for r in &records {
            if let Ok(s) = tokenize_record(r, template, &tok, 2048) {
                n += 1;
                checksum += s.input_ids.len() as f64;
            }
        }
    }
    let token_seconds = t.elapsed().as_secs_f64();
    println!(
        "{{\"images\": {}, \"image_seconds\": {image_seconds}, \"decode_seconds\": {decode_seconds}, \"samples\": {n}, \"token_seconds\": {token_seconds}, \"checksum\": {checksum}}}",
        files.len()
    );
    Ok(())
}
