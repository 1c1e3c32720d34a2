use toml::{Table, Value};

use crate::TrainError;

/// Applies one `--set a.b.c=value` override to a parsed recipe table before it is checked, so
/// overridden keys go through the same unknown-key and type checks as the file's own.
///
/// `value` is read as a TOML value (`3`, `1e-3`, `true`, `"text"`, `[1, 2]`, `{ hub = "a/b" }`);
/// anything that does not parse as one is taken as a bare string (`--set connector.kind=mlp`).
pub fn apply_override(table: &mut Table, item: &str) -> Result<(), TrainError> {
    let err = |message: &str| TrainError::Override {
        item: item.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| err("expected KEY=VALUE, e.g. optim.lr=2e-5"))?;
    let path: Vec<&str> = key.trim().split('.').collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(err("the key has an empty part"));
    }
    let value = parse_value(raw.trim());
    let (last, parents) = path.split_last().ok_or_else(|| err("empty key"))?;
    let mut current = table;
    for (i, part) in parents.iter().enumerate() {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(err(&format!(
                    "`{}` is a value, not a table",
                    path[..=i].join(".")
                )))
            }
        };
    }
    current.insert(last.to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> Value {
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_typed_values_and_creates_tables() {
        let mut t: Table = "[optim]\nlr = 1.0\n".parse().unwrap();
        apply_override(&mut t, "optim.lr=2e-5").unwrap();
        apply_override(&mut t, "connector.kind=mlp").unwrap();
        apply_override(&mut t, "devices.ids=[0, 1]").unwrap();
        assert_eq!(t["optim"]["lr"].as_float(), Some(2e-5));
        assert_eq!(t["connector"]["kind"].as_str(), Some("mlp"));
        assert_eq!(t["devices"]["ids"].as_array().map(|a| a.len()), Some(2));
    }

    #[test]
    fn rejects_malformed_items() {
        let mut t: Table = "[optim]\nlr = 1.0\n".parse().unwrap();
        assert!(apply_override(&mut t, "optim.lr").is_err());
        assert!(apply_override(&mut t, "optim..lr=1").is_err());
        let e = apply_override(&mut t, "optim.lr.x=1").unwrap_err().to_string();
        assert!(e.contains("optim.lr"), "{e}");
    }
}
