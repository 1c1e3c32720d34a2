//! `train compare`'s rendering: the tables exactly, and the plots by decoding the PNG and looking
//! for each run's colour where the axis mapping puts it, text where the titles and legend are.

use std::collections::BTreeMap;
use std::path::Path;

use anchorage_eval::compare::{csv_table, markdown_table, plot_png, render_plot, Axis, Plot, RunRow, HEIGHT, WIDTH};
use anchorage_eval::EvalError;
use image::{Rgb, RgbImage};

const BLUE: Rgb<u8> = Rgb([31, 119, 180]); // mlp2x_gelu
const GREEN: Rgb<u8> = Rgb([44, 160, 44]); // resampler
const RED: Rgb<u8> = Rgb([214, 39, 40]); // anchor_former

#[allow(clippy::too_many_arguments)]
fn row(
    name: &str,
    connector: &str,
    compression: &str,
    tokens: f64,
    flops: Option<f64>,
    latency: f64,
    decode: f64,
    train: Option<f64>,
    scores: &[(&str, f64)],
) -> RunRow {
    RunRow {
        name: name.into(),
        connector: connector.into(),
        compression: compression.into(),
        visual_tokens: tokens,
        prefill_flops: flops,
        prefill_latency_s: latency,
        decode_tokens_per_s: decode,
        train_seconds: train,
        scores: scores.iter().map(|&(b, s)| (b.to_string(), s)).collect::<BTreeMap<_, _>>(),
    }
}

/// Three runs, two benchmarks; the second lacks TextVQA, FLOPs and training time, the third's
/// name needs CSV quoting.
fn three_runs() -> Vec<RunRow> {
    vec![
        row(
            "mlp2x_gelu-none",
            "mlp2x_gelu",
            "none",
            576.0,
            Some(8.5e12),
            0.2125,
            31.46,
            Some(19800.0),
            &[("POPE", 85.87), ("TextVQA", 58.21)],
        ),
        row("anchor_former-fastv", "anchor_former", "fastv", 72.5, None, 0.088, 33.0, None, &[("POPE", 84.4)]),
        row(
            "resampler \"q64\", v2",
            "resampler",
            "himap",
            64.0,
            Some(1.72e12),
            0.0805,
            40.0,
            Some(3723.0),
            &[("TextVQA", 50.7), ("POPE", 82.0)],
        ),
    ]
}

#[test]
fn markdown_table_for_three_runs_and_two_benchmarks() {
    let expected = "\
| Run                 | Connector     | Compression | Visual tokens | Prefill FLOPs | Prefill (ms) | Decode (tok/s) | Train time |  POPE | TextVQA |
| :------------------ | :------------ | :---------- | ------------: | ------------: | -----------: | -------------: | ---------: | ----: | ------: |
| mlp2x_gelu-none     | mlp2x_gelu    | none        |           576 |         8.50T |        212.5 |           31.5 |    5:30:00 | 85.87 |   58.21 |
| anchor_former-fastv | anchor_former | fastv       |          72.5 |             — |         88.0 |           33.0 |          — | 84.40 |       — |
| resampler \"q64\", v2 | resampler     | himap       |            64 |         1.72T |         80.5 |           40.0 |    1:02:03 | 82.00 |   50.70 |
";
    assert_eq!(markdown_table(&three_runs()), expected);
}

#[test]
fn csv_table_for_three_runs_and_two_benchmarks() {
    let expected = "run,connector,compression,visual_tokens,prefill_flops,prefill_latency_s,decode_tokens_per_s,train_seconds,POPE,TextVQA\r\n\
mlp2x_gelu-none,mlp2x_gelu,none,576,8500000000000,0.2125,31.46,19800,85.87,58.21\r\n\
anchor_former-fastv,anchor_former,fastv,72.5,,0.088,33,,84.4,\r\n\
\"resampler \"\"q64\"\", v2\",resampler,himap,64,1720000000000,0.0805,40,3723,82,50.7\r\n";
    assert_eq!(csv_table(&three_runs()), expected);
}

#[test]
fn markdown_escapes_pipes() {
    let rows = [row("a|b", "mlp2x_gelu", "none", 1.0, None, 0.1, 1.0, None, &[])];
    assert!(markdown_table(&rows).contains("| a\\|b |"), "{}", markdown_table(&rows));
}

