//! The `[compression]` table of a recipe is [`CompressionPolicy`] itself: tagged by `method`
//! (`none`, `act`, `fastv`, `himap`), every key optional with the defaults the crate documents,
//! unknown keys and values refused with the allowed ones named, written back as it was read; its
//! values are checked here, once ([`CompressionPolicy::validate`], then `check` against a model).

use anchorage_compress::{ActConfig, ActSelection, CompressionPolicy, FastVConfig, FastVRule, HimapConfig};

#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct Wrap {
    #[serde(default)]
    compression: CompressionPolicy,
}

fn parse(table: &str) -> Result<CompressionPolicy, String> {
    toml::from_str::<Wrap>(&format!("compression = {table}")).map(|w| w.compression).map_err(|e| e.to_string())
}

#[test]
fn every_method_parses_with_its_defaults() {
    assert_eq!(toml::from_str::<Wrap>("").unwrap().compression, CompressionPolicy::None);
    assert_eq!(parse(r#"{ method = "none" }"#).unwrap(), CompressionPolicy::None);
    let act = ActConfig { coverage: 0.7, keep_ratios: vec![0.6, 0.4, 0.2], selection: ActSelection::Attention };
    assert_eq!(parse(r#"{ method = "act" }"#).unwrap(), CompressionPolicy::Act(act));
    let fastv = FastVConfig { layer: 2, keep_ratio: 0.5, rule: FastVRule::LastToken };
    assert_eq!(parse(r#"{ method = "fastv" }"#).unwrap(), CompressionPolicy::FastV(fastv));
    let himap = HimapConfig { shallow_layer: 2, shallow_keep_ratio: 0.5, deep_layer: 8, deep_keep_ratio: 0.125 };
    assert_eq!(parse(r#"{ method = "himap" }"#).unwrap(), CompressionPolicy::Himap(himap));
    let set = parse(r#"{ method = "act", coverage = 0.5, keep_ratios = [0.5], selection = "avg_pool" }"#).unwrap();
    assert_eq!(set, CompressionPolicy::Act(ActConfig { coverage: 0.5, keep_ratios: vec![0.5], selection: ActSelection::AvgPool }));
    let set = parse(r#"{ method = "fastv", layer = 3, rule = "average_received" }"#).unwrap();
    assert_eq!(set, CompressionPolicy::FastV(FastVConfig { layer: 3, keep_ratio: 0.5, rule: FastVRule::AverageReceived }));
    let set = parse(r#"{ method = "himap", deep_layer = 5, shallow_keep_ratio = 1 }"#).unwrap();
    assert_eq!(set, CompressionPolicy::Himap(HimapConfig { deep_layer: 5, shallow_keep_ratio: 1.0, ..HimapConfig::default() }));
}

#[test]
fn unknown_methods_keys_and_values_name_what_is_allowed() {
    let err = parse(r#"{ method = "fast_v" }"#).unwrap_err();
    assert!(["none", "act", "fastv", "himap"].iter().all(|m| err.contains(&format!("`{m}`"))), "{err}");
    let err = parse(r#"{ method = "fastv", ratio = 0.5 }"#).unwrap_err();
    assert!(err.contains("unknown field `ratio`") && err.contains("keep_ratio"), "{err}");
    let err = parse(r#"{ method = "act", selection = "avgpool" }"#).unwrap_err();
    assert!(["attention", "avg_pool", "uniform_windows"].iter().all(|s| err.contains(s)), "{err}");
    let err = parse(r#"{ method = "fastv", rule = "last" }"#).unwrap_err();
    assert!(err.contains("last_token") && err.contains("average_received"), "{err}");
    let err = parse(r#"{ layer = 2 }"#).unwrap_err();
    assert!(err.contains("missing field `method`"), "{err}");
}

#[test]
fn a_parsed_policy_writes_back_the_same_table() {
    for table in [
        r#"{ method = "none" }"#,
        r#"{ method = "act", coverage = 0.5, keep_ratios = [0.5, 0.25], selection = "uniform_windows" }"#,
        r#"{ method = "fastv", layer = 1, keep_ratio = 0.25, rule = "last_token" }"#,
        r#"{ method = "himap", shallow_layer = 1, shallow_keep_ratio = 0.5, deep_layer = 3, deep_keep_ratio = 0.25 }"#,
    ] {
        let policy = parse(table).unwrap();
        let text = toml::to_string(&Wrap { compression: policy.clone() }).unwrap();
        assert!(text.contains(&format!("method = \"{}\"", policy.name())), "{text}");
        assert_eq!(toml::from_str::<Wrap>(&text).unwrap().compression, policy, "{text}");
    }
}

#[test]
fn values_are_checked_once_in_compress() {
    let key = |table: &str| match parse(table).unwrap().validate() {
        Err(anchorage_compress::CompressError::Config { key, .. }) => key,
        other => panic!("{table}: {other:?}"),
    };
    assert_eq!(key(r#"{ method = "act", keep_ratios = [] }"#), "keep_ratios");
    assert_eq!(key(r#"{ method = "act", coverage = 1.5 }"#), "coverage");
    assert_eq!(key(r#"{ method = "fastv", layer = 0 }"#), "layer");
    assert_eq!(key(r#"{ method = "fastv", keep_ratio = 0 }"#), "keep_ratio");
    assert_eq!(key(r#"{ method = "himap", deep_layer = 2 }"#), "deep_layer");
    assert_eq!(key(r#"{ method = "himap", deep_keep_ratio = 0.75 }"#), "deep_keep_ratio");
    // What only the model can say waits for the layer count: K = 40 is fine until a 32-layer LLM.
    let deep = parse(r#"{ method = "fastv", layer = 40 }"#).unwrap();
    assert!(deep.validate().is_ok());
    assert!(deep.hooks(32).is_err() && deep.hooks(48).is_ok());
}
