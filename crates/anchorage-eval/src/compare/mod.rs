//! `train compare`'s output: a table of runs × benchmarks with what each run cost (Markdown and
//! CSV), and scatter plots of a benchmark's score against visual tokens, prefill latency or
//! FLOPs, drawn as PNG in Rust with an embedded bitmap font (no system fonts, no C).
//!
//! In the plots each connector has one colour and each compression method one marker shape,
//! the same in every plot; every point carries its run's name, and the legend names the runs a
//! plot leaves out and why.

mod canvas;
mod legend;
mod plot;
mod row;
mod scale;
mod style;
mod table;
mod text;

pub use plot::{plot_png, render_plot, RenderedPlot, HEIGHT, WIDTH};
pub use row::{Axis, Plot, RunRow};
pub use table::{benchmarks, csv_table, markdown_table};
