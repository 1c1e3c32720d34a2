//! Floats in the run folder's JSON that stay readable when they are not finite: serde_json writes
//! NaN and ±inf as `null`, which it then refuses to read back as a number. A diverged step's loss
//! is written as the string `"NaN"`, `"inf"` or `"-inf"` instead; finite values are plain numbers
//! (the same text as before, so equal strings are still equal bits), and `null` reads back as NaN.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Number(f64),
    Text(String),
}

fn to_repr(v: f64) -> Repr {
    if v.is_finite() {
        Repr::Number(v)
    } else if v.is_nan() {
        Repr::Text("NaN".into())
    } else if v > 0.0 {
        Repr::Text("inf".into())
    } else {
        Repr::Text("-inf".into())
    }
}

fn from_repr(r: Option<Repr>) -> f64 {
    match r {
        Some(Repr::Number(v)) => v,
        Some(Repr::Text(t)) => t.parse().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

/// `#[serde(with = "crate::json_float")]` on an `f64`.
pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    to_repr(*v).serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(from_repr(Option::deserialize(d)?))
}

/// `#[serde(with = "crate::json_float::vec")]` on a `Vec<f64>`.
pub mod vec {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| to_repr(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<Repr>>::deserialize(d)?.into_iter().map(from_repr).collect())
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct S {
        #[serde(with = "super")]
        x: f64,
        #[serde(with = "super::vec")]
        v: Vec<f64>,
    }

    #[test]
    fn non_finite_values_round_trip_and_finite_ones_keep_their_text() {
        let s = S { x: f64::NAN, v: vec![0.1, f64::INFINITY, f64::NEG_INFINITY, 1e-300] };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text, r#"{"x":"NaN","v":[0.1,"inf","-inf",1e-300]}"#);
        let back: S = serde_json::from_str(&text).unwrap();
        assert!(back.x.is_nan());
        assert_eq!(back.v[0].to_bits(), 0.1f64.to_bits());
        assert_eq!(back.v[1], f64::INFINITY);
        assert_eq!(back.v[2], f64::NEG_INFINITY);
        // What older runs wrote for a NaN.
        let old: S = serde_json::from_str(r#"{"x":null,"v":[null,2]}"#).unwrap();
        assert!(old.x.is_nan() && old.v[0].is_nan() && old.v[1] == 2.0);
    }
}
