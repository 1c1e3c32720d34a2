//! SIGTERM and SIGINT during training: the first asks the trainer to finish its current step,
//! write a checkpoint and exit 0 (with how to resume); a second one ends the process at once
//! (exit 130; the run folder's lock is then stale and the next start takes it over).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only async-signal-safe work here: an atomic swap, and _exit on the second signal.
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(130) };
    }
}

/// Installs the handlers; returns the flag they set.
pub fn install() -> &'static AtomicBool {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only touches an atomic and calls _exit; sigaction is given a zeroed,
        // then filled, struct as POSIX requires.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                tracing::warn!(signal, "cannot install a signal handler; a signal will end the run without a checkpoint");
            }
        }
    }
    &STOP
}
