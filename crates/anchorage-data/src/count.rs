use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};

use crate::DataError;

/// Counts the elements of a top-level JSON array without holding them in memory: each element is
/// parsed and discarded as it streams past. A syntax error names the line and column.
pub fn count_json_array(path: &Path) -> Result<u64, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, file));
    let count = de
        .deserialize_seq(CountVisitor)
        .map_err(|e| DataError::json(path, &e))?;
    de.end().map_err(|e| DataError::json(path, &e))?;
    Ok(count)
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of samples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn counts_elements_of_any_shape() {
        let f = write(r#"[{"id": "a", "conversations": []}, {"id": "b", "x": [1, {"y": 2}]}, 3]"#);
        assert_eq!(count_json_array(f.path()).unwrap(), 3);
        let empty = write(" [ ] ");
        assert_eq!(count_json_array(empty.path()).unwrap(), 0);
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let f = write("[\n {\"id\": \"a\"},\n {\"id\" \"b\"}\n]");
        match count_json_array(f.path()) {
            Err(DataError::JsonSyntax { line, column, .. }) => {
                assert_eq!(line, 3);
                assert_eq!(column, 8);
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let f = write("[1, 2] x");
        assert!(matches!(
            count_json_array(f.path()),
            Err(DataError::JsonSyntax { line: 1, .. })
        ));
    }
}
