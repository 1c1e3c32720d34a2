//! Atomic file writes: the bytes go to `.tmp-<name>` in the same folder, are synced, and the temp
//! file is renamed over the target; then the folder is synced so the rename survives a crash. A
//! reader (or a crash) sees either the old file or the whole new one, never a mix.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};

/// The prefix of temporary files (and of the trainer's temporary checkpoint folders).
pub const TMP_PREFIX: &str = ".tmp-";

/// The temporary path a write of `path` goes through: `.tmp-<name>` beside it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    parent_of(path).join(format!("{TMP_PREFIX}{name}"))
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` atomically (creating its folder if needed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes whatever `fill` writes to `path` atomically. If `fill` (or any step) fails, the temp
/// file is removed and `path` keeps its old content.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let parent = parent_of(path);
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = temp_path(path);
    let written = write_synced(&tmp, fill);
    if let Err(e) = written {
        // Best effort: the temp file may not exist, and the write error is the one to report.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(source));
    }
    sync_dir(parent)
}

/// Creates `tmp`, fills it and syncs it to disk.
fn write_synced(
    tmp: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let file = File::create(tmp).map_err(io_err(tmp))?;
    let mut writer = BufWriter::new(file);
    fill(&mut writer).map_err(io_err(tmp))?;
    let file = writer
        .into_inner()
        .map_err(|e| io_err(tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(tmp))
}

/// Syncs a folder, making renames and creations in it durable (Linux). Platforms that cannot
/// open a folder as a file skip it.
pub fn sync_dir(dir: &Path) -> Result<()> {
    if let Ok(f) = File::open(dir) {
        f.sync_all().map_err(io_err(dir))?;
    }
    Ok(())
}
