//! LLaVA's modality-length-grouped sampler: our implementation replays the permutations that the
//! real functions drew (tests/fixtures/data/make_sampler_fixtures.py) and must give the same order.

use std::path::Path;

use anchorage_data::modality_length_grouped_with;
use serde_json::Value;

#[test]
fn orders_equal_llava_given_the_same_permutations() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data/sampler_golden.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 7);
    for (i, c) in cases.iter().enumerate() {
        let lengths: Vec<i64> = serde_json::from_value(c["lengths"].clone()).unwrap();
        let perms: Vec<Vec<usize>> = serde_json::from_value(c["perms"].clone()).unwrap();
        let want: Vec<usize> = serde_json::from_value(c["order"].clone()).unwrap();
        let batch = c["batch_size"].as_u64().unwrap() as usize;
        let world = c["world"].as_u64().unwrap() as usize;
        let mut calls = perms.into_iter();
        let mut perm = |n: usize| {
            let p = calls.next().expect("LLaVA drew fewer permutations");
            assert_eq!(p.len(), n, "case {i}: permutation size");
            p
        };
        let got = modality_length_grouped_with(&lengths, batch, world, &mut perm);
        assert_eq!(got, want, "case {i}");
        assert!(calls.next().is_none(), "case {i}: LLaVA drew more permutations");
    }
}
