//! Mutation fuzzing of every parser that reads user files: recipes, LLaVA records (and their
//! tokenisation), safetensors headers and files, PyTorch pickles and archives, and image decoding.
//! Valid seeds from the repository are mutated deterministically (bit flips, interesting bytes,
//! truncation, chunk duplication and insertion); each parser must return `Ok` or `Err`, never panic.
//! An abort (allocation failure, stack overflow) kills the test binary, which fails the test too.
//!
//! Bounded in time: `ANCHORAGE_FUZZ_SECS` seconds per target (default 2, what CI runs); set it
//! higher for a longer campaign. The mutation stream is seeded (`ANCHORAGE_FUZZ_SEED`, default 1),
//! so a failure names the seed and the iteration that reproduces it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// xorshift64*: a small deterministic stream of mutation choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four mutations of `seed`.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(6) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = [0x00, 0xFF, 0x7F, 0x80, b'"', b'{', b'[', b'9'][rng.below(8)];
            }
            2 => data.truncate(rng.below(len + 1)),
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let chunk = data[start..end].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            4 => {
                let at = rng.below(len + 1);
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            _ if len >= 4 => {
                // A length-like field: four bytes set to a large little-endian number.
                let at = rng.below(len - 3);
                data[at..at + 4].copy_from_slice(&(rng.next() as u32 | 0x4000_0000).to_le_bytes());
            }
            _ => {}
        }
    }
    data
}

fn budget() -> Duration {
    let secs = std::env::var("ANCHORAGE_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

/// Runs `target` on mutations of `seeds` for the time budget; panics name the seed file, the
/// stream seed and the iteration.
fn fuzz(name: &str, seeds: &[PathBuf], mut target: impl FnMut(&[u8])) -> usize {
    let stream = std::env::var("ANCHORAGE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1u64);
    let seeds: Vec<(PathBuf, Vec<u8>)> = seeds.iter().map(|p| (p.clone(), std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))).collect();
    let mut rng = Rng(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let deadline = Instant::now() + budget();
    let mut iterations = 0;
    // The seeds themselves first, then mutations.
    for (path, bytes) in &seeds {
        let ok = catch_unwind(AssertUnwindSafe(|| target(bytes)));
        assert!(ok.is_ok(), "{name}: the unmutated seed {} panicked", path.display());
    }
    while Instant::now() < deadline {
        let (path, seed) = &seeds[rng.below(seeds.len())];
        let input = mutate(seed, &mut rng);
        let started = Instant::now();
        let ok = catch_unwind(AssertUnwindSafe(|| target(&input)));
        if started.elapsed() > Duration::from_secs(1) {
            let dump = std::env::temp_dir().join(format!("anchorage-fuzz-slow-{name}-{iterations}"));
            let _ = std::fs::write(&dump, &input);
            eprintln!("{name}: iteration {iterations} took {:.1} s (input of {} bytes from {} in {})", started.elapsed().as_secs_f64(), input.len(), path.display(), dump.display());
        }
        assert!(ok.is_ok(), "{name}: a mutation of {} panicked (ANCHORAGE_FUZZ_SEED={stream}, iteration {iterations})", path.display());
        iterations += 1;
    }
    assert!(iterations > 0, "{name}: no iteration ran");
    iterations
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &str, ext: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| ext.contains(&e)))
        .collect();
    out.sort();
    out
}

/// Writes `bytes` to `path` (for parsers that read files).
fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn recipes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recipe.toml");
    let mut seeds = files("recipes/tiny", &["toml"]);
    seeds.extend(files("recipes/pretrain", &["toml"]));
    let n = fuzz("recipes", &seeds, |bytes| {
        write(&path, bytes);
        let _ = anchorage_train::recipe::load_recipe(&path, &[]).map(|r| anchorage_train::Plan::new(&r));
    });
    eprintln!("recipes: {n} mutations");
}

#[test]
fn llava_records_and_their_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.json");
    let data = root().join("data-manifests/tiny/data");
    let tokenizer = anchorage_data::text::TextTokenizer::from_file(&data.join("tokenizer.json")).unwrap();
    let seeds = [data.join("ift.json"), data.join("pretrain.json")];
    let n = fuzz("llava records", &seeds, |bytes| {
        write(&path, bytes);
        let Ok(records) = anchorage_data::text::read_records(&path) else { return };
        for record in records.into_iter().flatten().take(8) {
            for template in [anchorage_data::Template::Plain, anchorage_data::Template::VicunaV1, anchorage_data::Template::Chatml] {
                let _ = anchorage_data::text::validate_structure(&record, template);
                let _ = anchorage_data::text::tokenize_record(&record, template, &tokenizer, 256);
            }
        }
    });
    eprintln!("llava records: {n} mutations");
}

#[test]
fn safetensors_headers_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut seeds = files("tests/fixtures/connectors", &["safetensors"]);
    seeds.truncate(6);
    let n = fuzz("safetensors", &seeds, |bytes| {
        let _ = anchorage_tensors::parse_header(&path, bytes);
        write(&path, bytes);
        if let Ok(file) = anchorage_tensors::SafetensorsFile::open(&path) {
            let _ = file.read_all();
        }
    });
    eprintln!("safetensors: {n} mutations");
}

#[test]
fn pytorch_pickles_and_archives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.bin");
    let fixtures = root().join("crates/anchorage-tensors/tests/fixtures");
    let seeds = [fixtures.join("state_zip.bin"), fixtures.join("state_legacy.bin"), root().join("tests/fixtures/connectors/mm_projector.bin")];
    let n = fuzz("pytorch", &seeds, |bytes| {
        let _ = anchorage_tensors::pickle_scan::scan_pickle(bytes);
        write(&path, bytes);
        if let Ok(file) = anchorage_tensors::PytorchFile::open(&path) {
            let _ = file.read_all();
        }
    });
    eprintln!("pytorch: {n} mutations");
}

#[test]
fn image_decoding() {
    let mut seeds = files("tests/fixtures/data/decode", &["png", "jpg"]);
    seeds.truncate(12);
    let label = Path::new("fuzz-input");
    let n = fuzz("image decoding", &seeds, |bytes| {
        let _ = anchorage_data::image::decode_rgb_bytes(bytes, label);
    });
    eprintln!("image decoding: {n} mutations");
}
