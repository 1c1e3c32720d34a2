//! Resolving a model given as a Hugging Face Hub id into a folder of the local HF cache
//! (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`), through `hf-hub`'s blocking client.
//!
//! The cache is always searched first, offline. The network is used only when the user gave a
//! hub id, the files are missing and downloading is allowed (not with `HF_HUB_OFFLINE=1`); an
//! offline miss says how to download the model or how to pass a `path` instead.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::spec::ModelSource;

/// Errors of hub resolution; each names the hub id and, where known, the file.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("model source `{source_desc}` is not a hub id (give `hub = \"owner/name\"`)")]
    NotHub { source_desc: String },
    #[error(
        "`{id}` (revision {revision}) is not in the local Hugging Face cache {cache}: missing {file}. \
         Download it with `huggingface-cli download {id}{revision_flag}` (or run with downloads allowed), \
         or set `model = {{ path = \"DIR\" }}` to a local folder"
    )]
    NotCached {
        id: String,
        revision: String,
        revision_flag: String,
        cache: PathBuf,
        file: String,
    },
    #[error("downloading {file} of `{id}`: {message}")]
    Download { id: String, file: String, message: String },
    #[error("{path}: {message}")]
    Index { path: PathBuf, message: String },
}

/// Whether resolution may use the network for files missing from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubAccess {
    /// Only the local cache (tests, default paths).
    Offline,
    /// Download missing files (only when the user gave a hub id); `HF_HUB_OFFLINE=1` overrides.
    AllowDownload,
}

/// The files a model folder needs: config.json and the weights (an index and its shards, or one
/// file). Optional extras (tokenizer files) are fetched when present and skipped otherwise.
const CONFIG: &str = "config.json";
const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";
/// Older checkpoints (lmsys/vicuna-7b-v1.5) ship only PyTorch pickles.
const BIN_INDEX: &str = "pytorch_model.bin.index.json";
const BIN_SINGLE: &str = "pytorch_model.bin";
const OPTIONAL: [&str; 3] = ["tokenizer.json", "tokenizer_config.json", "generation_config.json"];

/// Resolves `source.hub` (at `source.revision`, default `main`) to a snapshot folder holding
/// config.json and every safetensors file, using the cache in `$HF_HOME/hub`.
pub fn resolve_hub_model(source: &ModelSource, access: HubAccess) -> Result<PathBuf, HubError> {
    resolve_in_cache(source, Cache::from_env(), access)
}

/// As [`resolve_hub_model`] with an explicit cache folder (tests use a fabricated one).
pub fn resolve_in_cache(source: &ModelSource, cache: Cache, access: HubAccess) -> Result<PathBuf, HubError> {
    let Some(id) = source.hub.clone() else {
        return Err(HubError::NotHub {
            source_desc: source.describe(),
        });
    };
    let revision = source.revision.clone().unwrap_or_else(|| "main".to_string());
    let repo = Repo::with_revision(id.clone(), RepoType::Model, revision.clone());
    let offline_env = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let access = if offline_env { HubAccess::Offline } else { access };
    let fetcher = Fetcher {
        id: &id,
        revision: &revision,
        cache: &cache,
        repo: &repo,
        access,
    };
    let config = fetcher.get(CONFIG)?;
    fetcher.weights()?;
    for extra in OPTIONAL {
        if fetcher.get(extra).is_err() {
            tracing::debug!(id = %id, file = extra, "optional file not available");
        }
    }
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    tracing::info!(id = %id, revision = %revision, dir = %dir.display(), "resolved hub model");
    Ok(dir)
}

struct Fetcher<'a> {
    id: &'a str,
    revision: &'a str,
    cache: &'a Cache,
    repo: &'a Repo,
    access: HubAccess,
}

impl Fetcher<'_> {
    fn missing(&self, file: &str) -> HubError {
        HubError::NotCached {
            id: self.id.to_string(),
            revision: self.revision.to_string(),
            revision_flag: if self.revision == "main" {
                String::new()
            } else {
                format!(" --revision {}", self.revision)
            },
            cache: self.cache.path().clone(),
            file: file.to_string(),
        }
    }

    /// The weights in the first layout available: safetensors index + shards, one safetensors
    /// file, then the same for PyTorch pickles. A shard listed by an index must be present.
    fn weights(&self) -> Result<(), HubError> {
        let mut download_error = None;
        for (index, single) in [(INDEX, SINGLE), (BIN_INDEX, BIN_SINGLE)] {
            match self.get(index) {
                Ok(index) => {
                    for shard in shard_names(&index)? {
                        self.get(&shard)?;
                    }
                    return Ok(());
                }
                Err(e @ HubError::Download { .. }) => download_error = download_error.or(Some(e)),
                Err(_) => {}
            }
            match self.get(single) {
                Ok(_) => return Ok(()),
                Err(e @ HubError::Download { .. }) => download_error = download_error.or(Some(e)),
                Err(_) => {}
            }
        }
        Err(download_error.unwrap_or_else(|| {
            self.missing(&format!("the weights ({INDEX}, {SINGLE}, {BIN_INDEX} or {BIN_SINGLE})"))
        }))
    }

    /// The cached file, else (when allowed) a download into the cache.
    fn get(&self, file: &str) -> Result<PathBuf, HubError> {
        if let Some(path) = self.cache.repo(self.repo.clone()).get(file) {
            return Ok(path);
        }
        if self.access == HubAccess::Offline {
            return Err(self.missing(file));
        }
        let download_err = |message: String| HubError::Download {
            id: self.id.to_string(),
            file: file.to_string(),
            message,
        };
        let api = hf_hub::api::sync::ApiBuilder::from_cache(self.cache.clone())
            .with_progress(true)
            .build()
            .map_err(|e| download_err(e.to_string()))?;
        tracing::info!(id = %self.id, file, "downloading from the Hugging Face Hub");
        api.repo(self.repo.clone()).get(file).map_err(|e| download_err(e.to_string()))
    }
}

