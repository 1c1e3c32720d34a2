//! How runs look: one colour per connector, one marker shape per compression method. The
//! connectors and methods anchorage ships have fixed entries, so they look the same in every
//! plot; any other name gets a free slot chosen from a hash of its name.

use std::collections::{BTreeMap, BTreeSet};

use image::Rgb;

use super::canvas::{Canvas, BLACK};
use super::RunRow;

/// Colour-blind-friendly, mutually distinct on white (Tableau 10).
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],  // blue
    [255, 127, 14],  // orange
    [44, 160, 44],   // green
    [214, 39, 40],   // red
    [148, 103, 189], // purple
    [140, 86, 75],   // brown
    [227, 119, 194], // pink
    [188, 189, 34],  // olive
    [23, 190, 207],  // cyan
    [127, 127, 127], // grey
];

/// Connectors with a palette slot of their own.
const KNOWN_CONNECTORS: [(&str, usize); 5] =
    [("mlp2x_gelu", 0), ("c_abstractor", 1), ("resampler", 2), ("anchor_former", 3), ("linear", 4)];

/// A marker's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Marker {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
    Cross,
}

const MARKERS: [Marker; 6] =
    [Marker::Circle, Marker::Square, Marker::TriangleUp, Marker::Diamond, Marker::TriangleDown, Marker::Cross];

const KNOWN_COMPRESSIONS: [(&str, usize); 4] = [("none", 0), ("fastv", 1), ("himap", 2), ("act", 3)];

/// The colour of each connector and the marker of each compression method among `rows`.
#[derive(Debug, Clone, PartialEq)]
pub struct Styles {
    pub colours: BTreeMap<String, Rgb<u8>>,
    pub markers: BTreeMap<String, Marker>,
}

impl Styles {
    /// Styles for every run in `rows` (not only those a plot shows, so each plot of one
    /// comparison agrees).
    pub fn new(rows: &[RunRow]) -> Styles {
        let connectors: BTreeSet<&str> = rows.iter().map(|r| r.connector.as_str()).collect();
        let compressions: BTreeSet<&str> = rows.iter().map(|r| r.compression.as_str()).collect();
        let colours = assign(&connectors, &KNOWN_CONNECTORS, PALETTE.len());
        let markers = assign(&compressions, &KNOWN_COMPRESSIONS, MARKERS.len());
        Styles {
            colours: colours.into_iter().map(|(k, i)| (k, Rgb(PALETTE[i]))).collect(),
            markers: markers.into_iter().map(|(k, i)| (k, MARKERS[i])).collect(),
        }
    }

    pub fn colour(&self, connector: &str) -> Rgb<u8> {
        self.colours.get(connector).copied().unwrap_or(Rgb(PALETTE[9]))
    }

    pub fn marker(&self, compression: &str) -> Marker {
        self.markers.get(compression).copied().unwrap_or(Marker::Cross)
    }
}

/// Slot per name: the fixed one for known names; for the others (in name order) the first slot
/// from their hash on that no name has, preferring slots no known name owns. Past `slots` names,
/// slots repeat.
fn assign(names: &BTreeSet<&str>, known: &[(&str, usize)], slots: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut reserved = vec![false; slots];
    let mut taken = vec![false; slots];
    for &(name, slot) in known {
        reserved[slot] = true;
        if names.contains(name) {
            taken[slot] = true;
            out.insert(name.to_string(), slot);
        }
    }
    let unknown: Vec<&str> = names.iter().copied().filter(|n| !out.contains_key(*n)).collect();
    for name in unknown {
        let start = (fnv1a(name) % slots as u64) as usize;
        let order = || (0..slots).map(move |i| (start + i) % slots);
        let free = order().find(|&s| !taken[s] && !reserved[s]).or_else(|| order().find(|&s| !taken[s]));
        let slot = free.unwrap_or_else(|| {
            tracing::warn!("more than {slots} distinct names to style: {name:?} shares a colour or marker");
            start
        });
        taken[slot] = true;
        out.insert(name.to_string(), slot);
    }
    out
}

/// FNV-1a: a hash fixed by its definition, unlike std's, so a name keeps its colour across builds.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

impl Canvas {
    /// A marker of half-size `r` centred on `(cx, cy)`: filled with `fill`, a one-pixel black
    /// outline around it so light colours stand out on white.
    pub fn marker(&mut self, marker: Marker, cx: i64, cy: i64, r: i64, fill: Rgb<u8>) {
        self.marker_shape(marker, cx, cy, r as f64 + 1.3, BLACK);
        self.marker_shape(marker, cx, cy, r as f64, fill);
    }

    fn marker_shape(&mut self, marker: Marker, cx: i64, cy: i64, r: f64, colour: Rgb<u8>) {
        let reach = r.ceil() as i64 + 1;
        match marker {
            Marker::Circle => self.fill_shape(cx, cy, reach, colour, |x, y| x * x + y * y <= r * r),
            Marker::Square => self.fill_shape(cx, cy, reach, colour, |x, y| x.abs().max(y.abs()) <= r * 0.85),
            Marker::Diamond => self.fill_shape(cx, cy, reach, colour, |x, y| x.abs() + y.abs() <= r * 1.25),
            Marker::TriangleUp => self.fill_shape(cx, cy, reach, colour, |x, y| triangle(x, y, r)),
            Marker::TriangleDown => self.fill_shape(cx, cy, reach, colour, |x, y| triangle(x, -y, r)),
            Marker::Cross => {
                let w = (r * 0.35).max(1.0);
                self.fill_shape(cx, cy, reach, colour, |x, y| {
                    x.abs() <= r && y.abs() <= r && ((x - y).abs() <= w || (x + y).abs() <= w)
                })
            }
        }
    }
}

/// Inside an upward triangle with apex at `-1.2 r` and base at `+0.9 r`, centred on the origin.
fn triangle(x: f64, y: f64, r: f64) -> bool {
    let (top, base) = (-1.2 * r, 0.9 * r);
    if y < top || y > base {
        return false;
    }
    let half = (y - top) / (base - top) * 1.15 * r;
    x.abs() <= half
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(connector: &str, compression: &str) -> RunRow {
        RunRow { connector: connector.into(), compression: compression.into(), ..RunRow::default() }
    }

    #[test]
    fn known_names_keep_their_slots() {
        let s = Styles::new(&[row("resampler", "himap"), row("mlp2x_gelu", "none")]);
        assert_eq!(s.colour("resampler"), Rgb(PALETTE[2]));
        assert_eq!(s.colour("mlp2x_gelu"), Rgb(PALETTE[0]));
        assert_eq!(s.marker("himap"), Marker::TriangleUp);
    }

    #[test]
    fn unknown_names_get_distinct_free_slots() {
        let rows: Vec<RunRow> =
            ["mlp2x_gelu", "q_former", "ldp", "tokenpacker", "honeybee"].iter().map(|c| row(c, "none")).collect();
        let s = Styles::new(&rows);
        let distinct: BTreeSet<[u8; 3]> = s.colours.values().map(|c| c.0).collect();
        assert_eq!(distinct.len(), rows.len());
        // The same name alone in another comparison gets the same colour when its slot is free.
        let alone = Styles::new(&[row("ldp", "none")]);
        assert_eq!(alone.colour("ldp"), s.colour("ldp"));
    }
}
