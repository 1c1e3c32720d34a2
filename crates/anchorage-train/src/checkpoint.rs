//! Step checkpoints written atomically: a step folder appears under its final name only once every
//! file in it is written and synced, so a kill at any moment leaves the last good one intact.
//!
//! Layout (see checkpoints/README.md): `<run>/step-00000500/{trainable,optimizer}.bin, state.json,
//! recipe.toml, connector.safetensors, manifest.json`; in-progress folders are
//! `<run>/.tmp-step-00000500` and are removed (with any other `.tmp-*` file or folder) on the next
//! start.
//!
//! `manifest.json` is written last: the size and CRC-32 of every other file. A checkpoint counts
//! only when [`verify`] finds every file of its manifest with that size and checksum, so a step
//! folder emptied, truncated or damaged after the fact is never resumed from.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anchorage_tensors::{TensorsError, TMP_PREFIX};
use serde::{Deserialize, Serialize};

use crate::TrainError;

const PREFIX: &str = "step-";
/// The file a checkpoint's integrity is checked against; written after every other file.
pub const MANIFEST: &str = "manifest.json";

/// `manifest.json`: what a complete checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub step: u64,
    pub files: Vec<ManifestFile>,
}

/// One file of a checkpoint: its size in bytes and CRC-32 (IEEE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub bytes: u64,
    pub crc32: u32,
}

/// Checks a step folder against its manifest; the reason it does not verify otherwise.
pub fn verify(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("no {MANIFEST} (an incomplete checkpoint, or one written before checkpoints carried manifests)")),
        Err(e) => return Err(format!("cannot read {MANIFEST}: {e}")),
    };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| format!("{MANIFEST} is damaged: {e}"))?;
    for file in &manifest.files {
        let bytes = fs::read(dir.join(&file.name)).map_err(|e| format!("{}: {e}", file.name))?;
        if bytes.len() as u64 != file.bytes {
            return Err(format!("{} has {} bytes, the manifest says {}", file.name, bytes.len(), file.bytes));
        }
        let crc = crc32fast::hash(&bytes);
        if crc != file.crc32 {
            return Err(format!("{} has CRC-32 {crc:08x}, the manifest says {:08x}", file.name, file.crc32));
        }
    }
    Ok(manifest)
}

/// The step checkpoints of one run folder.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    run_dir: PathBuf,
    keep_last: usize,
}

impl Checkpoints {
    pub fn new(run_dir: impl Into<PathBuf>, keep_last: u32) -> Self {
        Self { run_dir: run_dir.into(), keep_last: keep_last.max(1) as usize }
    }

    /// The folder name of a step's checkpoint.
    pub fn step_dir(&self, step: u64) -> PathBuf {
        self.run_dir.join(format!("{PREFIX}{step:08}"))
    }

