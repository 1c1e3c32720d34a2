//! Our learning-rate schedules equal transformers' (fixture from tests/fixtures/schedule/generate.py).

use anchorage_train::recipe::Schedule;
use anchorage_train::schedule::LrSchedule;

#[test]
fn schedules_match_transformers() {
    let text = std::fs::read_to_string("tests/fixtures/schedule/transformers_schedules.json").unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for case in cases {
        let kind = match case["schedule"].as_str().unwrap() {
            "cosine" => Schedule::Cosine,
            "linear" => Schedule::Linear,
            "constant" => Schedule::Constant,
            other => panic!("unknown schedule {other}"),
        };
        let schedule = LrSchedule {
            kind,
            base: case["base"].as_f64().unwrap(),
            warmup_steps: case["warmup"].as_u64().unwrap(),
            total_steps: case["total"].as_u64().unwrap(),
        };
        let steps = case["steps"].as_array().unwrap();
        let lrs = case["lrs"].as_array().unwrap();
        for (step, lr) in steps.iter().zip(lrs) {
            let (step, want) = (step.as_u64().unwrap(), lr.as_f64().unwrap());
            let got = schedule.lr(step);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1e-6),
                "{kind:?} total {} warmup {} step {step}: ours {got}, transformers {want}",
                schedule.total_steps,
                schedule.warmup_steps
            );
        }
    }
}
