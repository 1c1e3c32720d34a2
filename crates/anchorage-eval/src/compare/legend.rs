//! The legend beside a plot: connector colours, compression markers, and notes on what the plot
//! leaves out (runs without the values, a log axis that had to be linear).

use std::collections::BTreeSet;

use image::Rgb;

use super::canvas::{Canvas, Rect, BLACK, FRAME_GREY, INK};
use super::style::Styles;
use super::text::{text_height, text_width};
use super::RunRow;

/// Marker fill in the compression part of the legend: shape without a connector's colour.
const NEUTRAL: Rgb<u8> = Rgb([200, 200, 200]);
const LINE: i64 = 17;
const PAD: i64 = 8;

/// What the legend lists.
pub struct Legend<'a> {
    pub plotted: &'a [&'a RunRow],
    pub styles: &'a Styles,
    pub skipped: &'a [(String, String)],
    pub log_requested: bool,
    pub log_x: bool,
}

/// Draws the legend in a framed box at the top of `room`, as tall as its lines need (cut at the
/// bottom of `room`, with a last line saying so).
pub fn draw_legend(canvas: &mut Canvas, legend: &Legend, room: Rect) {
    let lines = legend_lines(legend, room.x1 - room.x0 - 2 * PAD);
    let fit = ((room.y1 - room.y0 - 2 * PAD) / LINE).max(1) as usize;
    let (shown, cut) = if lines.len() > fit { (&lines[..fit - 1], lines.len() - (fit - 1)) } else { (&lines[..], 0) };
    let height = 2 * PAD + LINE * (shown.len() + usize::from(cut > 0)) as i64;
    let frame = Rect { y1: room.y0 + height, ..room };
    canvas.fill(frame, Rgb([255, 255, 255]));
    canvas.outline(frame, FRAME_GREY);

    let x = room.x0 + PAD;
    let mut y = room.y0 + PAD;
    for line in shown {
        let text_y = y + (LINE - text_height(1)) / 2;
        match line {
            Line::Heading(s) => canvas.text(s, x, text_y, 1, BLACK),
            Line::Colour(colour, name) => {
                canvas.fill(Rect::new(x + 1, y + 3, 16, LINE - 6), *colour);
                canvas.outline(Rect::new(x + 1, y + 3, 16, LINE - 6), BLACK);
                canvas.text(name, x + 24, text_y, 1, INK);
            }
            Line::Shape(compression, name) => {
                canvas.marker(legend.styles.marker(compression), x + 9, y + LINE / 2, 5, NEUTRAL);
                canvas.text(name, x + 24, text_y, 1, INK);
            }
            Line::Note(s) => canvas.text(s, x, text_y, 1, INK),
        }
        y += LINE;
    }
    if cut > 0 {
        canvas.text(&format!("... {cut} more lines"), x, y + (LINE - text_height(1)) / 2, 1, INK);
    }
}

enum Line {
    Heading(String),
    Colour(Rgb<u8>, String),
    Shape(String, String),
    Note(String),
}

/// The legend's lines; notes wrapped to the legend's inner `width` in pixels.
fn legend_lines(legend: &Legend, width: i64) -> Vec<Line> {
    let connectors: BTreeSet<&str> = legend.plotted.iter().map(|r| r.connector.as_str()).collect();
    let compressions: BTreeSet<&str> = legend.plotted.iter().map(|r| r.compression.as_str()).collect();
    let mut lines = vec![Line::Heading("Connector".into())];
    lines.extend(connectors.iter().map(|c| Line::Colour(legend.styles.colour(c), c.to_string())));
    lines.push(Line::Heading("Compression".into()));
    lines.extend(compressions.iter().map(|c| Line::Shape(c.to_string(), c.to_string())));

    if legend.log_requested && !legend.log_x {
        lines.push(Line::Heading("Note".into()));
        lines.extend(wrap("x is linear: log needs every x > 0", width).into_iter().map(Line::Note));
    }
    if !legend.skipped.is_empty() {
        lines.push(Line::Heading(format!("Not shown ({})", legend.skipped.len())));
        for (name, why) in legend.skipped {
            lines.extend(wrap(&format!("{name}: {why}"), width).into_iter().map(Line::Note));
        }
    }
    lines
}

/// `s` broken into lines of at most `width` pixels, at spaces where it can, mid-word where a
/// word alone is too long.
fn wrap(s: &str, width: i64) -> Vec<String> {
    let per_line = (width / text_width("x", 1)).max(1) as usize;
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in s.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        let needed = current.chars().count() + usize::from(!current.is_empty()) + word.len();
        if needed <= per_line {
            if !current.is_empty() {
                current.push(' ');
            }
            current.extend(word);
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        while word.len() > per_line {
            lines.push(word.drain(..per_line).collect());
        }
        current = word.into_iter().collect();
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wraps_at_spaces_and_breaks_long_words() {
        assert_eq!(wrap("abc def ghi", 8 * 7), ["abc def", "ghi"]);
        assert_eq!(wrap("abcdefghij", 8 * 4), ["abcd", "efgh", "ij"]);
    }
}
