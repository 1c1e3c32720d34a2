//! Trains one demo tower with the default spec, or with settings overridden from the command line,
//! and prints its held-out measurements (for tuning; `train demo towers` trains the real ones).
//!
//! ```sh
//! cargo run --release -p anchorage-demo --example tower_probe -- vision steps=400 lr=3e-3
//! cargo run --release -p anchorage-demo --example tower_probe -- llm steps=300 batch=16
//! cargo run --release -p anchorage-demo --example tower_probe -- llm curriculum=presence steps=2000 corpus_first=0.05
//! ```

use anchorage_data::synth::{train_tokenizer, TokenizerOptions};
use anchorage_data::text::TextTokenizer;
use anchorage_demo::{train_llm, train_vision, LlmSpec, TrainSpec, VisionSpec};
use burn::backend::{Autodiff, Flex};

fn set(train: &mut TrainSpec, key: &str, value: &str) -> bool {
    match key {
        "steps" => train.steps = value.parse().expect("steps"),
        "batch" => train.batch = value.parse().expect("batch"),
        "lr" => train.lr = value.parse().expect("lr"),
        "warmup" => train.warmup = value.parse().expect("warmup"),
        "slices" => train.slices = value.parse().expect("slices"),
        _ => return false,
    }
    true
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("vision");
    let pairs: Vec<(&str, &str)> = args.iter().skip(1).filter_map(|a| a.split_once('=')).collect();
    let device = Default::default();
    let seed = 0;
    let metrics = if which == "vision" {
        let mut spec = VisionSpec::default();
        for (k, v) in pairs {
            if !set(&mut spec.train, k, v) {
                match k {
                    "layers" => spec.config.num_hidden_layers = v.parse().expect("layers"),
                    "width" => spec.config.hidden_size = v.parse().expect("width"),
                    "mlp" => spec.config.intermediate_size = v.parse().expect("mlp"),
                    "heads" => spec.config.num_attention_heads = v.parse().expect("heads"),
                    "patch" => spec.config.patch_size = v.parse().expect("patch"),
                    _ => panic!("unknown setting {k}"),
                }
            }
        }
        println!("{spec:?}");
        train_vision::<Autodiff<Flex>>(&spec, seed, &device).expect("vision").1
    } else {
        let trained = train_tokenizer(&TokenizerOptions::default()).expect("tokenizer");
        let path = std::env::temp_dir().join(format!("tower-probe-tokenizer-{}.json", std::process::id()));
        std::fs::write(&path, &trained.json).expect("tokenizer file");
        let tok = TextTokenizer::from_file(&path).expect("tokenizer");
        // `curriculum=presence` first: the other settings then override its values.
        let mut spec = if pairs.contains(&("curriculum", "presence")) {
            LlmSpec::with_presence_curriculum(tok.vocab_size())
        } else {
            LlmSpec::for_vocab(tok.vocab_size())
        };
        for (k, v) in pairs {
            if !set(&mut spec.train, k, v) {
                match k {
                    "layers" => spec.config.num_hidden_layers = v.parse().expect("layers"),
                    "curriculum" => assert!(v == "presence", "curriculum=presence is the one curriculum"),
                    "corpus_first" => spec.curriculum.corpus_first = v.parse().expect("corpus_first"),
                    "matching" => spec.curriculum.matching = v.parse().expect("matching"),
                    "negation" => spec.curriculum.negation = v.parse().expect("negation"),
                    "drills_first" => spec.curriculum.drills_first = v.parse().expect("drills_first"),
                    "drill_share" => spec.curriculum.drill_share = v.parse().expect("drill_share"),
                    _ => panic!("unknown setting {k}"),
                }
            }
        }
        println!("{spec:?}");
        train_llm::<Autodiff<Flex>>(&spec, &tok, seed, &device).expect("llm").1
    };
    let (first, last) = metrics.first_last(20);
    println!("seconds {:.1}  loss {first:.3} -> {last:.3}", metrics.seconds);
    for (name, value) in &metrics.metrics {
        println!("{name} {value:.4}");
    }
}
