//! Trains one demo tower with the default spec, or with settings overridden from the command line,
//! and prints its held-out measurements (for tuning; `train demo towers` trains the real ones).
//!
//! ```sh
//! cargo run --release -p anchorage-demo --example tower_probe -- vision steps=400 lr=3e-3
//! cargo run --release -p anchorage-demo --example tower_probe -- llm curriculum=none steps=300 batch=16
//! cargo run --release -p anchorage-demo --example tower_probe -- llm steps=2000 corpus_first=0.05
//! ```

use anchorage_data::synth::{train_tokenizer, TokenizerOptions};
use anchorage_data::text::TextTokenizer;
use anchorage_demo::{train_llm, train_vision, LlmSpec, VisionSpec};
use burn::backend::{Autodiff, Flex};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("vision");
    let settings = args[1.min(args.len())..].to_vec();
    let device = Default::default();
    let seed = 0;
    let metrics = if which == "vision" {
        let spec = VisionSpec::with_settings(&settings).expect("vision settings");
        println!("{spec:?}");
        train_vision::<Autodiff<Flex>>(&spec, seed, &device).expect("vision").1
    } else {
        let trained = train_tokenizer(&TokenizerOptions::default()).expect("tokenizer");
        let path = std::env::temp_dir().join(format!("tower-probe-tokenizer-{}.json", std::process::id()));
        std::fs::write(&path, &trained.json).expect("tokenizer file");
        let tok = TextTokenizer::from_file(&path).expect("tokenizer");
        let spec = LlmSpec::with_settings(tok.vocab_size(), &settings).expect("LLM settings");
        println!("{spec:?}");
        train_llm::<Autodiff<Flex>>(&spec, &tok, seed, &device).expect("llm").1
    };
    let (first, last) = metrics.first_last(20);
    println!("seconds {:.1}  loss {first:.3} -> {last:.3}", metrics.seconds);
    for (name, value) in &metrics.metrics {
        println!("{name} {value:.4}");
    }
}
