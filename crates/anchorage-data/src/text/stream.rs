//! Streaming over the records of an annotation file (a JSON array) without holding the file or
//! the parsed array in memory: each element is parsed, handed to a callback, and dropped.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::Record;
use crate::DataError;

/// One element of the array: a record, or why it is not one (valid JSON of the wrong shape).
pub type RecordResult = Result<Record, String>;

/// Calls `f(index, record)` for every element of the top-level array in `path`. An element of
/// the wrong shape is passed as `Err(message)` and the stream goes on; a JSON syntax error stops
/// it and names the line and column.
pub fn for_each_record(
    path: &Path,
    mut f: impl FnMut(usize, RecordResult),
) -> Result<usize, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, file));
    let n = de
        .deserialize_seq(RecordVisitor { f: &mut f })
        .map_err(|e| DataError::json(path, &e))?;
    de.end().map_err(|e| DataError::json(path, &e))?;
    Ok(n)
}

/// Reads every record (for small files and tests); elements of the wrong shape are returned as
/// errors in place.
pub fn read_records(path: &Path) -> Result<Vec<RecordResult>, DataError> {
    let mut out = Vec::new();
    for_each_record(path, |_, r| out.push(r))?;
    Ok(out)
}

struct RecordVisitor<'a, F> {
    f: &'a mut F,
}

impl<'de, F: FnMut(usize, RecordResult)> Visitor<'de> for RecordVisitor<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of LLaVA records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut i = 0;
        while let Some(value) = seq.next_element_seed(ElementSeed)? {
            (self.f)(i, value);
            i += 1;
        }
        Ok(i)
    }
}

/// Parses one element as a `serde_json::Value` first so that a record of the wrong shape is a
/// per-record error, not a stream error.
struct ElementSeed;

impl<'de> DeserializeSeed<'de> for ElementSeed {
    type Value = RecordResult;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RecordResult, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(Record::deserialize(value).map_err(|e| e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bad_elements_are_reported_in_place_and_syntax_errors_stop() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(br#"[{"id": "a", "conversations": []}, {"conversations": 3}, {"id": 5}]"#).unwrap();
        let r = read_records(f.path()).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r[0].is_ok() && r[1].is_err() && r[2].is_ok());

        let mut g = tempfile::NamedTempFile::new().unwrap();
        g.write_all(b"[\n{\"id\": \"a\"},\n{\"id\": }\n]").unwrap();
        match read_records(g.path()) {
            Err(DataError::JsonSyntax { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
    }
}