/// Where a value lands on an axis padded by 8 % of the data span on each side (the plot's rule),
/// computed here independently of the library's scale.
fn expected_px(v: f64, values: &[f64], log: bool, from: i64, to: i64) -> f64 {
    let t = |v: f64| if log { v.log10() } else { v };
    let lo = values.iter().map(|&v| t(v)).fold(f64::INFINITY, f64::min);
    let hi = values.iter().map(|&v| t(v)).fold(f64::NEG_INFINITY, f64::max);
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = (lo - pad, hi + pad);
    from as f64 + (t(v) - lo) / (hi - lo) * (to - from) as f64
}

/// Whether a pixel of exactly `colour` lies within `r` pixels of `(x, y)`.
fn colour_near(img: &RgbImage, colour: Rgb<u8>, x: f64, y: f64, r: i64) -> bool {
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    (cy - r..=cy + r).any(|py| {
        (cx - r..=cx + r).any(|px| {
            px >= 0
                && py >= 0
                && (px as u32) < img.width()
                && (py as u32) < img.height()
                && *img.get_pixel(px as u32, py as u32) == colour
        })
    })
}

/// Pixels darker than any grid or frame grey (text, ticks, outlines) inside a box.
fn dark_pixels(img: &RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
        .count()
}

fn decode(path: &Path) -> RgbImage {
    image::open(path).expect("the plot decodes").to_rgb8()
}

#[test]
fn plot_puts_each_connector_colour_where_its_point_belongs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pope-latency.png");
    let rows = three_runs();
    let plot =
        Plot { title: "POPE vs prefill latency".into(), x: Axis::PrefillLatency, bench: "POPE".into(), log_x: false };
    let drawn = plot_png(&path, &plot, &rows).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
    assert_eq!((WIDTH, HEIGHT), (900, 600));
    assert!(drawn.skipped.is_empty());

    let [left, top, right, bottom] = drawn.area;
    let xs: Vec<f64> = rows.iter().map(|r| r.prefill_latency_s).collect();
    let ys: Vec<f64> = rows.iter().map(|r| r.scores["POPE"]).collect();
    for (r, colour) in rows.iter().zip([BLUE, RED, GREEN]) {
        let x = expected_px(r.prefill_latency_s, &xs, false, left, right - 1);
        let y = expected_px(r.scores["POPE"], &ys, false, bottom - 1, top);
        assert!(colour_near(&img, colour, x, y, 2), "{}: no {colour:?} near ({x:.1}, {y:.1})", r.name);
        let (px, py) = drawn.points.iter().find(|(n, _)| n == &r.name).unwrap().1;
        assert!((px as f64 - x).abs() <= 1.0 && (py as f64 - y).abs() <= 1.0, "{}: reported ({px}, {py})", r.name);
    }

    // Title above the data, x-axis title below the tick labels, y-axis title left of them, legend right.
    let (right, bottom, top) = (right as u32, bottom as u32, top as u32);
    assert!(dark_pixels(&img, 0, 0, WIDTH, top - 10) > 100, "title");
    assert!(dark_pixels(&img, left as u32, bottom + 26, right, HEIGHT) > 100, "x-axis title");
    assert!(dark_pixels(&img, 0, top, 32, bottom) > 100, "y-axis title");
    assert!(dark_pixels(&img, right + 20, top + 4, WIDTH - 10, top + 28) > 30, "legend heading");
    assert!(dark_pixels(&img, left as u32 - 60, top, left as u32 - 8, bottom) > 30, "y tick labels");
}

#[test]
fn log_axis_maps_in_log_space() {
    let rows = three_runs();
    let drawn = render_plot(&Plot::accuracy_vs_tokens("POPE"), &rows).unwrap();
    assert!(drawn.log_x);
    let [left, _, right, _] = drawn.area;
    let xs: Vec<f64> = rows.iter().map(|r| r.visual_tokens).collect();
    for (r, colour) in rows.iter().zip([BLUE, RED, GREEN]) {
        let x = expected_px(r.visual_tokens, &xs, true, left, right - 1);
        let (px, py) = drawn.points.iter().find(|(n, _)| n == &r.name).unwrap().1;
        assert!((px as f64 - x).abs() <= 1.0, "{}: x {px}, expected {x:.1}", r.name);
        assert!(colour_near(&drawn.image, colour, px as f64, py as f64, 1), "{}", r.name);
    }
}