    /// Writes `files` as the checkpoint of `step`: into a temporary folder, each file synced, the
    /// manifest last, then renamed into place, then the parent synced. Older checkpoints beyond `keep_last` are removed
    /// afterwards (never before the new one is complete).
    pub fn save(&self, step: u64, files: &[(&str, &[u8])]) -> Result<PathBuf, TrainError> {
        fs::create_dir_all(&self.run_dir).map_err(|e| io(&self.run_dir, e))?;
        let final_dir = self.step_dir(step);
        let tmp = self.run_dir.join(format!("{TMP_PREFIX}{PREFIX}{step:08}"));
        match fs::symlink_metadata(&tmp) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?,
            Ok(_) => fs::remove_file(&tmp).map_err(|e| io(&tmp, e))?,
            Err(_) => {}
        }
        fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        for (name, bytes) in files {
            let path = tmp.join(name);
            let mut f = File::create(&path).map_err(|e| io(&path, e))?;
            f.write_all(bytes).map_err(|e| io(&path, e))?;
            f.sync_all().map_err(|e| io(&path, e))?;
        }
        let manifest = Manifest {
            step,
            files: files.iter().map(|(name, bytes)| ManifestFile { name: name.to_string(), bytes: bytes.len() as u64, crc32: crc32fast::hash(bytes) }).collect(),
        };
        let path = tmp.join(MANIFEST);
        let text = serde_json::to_vec_pretty(&manifest).map_err(|source| TrainError::Json { path: path.clone(), source })?;
        let mut f = File::create(&path).map_err(|e| io(&path, e))?;
        f.write_all(&text).map_err(|e| io(&path, e))?;
        f.sync_all().map_err(|e| io(&path, e))?;
        sync_dir(&tmp)?;
        if final_dir.exists() {
            // A checkpoint of the same step from an earlier attempt: replace it.
            fs::remove_dir_all(&final_dir).map_err(|e| io(&final_dir, e))?;
        }
        fs::rename(&tmp, &final_dir).map_err(|e| io(&final_dir, e))?;
        sync_dir(&self.run_dir)?;
        self.prune()?;
        Ok(final_dir)
    }

    /// Step folders (verified or not: see [`verify`]), oldest first.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, TrainError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.run_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.run_dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io(&self.run_dir, e))?;
            let name = entry.file_name();
            let Some(step) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            if entry.path().is_dir() {
                out.push((step, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The newest step folder, if any (verified or not).
    pub fn latest(&self) -> Result<Option<(u64, PathBuf)>, TrainError> {
        Ok(self.list()?.pop())
    }

    /// The newest checkpoint that verifies, and every newer step folder that does not, with why.
    pub fn latest_verified(&self) -> Result<(Option<(u64, PathBuf)>, Vec<(PathBuf, String)>), TrainError> {
        let mut rejected = Vec::new();
        for (step, dir) in self.list()?.into_iter().rev() {
            match verify(&dir) {
                Ok(_) => return Ok((Some((step, dir)), rejected)),
                Err(why) => rejected.push((dir, why)),
            }
        }
        Ok((None, rejected))
    }

    /// Removes the temporary folders and files (`.tmp-*`) left by a run that was killed while
    /// saving a checkpoint or writing a file atomically.
    pub fn remove_partial(&self) -> Result<usize, TrainError> {
        let mut removed = 0;
        let Ok(entries) = fs::read_dir(&self.run_dir) else { return Ok(0) };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(TMP_PREFIX)) {
                let path = entry.path();
                // Not following links: a link named .tmp-* is removed, not what it points to.
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                let result = if is_dir { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                result.map_err(|e| io(&path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes the oldest step folders beyond `keep_last`. Only a step folder older than the
    /// newest `keep_last` ones goes; the newest is the one just written and verified.
    fn prune(&self) -> Result<(), TrainError> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep_last);
        for (_, dir) in all.into_iter().take(excess) {
            fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        Ok(())
    }
}

/// Writes one file atomically (anchorage-tensors' `write_atomic`): `.tmp-<name>` beside it,
/// synced, renamed over it, then the folder synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    anchorage_tensors::write_atomic(path, bytes).map_err(|e| tensors_err(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    anchorage_tensors::sync_dir(dir).map_err(|e| tensors_err(dir, e))
}

/// An I/O failure of the tensor layer as this crate's `Io` error (same path and source); any
/// other tensor-layer error stays typed.
fn tensors_err(_path: &Path, e: TensorsError) -> TrainError {
    match e {
        TensorsError::Io { path, source } => TrainError::Io { path, source },
        other => TrainError::Tensors(other),
    }
}

fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_lists_and_prunes_to_keep_last() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoints::new(dir.path(), 2);
        for step in [2, 4, 6] {
            ck.save(step, &[("state.json", format!("{{\"step\": {step}}}").as_bytes())]).unwrap();
        }
        let steps: Vec<u64> = ck.list().unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![4, 6]);
        let (step, path) = ck.latest().unwrap().unwrap();
        assert_eq!(step, 6);
        assert_eq!(fs::read_to_string(path.join("state.json")).unwrap(), "{\"step\": 6}");
    }

    #[test]
    fn partial_folders_are_not_checkpoints_and_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoints::new(dir.path(), 3);
        ck.save(1, &[("a", b"1")]).unwrap();
        // What a kill in the middle of saving step 2 leaves behind.
        fs::create_dir_all(dir.path().join(".tmp-step-00000002")).unwrap();
        fs::write(dir.path().join(".tmp-step-00000002/a"), b"half").unwrap();
        assert_eq!(ck.latest().unwrap().unwrap().0, 1);
        // And what a kill in the middle of an atomic file write leaves: a file, not a folder.
        fs::write(dir.path().join(".tmp-metrics.jsonl"), b"half").unwrap();
        assert_eq!(ck.remove_partial().unwrap(), 2);
        assert!(!dir.path().join(".tmp-step-00000002").exists());
        assert!(!dir.path().join(".tmp-metrics.jsonl").exists());
    }

    #[test]
    fn only_checkpoints_that_match_their_manifest_verify() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoints::new(dir.path(), 5);
        ck.save(1, &[("a", b"one"), ("b", b"two")]).unwrap();
        ck.save(2, &[("a", b"one"), ("b", b"two")]).unwrap();
        ck.save(3, &[("a", b"one"), ("b", b"two")]).unwrap();
        assert_eq!(verify(&ck.step_dir(3)).unwrap().files.len(), 2);
        // Truncated, damaged in place, emptied.
        fs::write(ck.step_dir(3).join("b"), b"tw").unwrap();
        fs::write(ck.step_dir(2).join("a"), b"ONE").unwrap();
        fs::create_dir_all(ck.step_dir(4)).unwrap();
        assert!(verify(&ck.step_dir(3)).unwrap_err().contains("2 bytes"));
        assert!(verify(&ck.step_dir(2)).unwrap_err().contains("CRC-32"));
        assert!(verify(&ck.step_dir(4)).unwrap_err().contains("no manifest.json"));
        let (latest, rejected) = ck.latest_verified().unwrap();
        assert_eq!(latest.unwrap().0, 1);
        assert_eq!(rejected.len(), 3);
    }

    #[test]
    fn write_atomic_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/connector.safetensors");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
