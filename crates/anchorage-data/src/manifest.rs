use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{count_json_array, Aspect, DataError, Template};

/// A data-set manifest (`data-manifests/*.toml`): which files make up a LLaVA data set, where to
/// obtain them, how many samples to expect, and the template and aspect mode it is trained with.
///
/// Paths inside a manifest are relative to the data root, which the recipe gives (`data.root`) or,
/// for data sets shipped in the repository, the manifest's own `root` (relative to the manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short name, e.g. `llava-pretrain-558k`.
    pub name: String,
    /// One line on what the data set is.
    pub description: String,
    /// The annotation file, a JSON array of LLaVA records, relative to the data root.
    pub annotations: PathBuf,
    /// The folder that records' `image` paths are relative to, relative to the data root.
    pub image_root: PathBuf,
    /// Top-level folders under `image_root` that records reference (checked by `train data check`).
    #[serde(default)]
    pub image_folders: Vec<String>,
    /// Number of records in `annotations`. Used for planning when the file is not present.
    pub expected_samples: u64,
    /// Conversation template the data set is trained with.
    pub template: Template,
    /// Aspect mode of its images.
    pub aspect: Aspect,
    /// Data root relative to this manifest, for data sets shipped in the repository.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Where to obtain the files.
    #[serde(default)]
    pub source: Option<ManifestSource>,
}

/// Where a data set's files come from (documentation for people; nothing is downloaded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSource {
    /// Where the annotation file is published.
    pub annotations: String,
    /// Where each image folder is published.
    #[serde(default)]
    pub images: Vec<String>,
    /// How to lay the files out under the data root.
    #[serde(default)]
    pub notes: String,
}

/// How many samples a run will see, and where that number came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleCount {
    pub count: u64,
    pub source: SampleCountSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleCountSource {
    /// The manifest's `expected_samples`: the annotation file is not present locally.
    Manifest { missing: PathBuf },
    /// Counted in the local annotation file.
    Counted { path: PathBuf },
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| DataError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if manifest.expected_samples == 0 {
            return Err(DataError::Manifest {
                path: path.to_path_buf(),
                message: "expected_samples must be at least 1".into(),
            });
        }
        Ok(manifest)
    }

    /// The data root: the recipe's `root` if given, else the manifest's own `root` resolved against
    /// the manifest's folder.
    pub fn data_root(&self, manifest_path: &Path, recipe_root: Option<&Path>) -> Option<PathBuf> {
        match (recipe_root, &self.root) {
            (Some(root), _) => Some(root.to_path_buf()),
            (None, Some(own)) => Some(manifest_path.parent().unwrap_or(Path::new(".")).join(own)),
            (None, None) => None,
        }
    }

    /// The number of samples: counted in the annotation file when it exists under `root`, otherwise
    /// the manifest's `expected_samples`.
    pub fn sample_count(&self, root: Option<&Path>) -> Result<SampleCount, DataError> {
        let path = match root {
            Some(root) => root.join(&self.annotations),
            None => self.annotations.clone(),
        };
        if root.is_some() && path.is_file() {
            let count = count_json_array(&path)?;
            if count != self.expected_samples {
                tracing::warn!(
                    file = %path.display(),
                    counted = count,
                    expected = self.expected_samples,
                    "annotation file has a different number of samples than the manifest expects"
                );
            }
            Ok(SampleCount {
                count,
                source: SampleCountSource::Counted { path },
            })
        } else {
            Ok(SampleCount {
                count: self.expected_samples,
                source: SampleCountSource::Manifest { missing: path },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
name = "t"
description = "test"
annotations = "ann.json"
image_root = "images"
expected_samples = 5
template = "plain"
aspect = "square"
"#;

    #[test]
    fn counts_local_file_or_falls_back_to_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, MANIFEST).unwrap();
        let m = Manifest::load(&path).unwrap();
        let c = m.sample_count(Some(dir.path())).unwrap();
        assert_eq!(c.count, 5);
        assert!(matches!(c.source, SampleCountSource::Manifest { .. }));

        std::fs::write(dir.path().join("ann.json"), "[{}, {}]").unwrap();
        let c = m.sample_count(Some(dir.path())).unwrap();
        assert_eq!(c.count, 2);
        assert!(matches!(c.source, SampleCountSource::Counted { .. }));
    }

    #[test]
    fn unknown_key_and_bad_enum_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, format!("{MANIFEST}\nextra = 1\n")).unwrap();
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert!(err.contains("extra"), "{err}");

        std::fs::write(&path, MANIFEST.replace("\"plain\"", "\"vicuna\"")).unwrap();
        let err = Manifest::load(&path).unwrap_err().to_string();
        assert!(err.contains("vicuna") && err.contains("vicuna_v1"), "{err}");
    }
}
