//! Mapping data onto pixels along one axis, linear or logarithmic, and choosing its ticks.

use super::table::si;

/// One axis: a data range padded around the plotted values, mapped onto a pixel span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// Ends of the data range; for a log scale these are log10 of the values.
    lo: f64,
    hi: f64,
    log: bool,
    /// Pixels the range's low and high ends land on (`px_lo > px_hi` for a y axis, which grows up).
    px_lo: f64,
    px_hi: f64,
}

/// Fraction of the data span left free at each end, so no marker sits on the frame.
const PAD: f64 = 0.08;

impl Scale {
    /// A scale covering `values` (finite; positive for `log`; at least one) with some room at each
    /// end. All-equal values get a range around them instead of an empty one.
    pub fn new(values: &[f64], log: bool, px_lo: f64, px_hi: f64) -> Scale {
        let t = |v: f64| if log { v.log10() } else { v };
        let lo = values.iter().map(|&v| t(v)).fold(f64::INFINITY, f64::min);
        let hi = values.iter().map(|&v| t(v)).fold(f64::NEG_INFINITY, f64::max);
        let span = hi - lo;
        let pad = if span > 1e-9 * lo.abs().max(hi.abs()) && span > 0.0 {
            span * PAD
        } else if log {
            0.25 // a quarter of a decade either side
        } else if lo != 0.0 {
            lo.abs() * 0.1
        } else {
            1.0
        };
        Scale { lo: lo - pad, hi: hi + pad, log, px_lo, px_hi }
    }

    /// The pixel coordinate of a data value.
    pub fn map(&self, v: f64) -> f64 {
        let t = if self.log { v.log10() } else { v };
        self.px_lo + (t - self.lo) / (self.hi - self.lo) * (self.px_hi - self.px_lo)
    }

    pub fn is_log(&self) -> bool {
        self.log
    }

    /// Tick values inside the range with their labels: 1-2-5 steps on a linear scale; on a log
    /// scale powers of ten, or 1-2-5 per decade when the range spans few decades, or plain
    /// linear steps inside less than a decade.
    pub fn ticks(&self) -> Vec<(f64, String)> {
        if !self.log {
            return linear_ticks(self.lo, self.hi);
        }
        let decades = self.hi - self.lo;
        let multiples: &[f64] = if decades > 3.5 {
            &[1.0]
        } else if decades > 0.9 {
            &[1.0, 2.0, 5.0]
        } else {
            return linear_ticks(10f64.powf(self.lo), 10f64.powf(self.hi));
        };
        let every = (decades / 8.0).ceil().max(1.0) as i64;
        let mut ticks = Vec::new();
        for k in (self.lo.floor() as i64)..=(self.hi.ceil() as i64) {
            if k.rem_euclid(every) != 0 {
                continue;
            }
            for m in multiples {
                let v = m * 10f64.powi(k as i32);
                let t = v.log10();
                if t >= self.lo && t <= self.hi {
                    ticks.push((v, tick_label(v, v)));
                }
            }
        }
        ticks
    }
}

/// Ticks at multiples of the 1-2-5 step nearest a sixth of `[lo, hi]` (four to ten ticks).
fn linear_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let step = nice_step((hi - lo) / 6.0);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|i| {
            // From the integer index, so 0.1 + 0.2 drift never shows in a label.
            let v = i as f64 * step;
            (v, tick_label(v, step))
        })
        .collect()
}

/// The 1, 2 or 5 times a power of ten nearest `raw`.
fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A tick's label with as many decimals as its step needs; large values with an SI prefix.
fn tick_label(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if v.abs() >= 1e4 {
        return trim_zeros(&si(v));
    }
    let decimals = (-step.abs().log10().floor()).clamp(0.0, 9.0) as usize;
    format!("{v:.decimals$}")
}

/// `1.50T` -> `1.5T`, `2.00G` -> `2G`.
fn trim_zeros(s: &str) -> String {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if !num.contains('.') {
        return s.to_string();
    }
    format!("{}{unit}", num.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_maps_ends_and_middle() {
        let s = Scale::new(&[0.0, 100.0], false, 100.0, 200.0);
        // 8 % padding: the range is -8..108.
        assert!((s.map(-8.0) - 100.0).abs() < 1e-9);
        assert!((s.map(108.0) - 200.0).abs() < 1e-9);
        assert!((s.map(50.0) - 150.0).abs() < 1e-9);
    }

    #[test]
    fn y_axis_grows_up() {
        let s = Scale::new(&[10.0, 20.0], false, 500.0, 100.0);
        assert!(s.map(20.0) < s.map(10.0));
    }

    #[test]
    fn log_maps_decades_evenly() {
        let s = Scale::new(&[10.0, 1000.0], true, 0.0, 100.0);
        let (a, b, c) = (s.map(10.0), s.map(100.0), s.map(1000.0));
        assert!(((b - a) - (c - b)).abs() < 1e-9);
    }

    #[test]
    fn equal_values_get_a_range() {
        for (values, log) in [(vec![5.0, 5.0], false), (vec![0.0], false), (vec![576.0], true), (vec![-3.0], false)] {
            let s = Scale::new(&values, log, 0.0, 100.0);
            let p = s.map(values[0]);
            assert!((p - 50.0).abs() < 1e-6, "{values:?} log={log}: {p}");
            assert!(!s.ticks().is_empty(), "{values:?} log={log}");
        }
    }

    #[test]
    fn tick_steps_and_labels() {
        let ticks: Vec<String> = linear_ticks(0.0, 1.0).into_iter().map(|t| t.1).collect();
        assert_eq!(ticks, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let s = Scale::new(&[64.0, 576.0], true, 0.0, 100.0);
        let ticks: Vec<String> = s.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(ticks, ["100", "200", "500"]);
        let ticks: Vec<String> = linear_ticks(0.0, 3e12).into_iter().map(|t| t.1).collect();
        assert_eq!(ticks, ["0", "500G", "1T", "1.5T", "2T", "2.5T", "3T"]);
    }
}
