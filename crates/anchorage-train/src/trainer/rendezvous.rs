//! A slot through which a process's first replica hands its other replicas what they need to join
//! the run's collective (the NCCL unique id on CUDA), once it has it: it makes it, or receives it
//! from node 0 over the node link, after the other replicas' threads have started.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::parallel_error::ParallelError;
use crate::TrainError;

/// The bytes the process's first replica publishes for the others (the NCCL unique id), or the reason
/// there are none. Cheap to clone; all clones share one slot. Equal to every other `Rendezvous`
/// (it is not part of what a [`World`](super::World) means).
#[derive(Clone, Default)]
pub struct Rendezvous {
    slot: Arc<(Mutex<Option<Result<Vec<u8>, String>>>, Condvar)>,
}

impl Rendezvous {
    /// Publishes the bytes, or the reason there are none (the waiting replicas then fail with it).
    /// Only the first publication counts.
    pub fn publish(&self, id: Result<Vec<u8>, String>) {
        let (slot, ready) = &*self.slot;
        if let Ok(mut slot) = slot.lock() {
            slot.get_or_insert(id);
            ready.notify_all();
        }
    }

    /// Waits up to `timeout` for the published bytes.
    pub fn wait(&self, timeout: Duration) -> Result<Vec<u8>, TrainError> {
        let (slot, ready) = &*self.slot;
        let poisoned = || -> TrainError { ParallelError::Link { message: "the rendezvous slot was poisoned by a panicked thread".into() }.into() };
        let guard = slot.lock().map_err(|_| poisoned())?;
        let (guard, _) = ready.wait_timeout_while(guard, timeout, |s| s.is_none()).map_err(|_| poisoned())?;
        match guard.as_ref() {
            Some(Ok(id)) => Ok(id.clone()),
            Some(Err(why)) => Err(ParallelError::Collective { what: "rendezvous", message: format!("the first replica could not set up the collective: {why}") }.into()),
            None => Err(ParallelError::Collective { what: "rendezvous", message: format!("the first replica published nothing within {} s", timeout.as_secs()) }.into()),
        }
    }
}

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rendezvous")
    }
}

impl PartialEq for Rendezvous {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_get_the_first_publication_or_its_error_and_never_wait_for_ever() {
        let slot = Rendezvous::default();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let slot = slot.clone();
                std::thread::spawn(move || slot.wait(Duration::from_secs(30)))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        slot.publish(Ok(vec![7, 8, 9]));
        slot.publish(Ok(vec![1])); // too late: the first one counts
        for w in waiters {
            assert_eq!(w.join().unwrap().unwrap(), vec![7, 8, 9]);
        }
        assert_eq!(slot.wait(Duration::ZERO).unwrap(), vec![7, 8, 9]);

        let failed = Rendezvous::default();
        failed.publish(Err("node 1 did not join".into()));
        let err = failed.wait(Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.contains("could not set up the collective: node 1 did not join"), "{err}");

        let silent = Rendezvous::default();
        let err = silent.wait(Duration::from_millis(20)).unwrap_err().to_string();
        assert!(err.contains("published nothing within 0 s"), "{err}");
    }
}
