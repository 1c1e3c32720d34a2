//! The run-folder lock: `<run>/train.lock` holds the PID and host of the process that trains into
//! the folder, for as long as it runs. A second process on the same run folder (with or without
//! `--resume`) is refused before it writes anything. A lock whose process is gone (killed with
//! SIGKILL, a crash, a power cut) is stale: the next start on the same host takes it over.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::TrainError;

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = "train.lock";

/// A held run-folder lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    contents: String,
}

/// Who holds a lock, as its file says.
#[derive(Debug, Clone, PartialEq)]
struct Holder {
    pid: u32,
    host: String,
}

impl RunLock {
    /// Takes the lock of `run_dir` (creating the folder), or says who holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self, TrainError> {
        fs::create_dir_all(run_dir).map_err(|e| io(run_dir, e))?;
        let path = run_dir.join(LOCK_FILE);
        let contents = format!("pid = {}\nhost = \"{}\"\n", std::process::id(), hostname());
        // Two rounds: the second after removing a stale lock.
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| io(&path, e))?;
                    return Ok(Self { path, contents });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(&path, e)),
            }
            let text = fs::read_to_string(&path).unwrap_or_default();
            match parse(&text) {
                Some(holder) if holder.host == hostname() && !alive(holder.pid) => {
                    tracing::warn!(lock = %path.display(), pid = holder.pid, "taking over a stale run-folder lock (its process is gone)");
                }
                Some(holder) => {
                    let message = if holder.host == hostname() {
                        format!("process {} is training into this run folder (wait for it, stop it with SIGTERM, or, if that process id now belongs to another program, delete {})", holder.pid, path.display())
                    } else {
                        format!("process {} on host {} is training into this run folder (if it is gone, delete {})", holder.pid, holder.host, path.display())
                    };
                    return Err(TrainError::Locked { path, message });
                }
                // Empty or unreadable: a start killed between creating the file and writing it,
                // unless the file is brand new (its writer is still at it).
                None if age(&path) > Duration::from_secs(5) => {
                    tracing::warn!(lock = %path.display(), "taking over an unreadable run-folder lock");
                }
                None => return Err(TrainError::Locked { path, message: "another process is starting in this run folder".into() }),
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, e)),
            }
        }
        Err(TrainError::Locked { path, message: "another process took the lock at the same moment".into() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only our own lock: never one a later process took over.
        if fs::read_to_string(&self.path).is_ok_and(|t| t == self.contents) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn parse(text: &str) -> Option<Holder> {
    let table: toml::Table = text.parse().ok()?;
    let pid = u32::try_from(table.get("pid")?.as_integer()?).ok()?;
    let host = table.get("host")?.as_str()?.to_string();
    Some(Holder { pid, host })
}

fn age(path: &Path) -> Duration {
    File::open(path).and_then(|f| f.metadata()).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).unwrap_or_default()
}

/// Whether a process with this id exists on this host (`kill(pid, 0)`: EPERM means it exists
/// under another user).
#[cfg(unix)]
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn alive(_pid: u32) -> bool {
    true
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_refuses_a_second_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        let text = fs::read_to_string(lock.path()).unwrap();
        assert!(text.contains(&format!("pid = {}", std::process::id())), "{text}");
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is training into this run folder"), "{e}");
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_lock_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited: its id is free (until reused, which a test cannot rule out,
        // but not within these few lines).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        fs::write(dir.path().join(LOCK_FILE), format!("pid = {pid}\nhost = \"{}\"\n", hostname())).unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        assert!(fs::read_to_string(lock.path()).unwrap().contains(&format!("pid = {}", std::process::id())));
    }

    #[test]
    fn a_lock_from_another_host_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let text = "pid = 1\nhost = \"elsewhere\"\n";
        fs::write(dir.path().join(LOCK_FILE), text).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("on host elsewhere") && e.contains(LOCK_FILE), "{e}");
        assert_eq!(fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(), text);
    }
}
