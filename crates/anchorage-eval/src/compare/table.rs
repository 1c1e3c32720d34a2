//! The comparison as a table: one row per run, the cost columns, then one column per benchmark
//! (the union over runs, sorted by name). Markdown for people, CSV (RFC 4180) for spreadsheets.

use std::collections::BTreeSet;

use super::RunRow;

/// What a Markdown cell shows where a run lacks the value.
const MISSING: &str = "—";

/// Benchmarks any row has a score for, sorted.
pub fn benchmarks(rows: &[RunRow]) -> Vec<String> {
    let names: BTreeSet<&String> = rows.iter().flat_map(|r| r.scores.keys()).collect();
    names.into_iter().cloned().collect()
}

/// The Markdown table: text columns left aligned, numbers right aligned, padded so the source
/// reads as a table too. Latency is shown in milliseconds, FLOPs with an SI prefix, training time
/// as `h:mm:ss`, scores with two decimals; `—` where a run lacks a value.
pub fn markdown_table(rows: &[RunRow]) -> String {
    let benches = benchmarks(rows);
    let mut header: Vec<String> = [
        "Run",
        "Connector",
        "Compression",
        "Visual tokens",
        "Prefill FLOPs",
        "Prefill (ms)",
        "Decode (tok/s)",
        "Train time",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(benches.iter().map(|b| markdown_cell(b)));
    let text_columns = 3;

    let body: Vec<Vec<String>> = rows.iter().map(|r| markdown_row(r, &benches)).collect();
    // At least three columns wide: a rule cell needs a dash besides its colon.
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count().max(3)).collect();
    for line in &body {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    push_markdown_line(&mut out, &header, &widths, text_columns);
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(
            |(i, &w)| {
                if i < text_columns {
                    format!(":{}", "-".repeat(w - 1))
                } else {
                    format!("{}:", "-".repeat(w - 1))
                }
            },
        )
        .collect();
    push_markdown_line(&mut out, &rule, &widths, text_columns);
    for line in &body {
        push_markdown_line(&mut out, line, &widths, text_columns);
    }
    out
}

fn markdown_row(r: &RunRow, benches: &[String]) -> Vec<String> {
    let mut cells = vec![
        markdown_cell(&r.name),
        markdown_cell(&r.connector),
        markdown_cell(&r.compression),
        shown(Some(r.visual_tokens), tokens),
        shown(r.prefill_flops, si),
        shown(Some(r.prefill_latency_s * 1e3), |v| format!("{v:.1}")),
        shown(Some(r.decode_tokens_per_s), |v| format!("{v:.1}")),
        shown(r.train_seconds, hms),
    ];
    cells.extend(benches.iter().map(|b| shown(r.scores.get(b).copied(), |v| format!("{v:.2}"))));
    cells
}

fn push_markdown_line(out: &mut String, cells: &[String], widths: &[usize], text_columns: usize) {
    out.push('|');
    for (i, (cell, &w)) in cells.iter().zip(widths).enumerate() {
        let pad = " ".repeat(w - cell.chars().count());
        if i < text_columns {
            out.push_str(&format!(" {cell}{pad} |"));
        } else {
            out.push_str(&format!(" {pad}{cell} |"));
        }
    }
    out.push('\n');
}

/// A text cell: `|` would end the cell and a line break the row.
fn markdown_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn shown(v: Option<f64>, format: impl Fn(f64) -> String) -> String {
    match v {
        Some(v) if v.is_finite() => format(v),
        _ => MISSING.to_string(),
    }
}

/// Mean token counts: whole numbers without decimals, others with one.
fn tokens(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Three significant digits with an SI prefix: `8.96T`, `412G`.
pub(crate) fn si(v: f64) -> String {
    const PREFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let mut k = 0;
    let mut m = v.abs();
    while m >= 999.5 && k + 1 < PREFIXES.len() {
        m /= 1e3;
        k += 1;
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let digits = if m >= 99.95 {
        0
    } else if m >= 9.995 {
        1
    } else {
        2
    };
    format!("{sign}{m:.digits$}{}", PREFIXES[k])
}

/// Seconds as `h:mm:ss`.
fn hms(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The CSV table: the same columns as [`markdown_table`] with unscaled numbers at full precision
/// (seconds, FLOPs) and snake_case headers, empty cells where a run lacks a value, fields quoted as
/// RFC 4180 says (those holding a comma, a quote or a line break), CRLF line ends.
pub fn csv_table(rows: &[RunRow]) -> String {
    let benches = benchmarks(rows);
    let mut header: Vec<String> = [
        "run",
        "connector",
        "compression",
        "visual_tokens",
        "prefill_flops",
        "prefill_latency_s",
        "decode_tokens_per_s",
        "train_seconds",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(benches.iter().cloned());

    let mut out = String::new();
    push_csv_line(&mut out, &header);
    for r in rows {
        let mut cells = vec![
            r.name.clone(),
            r.connector.clone(),
            r.compression.clone(),
            number(Some(r.visual_tokens)),
            number(r.prefill_flops),
            number(Some(r.prefill_latency_s)),
            number(Some(r.decode_tokens_per_s)),
            number(r.train_seconds),
        ];
        cells.extend(benches.iter().map(|b| number(r.scores.get(b).copied())));
        push_csv_line(&mut out, &cells);
    }
    out
}

fn push_csv_line(out: &mut String, cells: &[String]) {
    let quoted: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
    out.push_str(&quoted.join(","));
    out.push_str("\r\n");
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Rust's shortest round-trip form (`576`, `0.1234`); empty where missing or not finite.
fn number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_prefixes_keep_three_digits() {
        assert_eq!(si(8.964e12), "8.96T");
        assert_eq!(si(412.3e9), "412G");
        assert_eq!(si(999.7e9), "1.00T");
        assert_eq!(si(12.0), "12.0");
        assert_eq!(si(0.0), "0.00");
    }

    #[test]
    fn hours_minutes_seconds() {
        assert_eq!(hms(3723.4), "1:02:03");
        assert_eq!(hms(42.0), "0:00:42");
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
