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
    if TAGS.contains(last) && current.get(*last).is_some_and(|old| *old != value) {
        // Another variant of a tagged table (`connector.kind`, `compression.method`): the old
        // variant's keys do not apply to the new one, so they go (the connector's `init` stays).
        current.retain(|k, _| KEPT_ACROSS_VARIANTS.contains(&k));
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// The keys that choose a table's variant.
const TAGS: [&str; 2] = ["kind", "method"];
/// Keys every variant of a tagged table has.
const KEPT_ACROSS_VARIANTS: [&str; 1] = ["init"];

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
    fn switching_a_variant_drops_the_old_variants_keys() {
        let mut t: Table = "[connector]\nkind = \"anchor_former\"\nanchors = 9\ninit = \"c.safetensors\"\n[compression]\nmethod = \"act\"\ncoverage = 0.5\n".parse().unwrap();
        apply_override(&mut t, "connector.kind=mlp").unwrap();
        assert_eq!(t["connector"].as_table().unwrap().keys().collect::<Vec<_>>(), vec!["init", "kind"]);
        apply_override(&mut t, "compression.method=fastv").unwrap();
        apply_override(&mut t, "compression.layer=3").unwrap();
        assert_eq!(t["compression"].as_table().unwrap().keys().collect::<Vec<_>>(), vec!["layer", "method"]);
        // Setting the same variant again keeps its keys.
        apply_override(&mut t, "compression.method=fastv").unwrap();
        assert_eq!(t["compression"]["layer"].as_integer(), Some(3));
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
