//! `exp` and `erf` for the host passes, written without branches or library calls so that a loop
//! over a slice vectorises (glibc's `expf` and the `libm` crate's `erff` are scalar calls, which
//! profiles of the CPU step put at 7–10% of its time).
//!
//! - [`exp`]: Cody–Waite range reduction (`x = n ln2 + r`, `|r| <= ln2 / 2`) and Cephes' degree-6
//!   polynomial for `e^r` (the one SIMD math libraries use for single precision), scaled by `2^n`
//!   through the exponent bits; within 2 ulp of the exact value over the whole range (test).
//! - [`erf`]: Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7 in exact arithmetic, 7e-7
//!   in f32 (test). This is the formula of
//!   PyTorch's vectorised CPU `erf` (`Vectorized<float>::erf`), which its CPU GELU runs, so the
//!   connector's exact GELU rounds as PyTorch's CPU GELU does, not as a correctly rounded `erf`.

/// `e^x`: `0` below about -87.3 (where `e^x` leaves the normal range), `+inf` above about 88.7,
/// NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two, the high part exact in few bits, so `x - n ln2` loses nothing.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer (ties to even), in the low bits.
    const ROUND: f32 = 12_582_912.0;
    const LO: f32 = -87.33;
    const HI: f32 = 88.72;
    let c = x.clamp(LO, 88.0);
    let t = c * LOG2E + ROUND;
    let n = t - ROUND;
    let n_bits = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = c - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    // `y` lies in [0.7, 1.42] (exponent field 126 or 127) and `n` in [-126, 127]: the sum stays a
    // normal number's exponent except below `LO`, which the `x < LO` select below covers.
    let scaled = f32::from_bits((y.to_bits() as i32).wrapping_add(n_bits << 23) as u32);
    // Above 88.0 (clamped there) one more factor e^(x - 88) finishes the range to +inf.
    let scaled = if x > 88.0 {
        scaled * exp_small(x - 88.0)
    } else {
        scaled
    };
    let scaled = if x < LO { 0.0 } else { scaled };
    let scaled = if x > HI { f32::INFINITY } else { scaled };
    if x.is_nan() {
        x
    } else {
        scaled
    }
}

/// `e^x` for `x` in [0, 0.72]: a short Taylor series, enough for the top of [`exp`]'s range.
#[inline(always)]
fn exp_small(x: f32) -> f32 {
    let mut p = 1.0 / 40320.0_f32;
    p = p * x + 1.0 / 5040.0;
    p = p * x + 1.0 / 720.0;
    p = p * x + 1.0 / 120.0;
    p = p * x + 1.0 / 24.0;
    p = p * x + 1.0 / 6.0;
    p = p * x + 0.5;
    p * x * x + x + 1.0
}

/// `erf(x)`: Abramowitz & Stegun 7.1.26, `1 - (a1 t + ... + a5 t^5) e^(-x²)` with
/// `t = 1 / (1 + p |x|)`, sign restored; absolute error below 7e-7 (so a large relative error
/// very near 0, where `1 + erf` in GELU does not see it). NaN for NaN.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units in the last place between `ours` and the exact `want` (f64), at `want`'s scale.
    fn ulps(ours: f32, want: f64) -> f64 {
        let w = want as f32;
        let ulp = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        (ours as f64 - want).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulp_over_its_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.5 {
            let e = ulps(exp(x), (x as f64).exp());
            assert!(
                e <= 2.0,
                "exp({x}) = {} vs {} ({e} ulp)",
                exp(x),
                (x as f64).exp()
            );
            worst = worst.max(e);
            x += 0.000_731;
        }
        assert!(worst > 0.0, "the sweep compared something");
    }

    #[test]
    fn exp_at_the_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        // The bottom of the normal range, where the exponent bits nearly run out.
        for x in [-87.3f32, -87.0, -86.5] {
            let e = ulps(exp(x), (x as f64).exp());
            assert!(e <= 2.0, "exp({x}): {e} ulp");
        }
    }

    #[test]
    fn erf_is_within_its_bound() {
        let mut x = -6.0f32;
        let (mut worst, mut at) = (0.0f64, 0.0f32);
        while x < 6.0 {
            let e = (erf(x) as f64 - libm_erf(x as f64)).abs();
            if e > worst {
                (worst, at) = (e, x);
            }
            x += 0.000_913;
        }
        assert!(worst < 7e-7, "erf({at}) is {worst} off");
        assert!(erf(0.0).abs() < 7e-7, "erf(0) = {}", erf(0.0));
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    /// erf in f64 by its Maclaurin series near 0 and its continued fraction for erfc beyond,
    /// both far more precise than f32 needs.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 2.5 {
            let mut term = a;
            let mut sum = a;
            let mut n = 0.0;
            loop {
                n += 1.0;
                term *= -a * a / n;
                let add = term / (2.0 * n + 1.0);
                sum += add;
                if add.abs() < 1e-18 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(a) = e^(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + 2/(a + ...)))))
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (k as f64 / 2.0) / f;
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
        };
        v.copysign(x)
    }
}