#[test]
fn moving_a_point_changes_the_picture() {
    let plot = Plot::accuracy_vs_latency("POPE");
    let mut rows = three_runs();
    let before = render_plot(&plot, &rows).unwrap().image;
    rows[1].scores.insert("POPE".into(), 83.1);
    let after = render_plot(&plot, &rows).unwrap().image;
    assert_ne!(before.as_raw(), after.as_raw());
    assert_eq!(render_plot(&plot, &rows).unwrap().image.as_raw(), after.as_raw(), "drawing is deterministic");
}

#[test]
fn runs_without_the_values_are_left_out_and_named() {
    let mut rows = three_runs();
    rows.push(row("broken", "mlp2x_gelu", "act", f64::NAN, None, 0.1, 1.0, None, &[("TextVQA", 50.0)]));
    rows.push(row("nan-score", "mlp2x_gelu", "act", 10.0, None, 0.1, 1.0, None, &[("TextVQA", f64::NAN)]));
    let drawn = render_plot(&Plot::accuracy_vs_tokens("TextVQA"), &rows).unwrap();
    let skipped: Vec<&str> = drawn.skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(skipped, ["anchor_former-fastv", "broken", "nan-score"]);
    assert_eq!(drawn.points.len(), 2);
}

#[test]
fn degenerate_inputs_draw_or_say_why_not() {
    let one = vec![row("solo", "resampler", "none", 64.0, None, 0.1, 1.0, None, &[("GQA", 60.0)])];
    let drawn = render_plot(&Plot::accuracy_vs_tokens("GQA"), &one).unwrap();
    let [left, top, right, bottom] = drawn.area;
    let (x, y) = drawn.points[0].1;
    assert!(
        (x - (left + right - 1) / 2).abs() <= 1 && (y - (top + bottom - 1) / 2).abs() <= 1,
        "a lone point is centred: ({x}, {y})"
    );
    assert!(colour_near(&drawn.image, GREEN, x as f64, y as f64, 0));

    // Same x and y for every run: the range is padded, the points are drawn.
    let same: Vec<RunRow> = ["mlp2x_gelu", "c_abstractor"]
        .iter()
        .map(|c| row(c, c, "none", 0.0, None, 0.0, 1.0, None, &[("MME", 0.0)]))
        .collect();
    assert_eq!(render_plot(&Plot::accuracy_vs_latency("MME"), &same).unwrap().points.len(), 2);

    // A log axis with a zero x falls back to linear.
    let drawn = render_plot(&Plot::accuracy_vs_tokens("MME"), &same).unwrap();
    assert!(!drawn.log_x);

    // No rows, no run with the benchmark, no run with the x value: errors that say so.
    let err = render_plot(&Plot::accuracy_vs_tokens("GQA"), &[]).err().expect("no rows is an error");
    assert!(matches!(&err, EvalError::Compare { message } if message.contains("no runs")), "{err}");
    let err =
        render_plot(&Plot::accuracy_vs_tokens("VQAv2"), &one).err().expect("no run with the benchmark is an error");
    assert!(
        matches!(&err, EvalError::Compare { message } if message.contains("VQAv2") && message.contains("solo")),
        "{err}"
    );
    let flops = Plot { title: "GQA vs FLOPs".into(), x: Axis::PrefillFlops, bench: "GQA".into(), log_x: true };
    assert!(matches!(render_plot(&flops, &one), Err(EvalError::Compare { .. })));
}

#[test]
fn awkward_names_and_many_runs_still_draw() {
    let long = "a-very-long-run-name-that-goes-on-and-on-and-on-and-on-and-on";
    let mut rows: Vec<RunRow> = (0..40)
        .map(|i| {
            row(
                &format!("run-{i}-é"),
                &format!("connector-{}", i % 13),
                ["none", "fastv", "himap", "act", "other", "more", "most"][i % 7],
                10.0 + i as f64,
                Some(1e9 * i as f64),
                0.01 * i as f64,
                1.0,
                None,
                &[("SEED", 40.0 + (i % 5) as f64)],
            )
        })
        .collect();
    rows.push(row(long, long, long, 5.0, None, 0.5, 1.0, None, &[]));
    let plot = Plot { title: long.repeat(3), x: Axis::VisualTokens, bench: long.into(), log_x: false };
    assert!(matches!(render_plot(&plot, &rows), Err(EvalError::Compare { .. })));
    let plot = Plot { title: long.repeat(3), x: Axis::PrefillFlops, bench: "SEED".into(), log_x: true };
    let drawn = render_plot(&plot, &rows).unwrap();
    assert!(!drawn.log_x, "run-0 has 0 FLOPs");
    assert_eq!(drawn.points.len(), 40);
}
