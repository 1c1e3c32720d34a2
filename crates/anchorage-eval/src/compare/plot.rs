//! A scatter plot of one benchmark's score against a cost (visual tokens, prefill latency or
//! FLOPs), drawn straight into an RGB image: frame, grid, ticks with numeric labels, axis
//! titles, a title, one marker per run (colour = connector, shape = compression) labelled with
//! the run's name, and a legend. Runs without both values are left out and named in the legend.

use std::path::Path;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};

use super::canvas::{Canvas, Rect, BLACK, GRID, INK};
use super::legend::{draw_legend, Legend};
use super::scale::Scale;
use super::style::Styles;
use super::text::{text_height, text_rect, text_width};
use super::{Plot, RunRow};
use crate::EvalError;

pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 600;
/// Where data is drawn: left, top, right, bottom (right and bottom excluded).
const AREA: Rect = Rect { x0: 92, y0: 52, x1: 680, y1: 526 };
/// Half-size of a marker in pixels.
const MARKER_R: i64 = 6;

/// A drawn plot and what it says about the runs.
pub struct RenderedPlot {
    pub image: RgbImage,
    /// The data area's left, top, right and bottom pixel edges.
    pub area: [i64; 4],
    /// Runs drawn, with the pixel their marker is centred on.
    pub points: Vec<(String, (i64, i64))>,
    /// Runs left out, with why.
    pub skipped: Vec<(String, String)>,
    /// Whether x is logarithmic (false also where a log axis was asked for but could not be).
    pub log_x: bool,
}

/// One run placed on the plot.
struct Point<'a> {
    row: &'a RunRow,
    x: f64,
    y: f64,
}

/// Draws `plot` for `rows` and writes it to `path` as PNG (through a temporary file beside it,
/// so a reader never sees half a PNG). Returns what [`render_plot`] does, less the image.
pub fn plot_png(path: &Path, plot: &Plot, rows: &[RunRow]) -> Result<RenderedPlot, EvalError> {
    let rendered = render_plot(plot, rows)?;
    let mut png = Vec::new();
    let encoder = PngEncoder::new_with_quality(&mut png, CompressionType::Best, FilterType::Adaptive);
    let (w, h) = rendered.image.dimensions();
    encoder
        .write_image(rendered.image.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .map_err(|source| EvalError::Png { path: path.to_path_buf(), source })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, &png).map_err(|source| EvalError::Write { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| EvalError::Write { path: path.to_path_buf(), source })?;
    Ok(rendered)
}

/// Draws `plot` for `rows` into a [`WIDTH`]×[`HEIGHT`] image. Fails when `rows` is empty or no
/// run has both a finite x and a finite score for the plot's benchmark.
pub fn render_plot(plot: &Plot, rows: &[RunRow]) -> Result<RenderedPlot, EvalError> {
    if rows.is_empty() {
        return Err(EvalError::Compare { message: format!("plot {:?}: no runs to plot", plot.title) });
    }
    let (points, skipped) = plottable(plot, rows);
    if points.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
        return Err(EvalError::Compare {
            message: format!(
                "plot {:?}: no run has both {} and a {} score (runs: {})",
                plot.title,
                plot.x.title().to_lowercase(),
                plot.bench,
                names.join(", ")
            ),
        });
    }
    for (name, why) in &skipped {
        tracing::warn!("plot {:?}: run {name} left out: {why}", plot.title);
    }
    let log_x = plot.log_x && points.iter().all(|p| p.x > 0.0);
    if plot.log_x && !log_x {
        tracing::warn!("plot {:?}: an x value is not positive, so the x axis is linear, not log", plot.title);
    }
    let xs: Vec<f64> = points.iter().map(|p| p.x).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.y).collect();
    let sx = Scale::new(&xs, log_x, AREA.x0 as f64, (AREA.x1 - 1) as f64);
    let sy = Scale::new(&ys, false, (AREA.y1 - 1) as f64, AREA.y0 as f64);

    let mut canvas = Canvas::new(WIDTH, HEIGHT);
    draw_axes(&mut canvas, plot, &sx, &sy);
    let styles = Styles::new(rows);
    let centres: Vec<(i64, i64)> =
        points.iter().map(|p| (sx.map(p.x).round() as i64, sy.map(p.y).round() as i64)).collect();
    draw_points(&mut canvas, &points, &centres, &styles);
    let plotted: Vec<&RunRow> = points.iter().map(|p| p.row).collect();
    let legend = Legend { plotted: &plotted, styles: &styles, skipped: &skipped, log_requested: plot.log_x, log_x };
    draw_legend(&mut canvas, &legend, Rect { x0: AREA.x1 + 14, y0: AREA.y0, x1: WIDTH as i64 - 8, y1: AREA.y1 });

    Ok(RenderedPlot {
        image: canvas.image,
        area: [AREA.x0, AREA.y0, AREA.x1, AREA.y1],
        points: points.iter().zip(&centres).map(|(p, &c)| (p.row.name.clone(), c)).collect(),
        skipped,
        log_x,
    })
}

/// Runs with a finite x and a finite score, and the others with why they are left out.
fn plottable<'a>(plot: &Plot, rows: &'a [RunRow]) -> (Vec<Point<'a>>, Vec<(String, String)>) {
    let mut points = Vec::new();
    let mut skipped = Vec::new();
    for row in rows {
        let y = row.scores.get(&plot.bench).copied();
        match (plot.x.value(row), y) {
            (Some(x), Some(y)) if y.is_finite() => points.push(Point { row, x, y }),
            (None, _) => skipped.push((row.name.clone(), format!("no {}", plot.x.title().to_lowercase()))),
            (_, None) => skipped.push((row.name.clone(), format!("no {} score", plot.bench))),
            (_, Some(_)) => skipped.push((row.name.clone(), format!("{} score is not a number", plot.bench))),
        }
    }
    (points, skipped)
}

