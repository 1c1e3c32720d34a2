//! One seeded draw at a time per process. burn's backends keep one random generator per backend
//! type for the whole process: `B::seed` resets it and every random tensor after it draws from
//! it. Two models built at once on different threads (test harnesses, tools that open several
//! runs) would interleave their draws and get weights that depend on timing, breaking the promise
//! that a seed (and a resumed process) draws the same weights. Every seed-then-draw sequence in
//! this crate holds this lock.

use std::sync::{Mutex, MutexGuard};

static SEEDED_DRAWS: Mutex<()> = Mutex::new(());

/// Held from `B::seed` to the last draw that depends on it. A panic while held (it poisons the
/// lock) does not stop later builds: the guarded state is the backend's generator, which every
/// holder reseeds first.
pub fn lock() -> MutexGuard<'static, ()> {
    SEEDED_DRAWS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
