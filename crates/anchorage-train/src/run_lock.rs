//! The run-folder lock: `<run>/train.lock` holds the PID and host of the process that trains into
//! the folder, for as long as it runs. A second process on the same run folder (with or without
//! `--resume`) is refused before it writes anything. A lock whose process is gone (killed with
//! SIGKILL, a crash, a power cut) is stale: the next start on the same host takes it over.
//!
//! Liveness comes from the kernel where it can: the holder keeps an exclusive `flock` on the file,
//! which ends with its process, so two starts racing for a stale lock cannot both win and a reused
//! PID does not matter. A lock that names another host is refused even when its `flock` is free
//! (filesystems shared between hosts do not all carry `flock`); on the same host a free lock whose
//! PID is still alive is refused too (a holder without `flock`, e.g. an older anchorage).

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use crate::TrainError;

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = "train.lock";

/// A held run-folder lock; dropping it removes the lock file (and the `flock` goes with the file).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    contents: String,
    _file: File,
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
        // A few rounds: the file may be removed by its holder between our open and our flock.
        for _ in 0..5 {
            let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| io(&path, e))?;
            let text = fs::read_to_string(&path).unwrap_or_default();
            if !try_flock(&file) {
                return Err(refusal(&path, parse(&text), true));
            }
            if !same_file(&file, &path) {
                continue;
            }
            match parse(&text) {
                None => {}
                Some(h) if h.pid == std::process::id() && h.host == hostname() => {}
                Some(h) if h.host != hostname() || alive(h.pid) => return Err(refusal(&path, Some(h), false)),
                Some(h) => tracing::warn!(lock = %path.display(), pid = h.pid, "taking over a stale run-folder lock (its process is gone)"),
            }
            file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(contents.as_bytes())).and_then(|()| file.sync_all()).map_err(|e| io(&path, e))?;
            return Ok(Self { path, contents, _file: file });
        }
        Err(TrainError::Locked { path, message: "another process keeps taking and releasing the lock".into() })
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

fn refusal(path: &Path, holder: Option<Holder>, held: bool) -> TrainError {
    let path = path.to_path_buf();
    let message = match holder {
        Some(h) if h.host == hostname() => format!(
            "process {} is training into this run folder (wait for it, or stop it with SIGTERM{})",
            h.pid,
            if held { String::new() } else { format!("; if that process id now belongs to another program, delete {}", path.display()) }
        ),
        Some(h) => format!("process {} on host {} is training into this run folder (if it is gone, delete {})", h.pid, h.host, path.display()),
        None => "another process is starting in this run folder".into(),
    };
    TrainError::Locked { path, message }
}

/// An exclusive, non-blocking `flock` on the file: false when another open file holds it.
#[cfg(unix)]
fn try_flock(file: &File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this File owns; the lock ends when the File is closed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_flock(_file: &File) -> bool {
    true
}

/// Whether `path` still names the file we hold open (its holder may have removed it meanwhile).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> bool {
    true
}

fn parse(text: &str) -> Option<Holder> {
    let table: toml::Table = text.parse().ok()?;
    let pid = u32::try_from(table.get("pid")?.as_integer()?).ok()?;
    let host = table.get("host")?.as_str()?.to_string();
    Some(Holder { pid, host })
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
        // Another open file description of the same file (as another process has) is refused,
        // even with our own PID in the file.
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
    fn a_lock_naming_a_live_process_is_refused_even_without_its_flock() {
        let dir = tempfile::tempdir().unwrap();
        // Process 1 is alive on every Unix host.
        let text = format!("pid = 1\nhost = \"{}\"\n", hostname());
        fs::write(dir.path().join(LOCK_FILE), &text).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("process 1 is training") && e.contains("delete"), "{e}");
        assert_eq!(fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(), text);
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