/// Title, grid, frame, ticks with labels and the axis titles.
fn draw_axes(canvas: &mut Canvas, plot: &Plot, sx: &Scale, sy: &Scale) {
    let x_ticks = sx.ticks();
    let y_ticks = sy.ticks();
    for (v, _) in &x_ticks {
        canvas.vline(sx.map(*v).round() as i64, AREA.y0, AREA.y1, GRID);
    }
    for (v, _) in &y_ticks {
        canvas.hline(AREA.x0, AREA.x1, sy.map(*v).round() as i64, GRID);
    }
    canvas.outline(Rect { x0: AREA.x0 - 1, y0: AREA.y0 - 1, x1: AREA.x1 + 1, y1: AREA.y1 + 1 }, BLACK);
    for (v, label) in &x_ticks {
        let x = sx.map(*v).round() as i64;
        canvas.vline(x, AREA.y1, AREA.y1 + 5, BLACK);
        canvas.text_centred(label, x, AREA.y1 + 9, 1, INK);
    }
    for (v, label) in &y_ticks {
        let y = sy.map(*v).round() as i64;
        canvas.hline(AREA.x0 - 6, AREA.x0, y, BLACK);
        canvas.text(label, AREA.x0 - 10 - text_width(label, 1), y - text_height(1) / 2, 1, INK);
    }

    let mut x_title = plot.x.title().to_string();
    if sx.is_log() {
        x_title.push_str(" (log)");
    }
    let plot_middle = (AREA.x0 + AREA.x1) / 2;
    let s = fitting_scale(&x_title, AREA.x1 - AREA.x0);
    canvas.text_centred(&x_title, plot_middle, AREA.y1 + 30, s, BLACK);
    let y_title = plot.y_title();
    let s = fitting_scale(&y_title, AREA.y1 - AREA.y0);
    canvas.text_up_centred(&y_title, 14, (AREA.y0 + AREA.y1) / 2, s, BLACK);
    let title = clipped(&plot.title, WIDTH as i64 - 16);
    let s = fitting_scale(&title, WIDTH as i64 - 16);
    canvas.text_centred(&title, WIDTH as i64 / 2, 16, s, BLACK);
}

/// Twice the font size where it fits in `room` pixels, else the plain size.
fn fitting_scale(s: &str, room: i64) -> i64 {
    if text_width(s, 2) <= room {
        2
    } else {
        1
    }
}

/// `s` cut to `room` pixels at the plain size, with `...` where it was cut.
fn clipped(s: &str, room: i64) -> String {
    if text_width(s, 1) <= room {
        return s.to_string();
    }
    let keep = (room / text_width("x", 1) - 3).max(0) as usize;
    format!("{}...", s.chars().take(keep).collect::<String>())
}

/// Markers, each with its run's name beside it where it collides least with other markers and
/// names. Names go first so markers are never covered by a neighbour's label.
fn draw_points(canvas: &mut Canvas, points: &[Point], centres: &[(i64, i64)], styles: &Styles) {
    let reach = MARKER_R + 2;
    let mut taken: Vec<Rect> =
        centres.iter().map(|&(x, y)| Rect::new(x - reach, y - reach, 2 * reach + 1, 2 * reach + 1)).collect();
    for (p, &(x, y)) in points.iter().zip(centres) {
        let label = label_place(&p.row.name, x, y, &taken);
        canvas.text(&p.row.name, label.x0, label.y0, 1, INK);
        taken.push(label);
    }
    for (p, &(x, y)) in points.iter().zip(centres) {
        canvas.marker(styles.marker(&p.row.compression), x, y, MARKER_R, styles.colour(&p.row.connector));
    }
}

/// The label box beside the marker at `(x, y)` overlapping `taken` least and staying inside the
/// data area; the first candidate wins ties (right of the marker, then left, above, below).
fn label_place(name: &str, x: i64, y: i64, taken: &[Rect]) -> Rect {
    let w = text_width(name, 1);
    let h = text_height(1);
    let gap = MARKER_R + 4;
    let candidates = [
        (x + gap, y - h / 2),
        (x - gap - w, y - h / 2),
        (x - w / 2, y - gap - h),
        (x - w / 2, y + gap),
        (x + gap - 4, y - gap - h + 2),
        (x + gap - 4, y + gap - 2),
        (x - gap - w + 4, y - gap - h + 2),
        (x - gap - w + 4, y + gap - 2),
    ];
    let inner = Rect { x0: AREA.x0 + 2, y0: AREA.y0 + 2, x1: AREA.x1 - 2, y1: AREA.y1 - 2 };
    let cost = |r: &Rect| {
        let clash: i64 = taken.iter().map(|t| t.overlap(r)).sum();
        let outside = w * h - inner.overlap(r);
        clash + 4 * outside
    };
    let mut best = text_rect(name, candidates[0].0, candidates[0].1, 1);
    let mut best_cost = cost(&best);
    for &(cx, cy) in &candidates[1..] {
        let r = text_rect(name, cx, cy, 1);
        let c = cost(&r);
        if c < best_cost {
            best = r;
            best_cost = c;
        }
    }
    best
}
