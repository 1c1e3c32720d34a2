//! What can go wrong between data-parallel replicas and nodes.

/// What can go wrong between replicas.
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    /// The TCP link between nodes (rendezvous, handshake, a sum).
    #[error("multi-node link: {message}")]
    Link { message: String },
    /// burn-collective's registration, all-reduce or broadcast (its error has no Display).
    #[error("data parallel: {what} failed: {message}")]
    Collective { what: &'static str, message: String },
    /// A summed buffer could not be read back from the device.
    #[error("data parallel: reading a summed buffer: {message}")]
    Tensor { message: String },
    /// ZeRO-1's f32 masters on their way to a checkpoint (`master.rs`).
    #[error("ZeRO-1's f32 master weights: {message}")]
    Masters { message: String },
}
