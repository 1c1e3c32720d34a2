//! This package's integration tests as one test binary: each file below is a module, so the
//! package links one test executable instead of one per file (less disk and link time in CI).
//! Run one file's tests with `cargo test --test integration <file>::`.

mod checkpoint_newline;
mod master_weights;
mod run_dir;
mod splice_loss;

/// Tests that seed or draw from the backend's global random generator hold this guard: the tests
/// of one binary run on parallel threads, and a draw in one test between another test's seeding
/// and its draws changes that test's "same seed, same weights" (run_dir.rs failed so).
pub fn backend_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
