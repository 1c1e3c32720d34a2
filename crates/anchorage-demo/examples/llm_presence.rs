//! Reads a trained demo LLM folder and prints its presence accuracy by what the question names
//! (a colour alone, a shape alone, both), from captions and from word grids.
//!
//! ```sh
//! cargo run --release -p anchorage-demo --example llm_presence -- demo/towers/llm [N]
//! ```

use anchorage_data::text::TextTokenizer;
use anchorage_demo::llm::presence_accuracy;
use anchorage_llm::load_llm;
use burn::backend::Flex;
use burn::tensor::DType;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.first().expect("the LLM folder"));
    let n: usize = args.get(1).map(|s| s.parse().expect("N")).unwrap_or(300);
    let device = Default::default();
    let llm = load_llm::<Flex>(&dir, DType::F32, &device).expect("LLM");
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).expect("tokenizer");
    for (name, grid) in [("captions", 0.0), ("grids", 1.0)] {
        let [c, s, b] = presence_accuracy(&llm, &tok, 0, n, 512, grid, &device).expect("accuracy");
        println!("{name}: colour alone {:.1}%  shape alone {:.1}%  both {:.1}%", c * 100.0, s * 100.0, b * 100.0);
    }
}
