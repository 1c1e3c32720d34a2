//! glibc's allocator, tuned for training loops that allocate and free the same large tensors every
//! step.
//!
//! By default glibc returns freed memory at the top of the heap to the system (`M_TRIM_THRESHOLD`,
//! 128 KiB, raised dynamically) and maps large blocks with `mmap` and unmaps them when freed. A
//! CPU training step then spends its time in the kernel: page faults and zeroing for every fresh
//! page, and, with several threads, TLB shootdowns between cores for every unmapping. On the
//! demo's step (two replicas on a 2-core VM) system time was 15-30% of user time. Keeping freed
//! memory in the process (a 1 GiB trim threshold, 64 MiB of top padding, blocks up to 32 MiB, the
//! most glibc allows, from the heap) brought it to about 3% and the step 13-27% faster
//! (docs/benchmarks.md). The cost is resident memory that is not handed back between steps,
//! which a training process reuses at its next step anyway.
//!
//! Any `MALLOC_*_` variable the user sets is left in charge (glibc read it at start-up).

/// Applies the settings above unless the environment sets glibc's own.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = ["MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if user_set {
            return;
        }
        // SAFETY: mallopt only changes the allocator's parameters; it is called once at start-up
        // before any thread exists, and its failure (a 0 return) leaves glibc's defaults.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    }
}
