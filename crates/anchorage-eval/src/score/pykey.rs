//! JSON values as Python dict keys. The reference scripts key dicts by `question_id` as `json.loads`
//! typed it, so `"12"` and `12` are different questions while `12` and `12.0` are the same one; a
//! list or object id is unhashable (`TypeError`).

use std::fmt;

use serde_json::Value;

use super::pytext::py_int_str;

/// A hashable JSON value under Python's equality: bools are ints, integral floats are ints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PyKey {
    None,
    Int(i128),
    /// A finite non-integral float, by its bits (Python floats equal only themselves there).
    Float(u64),
    Str(String),
}

impl PyKey {
    /// The key `value` makes, or `None` for a list or object.
    pub fn from_json(value: &Value) -> Option<PyKey> {
        Some(match value {
            Value::Null => PyKey::None,
            Value::Bool(b) => PyKey::Int(i128::from(*b)),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    PyKey::Int(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    PyKey::Int(i128::from(u))
                } else {
                    let f = n.as_f64()?;
                    float_key(f)
                }
            }
            Value::String(s) => PyKey::Str(s.clone()),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }

    /// `int(value)` where it succeeds (SEED's converter tries it and keeps the value otherwise).
    pub fn python_int(value: &Value) -> Option<PyKey> {
        match value {
            Value::Bool(b) => Some(PyKey::Int(i128::from(*b))),
            Value::Number(n) => match PyKey::from_json(value)? {
                PyKey::Float(_) => n.as_f64().map(|f| PyKey::Int(f.trunc() as i128)),
                key => Some(key),
            },
            Value::String(s) => py_int_str(s).map(PyKey::Int),
            _ => None,
        }
    }

    /// The same id under the other JSON type (`"12"` for `12` and back), to explain a miss.
    pub fn other_type(&self) -> Option<PyKey> {
        match self {
            PyKey::Int(i) => Some(PyKey::Str(i.to_string())),
            PyKey::Str(s) => py_int_str(s).filter(|i| i.to_string() == *s).map(PyKey::Int),
            _ => None,
        }
    }
}

fn float_key(f: f64) -> PyKey {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e38 {
        PyKey::Int(f as i128)
    } else {
        PyKey::Float(f.to_bits())
    }
}

/// Python's `repr`, for messages.
impl fmt::Display for PyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyKey::None => write!(f, "None"),
            PyKey::Int(i) => write!(f, "{i}"),
            PyKey::Float(bits) => write!(f, "{}", f64::from_bits(*bits)),
            PyKey::Str(s) => write!(f, "'{s}'"),
        }
    }
}

/// `a == b` between two JSON values as Python compares what `json.loads` returned.
pub fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| py_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => match (PyKey::from_json(a), PyKey::from_json(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// Python truthiness of a JSON value (`if question["isBalanced"]:`).
pub fn py_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_follow_python_equality() {
        assert_eq!(PyKey::from_json(&json!(12)), PyKey::from_json(&json!(12.0)));
        assert_eq!(PyKey::from_json(&json!(true)), Some(PyKey::Int(1)));
        assert_ne!(PyKey::from_json(&json!("12")), PyKey::from_json(&json!(12)));
        assert_eq!(PyKey::from_json(&json!([1])), None);
        assert_ne!(PyKey::from_json(&json!(1.5)), PyKey::from_json(&json!(1)));
    }

    #[test]
    fn python_int_of_ids() {
        assert_eq!(PyKey::python_int(&json!("101669")), Some(PyKey::Int(101669)));
        assert_eq!(PyKey::python_int(&json!(2.7)), Some(PyKey::Int(2)));
        assert_eq!(PyKey::python_int(&json!("v_12")), None);
        assert_eq!(PyKey::python_int(&json!(null)), None);
    }

    #[test]
    fn other_type_round_trips_plain_integers_only() {
        assert_eq!(PyKey::Int(5).other_type(), Some(PyKey::Str("5".into())));
        assert_eq!(PyKey::Str("5".into()).other_type(), Some(PyKey::Int(5)));
        assert_eq!(PyKey::Str("05".into()).other_type(), None);
    }

    #[test]
    fn equality_and_truth() {
        assert!(py_eq(&json!("A"), &json!("A")));
        assert!(py_eq(&json!(1), &json!(1.0)));
        assert!(!py_eq(&json!("1"), &json!(1)));
        assert!(py_truthy(&json!(true)) && !py_truthy(&json!(0)) && !py_truthy(&json!("")));
    }
}
