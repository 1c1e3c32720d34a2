//! Shard indexes (`model.safetensors.index.json`, `pytorch_model.bin.index.json`): which file of
//! a sharded checkpoint holds each key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::error::{io_err, Result, TensorsError};

#[derive(Deserialize)]
struct RawIndex {
    weight_map: BTreeMap<String, String>,
}

/// A parsed shard index.
pub(crate) struct ShardIndex {
    path: PathBuf,
    dir: PathBuf,
    weight_map: BTreeMap<String, String>,
}

impl ShardIndex {
    /// Reads an index; every shard it names must be a plain file name in the index's folder.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let raw: RawIndex = serde_json::from_str(&text).map_err(|source| TensorsError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        for (key, file) in &raw.weight_map {
            let mut parts = Path::new(file).components();
            let plain = matches!(
                (parts.next(), parts.next()),
                (Some(Component::Normal(_)), None)
            );
            if !plain {
                return Err(TensorsError::Index {
                    path: path.to_path_buf(),
                    message: format!(
                        "`{key}` is in `{file}`, which is not a file name in the index's folder"
                    ),
                });
            }
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            weight_map: raw.weight_map,
        })
    }

    /// The shard files, each once, in name order.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let names: BTreeSet<&String> = self.weight_map.values().collect();
        names.into_iter().map(|n| self.dir.join(n)).collect()
    }

    /// Every key the index lists is in the shard it names; `file_of` says which opened file holds
    /// a key.
    pub(crate) fn check<'a>(&self, file_of: impl Fn(&str) -> Option<&'a Path>) -> Result<()> {
        for (key, file) in &self.weight_map {
            if file_of(key) != Some(self.dir.join(file).as_path()) {
                return Err(TensorsError::Index {
                    path: self.path.clone(),
                    message: format!("lists `{key}` in {file}, which does not hold it"),
                });
            }
        }
        Ok(())
    }
}
