//! Writing a whole folder or nothing: every file goes into a hidden temporary sibling of the
//! destination, which is renamed onto it at the end (and removed if anything fails).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::HfExportError;

/// A folder being written; [`StagedFolder::commit`] puts it in place, dropping it removes it.
pub(crate) struct StagedFolder {
    pub(crate) tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl StagedFolder {
    /// Refuses a destination that exists and is not an empty folder.
    pub(crate) fn new(dest: &Path) -> Result<Self, HfExportError> {
        if dest.exists() {
            let empty_dir = dest.is_dir()
                && std::fs::read_dir(dest)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
            if !empty_dir {
                return Err(HfExportError::Exists(dest.to_path_buf()));
            }
        }
        let name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| HfExportError::file(dest, "the destination needs a folder name"))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(HfExportError::file(
                &parent,
                "the destination's parent folder does not exist",
            ));
        }
        let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| HfExportError::file(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| HfExportError::file(&tmp, e))?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    /// `rel` inside the staged folder, its parent folders created.
    pub(crate) fn path(&self, rel: &str) -> Result<PathBuf, HfExportError> {
        let path = self.tmp.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| HfExportError::file(parent, e))?;
        }
        Ok(path)
    }

    pub(crate) fn write_text(&self, rel: &str, text: &str) -> Result<(), HfExportError> {
        let path = self.path(rel)?;
        std::fs::write(&path, text).map_err(|e| HfExportError::file(&path, e))
    }

    pub(crate) fn write_json(&self, rel: &str, value: &Value) -> Result<(), HfExportError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| HfExportError::file(&self.tmp.join(rel), e))?;
        self.write_text(rel, &(text + "\n"))
    }

    /// Renames the staged folder onto the destination.
    pub(crate) fn commit(mut self) -> Result<PathBuf, HfExportError> {
        if self.dest.is_dir() {
            // An empty folder: rename(2) replaces it.
            std::fs::remove_dir(&self.dest).map_err(|e| HfExportError::file(&self.dest, e))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| HfExportError::file(&self.dest, e))?;
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for StagedFolder {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