/// Shard file names listed by a `model.safetensors.index.json`.
fn shard_names(index: &Path) -> Result<Vec<String>, HubError> {
    let bad = |message: String| HubError::Index {
        path: index.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = value
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut names: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out a cache folder the way huggingface_hub does: refs/<rev> holds the commit, files
    /// sit in snapshots/<commit>/.
    fn fake_cache(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("models--lmsys--vicuna-7b-v1.5");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123").unwrap();
        let snap = repo.join("snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        for (name, text) in files {
            std::fs::write(snap.join(name), text).unwrap();
        }
        root
    }

    fn source(rev: Option<&str>) -> ModelSource {
        ModelSource {
            hub: Some("lmsys/vicuna-7b-v1.5".into()),
            revision: rev.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn finds_a_sharded_model_in_the_cache_offline() {
        let index = r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
        let root = fake_cache(&[
            ("config.json", "{}"),
            ("model.safetensors.index.json", index),
            ("model-00001-of-00002.safetensors", ""),
            ("model-00002-of-00002.safetensors", ""),
        ]);
        let dir = resolve_in_cache(&source(None), Cache::new(root.path().into()), HubAccess::Offline).unwrap();
        assert!(dir.ends_with("models--lmsys--vicuna-7b-v1.5/snapshots/abc123"), "{}", dir.display());
        assert!(dir.join("config.json").exists());
    }

    #[test]
    fn finds_an_unsharded_model() {
        let root = fake_cache(&[("config.json", "{}"), ("model.safetensors", "")]);
        let dir = resolve_in_cache(&source(None), Cache::new(root.path().into()), HubAccess::Offline).unwrap();
        assert!(dir.join("model.safetensors").exists());
    }

    #[test]
    fn finds_a_pytorch_bin_only_model() {
        let index = r#"{"weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}"#;
        let root = fake_cache(&[
            ("config.json", "{}"),
            ("pytorch_model.bin.index.json", index),
            ("pytorch_model-00001-of-00002.bin", ""),
            ("pytorch_model-00002-of-00002.bin", ""),
        ]);
        let dir = resolve_in_cache(&source(None), Cache::new(root.path().into()), HubAccess::Offline).unwrap();
        assert!(dir.join("pytorch_model.bin.index.json").exists());
    }

    #[test]
    fn no_weights_at_all_is_a_miss() {
        let root = fake_cache(&[("config.json", "{}")]);
        let err = resolve_in_cache(&source(None), Cache::new(root.path().into()), HubAccess::Offline)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the weights") && err.contains("huggingface-cli download"), "{err}");
    }

    #[test]
    fn offline_miss_names_the_file_and_how_to_download() {
        let index = r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
        let root = fake_cache(&[
            ("config.json", "{}"),
            ("model.safetensors.index.json", index),
            ("model-00001-of-00002.safetensors", ""),
        ]);
        let err = resolve_in_cache(&source(None), Cache::new(root.path().into()), HubAccess::Offline)
            .unwrap_err()
            .to_string();
        assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
        assert!(err.contains("huggingface-cli download lmsys/vicuna-7b-v1.5"), "{err}");
        assert!(err.contains("path"), "{err}");
    }

    #[test]
    fn unknown_revision_is_a_miss_with_the_revision_flag() {
        let root = fake_cache(&[("config.json", "{}"), ("model.safetensors", "")]);
        let err = resolve_in_cache(&source(Some("v2")), Cache::new(root.path().into()), HubAccess::Offline)
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json") && err.contains("--revision v2"), "{err}");
    }

    #[test]
    fn a_path_source_is_not_a_hub_id() {
        let src = ModelSource {
            path: Some("/models/x".into()),
            ..Default::default()
        };
        let err = resolve_in_cache(&src, Cache::new("/nonexistent".into()), HubAccess::Offline).unwrap_err();
        assert!(matches!(err, HubError::NotHub { .. }));
    }
}
