//! `train bench allreduce`: the gradient all-reduce of CUDA runs (NCCL on device memory, the code
//! path of training: `anchorage_train::trainer::nccl`) beside the same sum through the host (device
//! to host, summed in memory, host to device: what the TCP node link does at best, without the
//! network), on every GPU given, one thread per GPU as in training. It checks the sums exactly
//! (values chosen to be exact in f32 and bf16) before timing them, and prints one JSON line.
//!
//! On one GPU the communicator has one rank, so the NCCL sum is a copy: it still checks the device
//! memory handling (contiguity, ownership, streams); the bandwidth means something from two GPUs.

use clap::Args;

#[derive(Debug, Args)]
pub struct AllReduceArgs {
    /// CUDA device ordinals, one rank each (default: every visible GPU).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<usize>,
    /// Elements of the summed buffer (default: 32 Mi, the trainer's bucket size).
    #[arg(long, default_value_t = 1 << 25)]
    pub elements: usize,
    /// Timed repetitions of each path.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Sum in bf16 instead of f32.
    #[arg(long)]
    pub bf16: bool,
    /// The buffer is also summed as this many buckets, as the trainer sums a step's gradients:
    /// launched back to back, each assembled while the previous one is summed, against one
    /// bucket at a time.
    #[arg(long, default_value_t = 4)]
    pub buckets: usize,
}

#[cfg(not(feature = "cuda"))]
pub fn run(_: AllReduceArgs) -> anyhow::Result<()> {
    anyhow::bail!("train bench allreduce needs a build with `--features cuda` (NCCL on CUDA devices)")
}

#[cfg(feature = "cuda")]
pub fn run(args: AllReduceArgs) -> anyhow::Result<()> {
    imp::run(args)
}

#[cfg(feature = "cuda")]
mod imp {
    use std::sync::{Arc, Barrier, Mutex};
    use std::time::Instant;

    use anchorage_train::trainer::nccl::{new_id, NcclComm};
    use anyhow::{bail, Context};
    use burn::backend::cuda::CudaDevice;
    use burn::backend::Cuda;
    use burn::tensor::{DType, Tensor, TensorData};

    use super::AllReduceArgs;

    /// What one rank measured.
    struct RankResult {
        nccl_s: Vec<f64>,
        host_s: Vec<f64>,
        /// The buckets launched back to back (`NcclComm::sum_each`).
        pipelined_s: Vec<f64>,
        /// The same buckets one `NcclComm::sum` at a time.
        one_by_one_s: Vec<f64>,
    }

    /// Element `i` of rank `r`: halves below 4 plus the rank, so every partial sum over up to 16
    /// ranks is a multiple of 0.5 below 128 (at most 255 half-units, 8 significant bits): exact
    /// in f32 and in bf16.
    fn value(i: usize, rank: usize) -> f32 {
        (i % 8) as f32 * 0.5 + rank as f32
    }

    /// The exact sum of element `i` over `world` ranks.
    fn total(i: usize, world: usize) -> f32 {
        (i % 8) as f32 * 0.5 * world as f32 + (world * (world - 1) / 2) as f32
    }

    pub fn run(args: AllReduceArgs) -> anyhow::Result<()> {
        crate::backend::check(anchorage_train::recipe::Backend::Cuda).map_err(anyhow::Error::msg)?;
        let devices = if args.devices.is_empty() {
            let n = cudarc::driver::safe::CudaContext::device_count().map_err(|e| anyhow::anyhow!("counting CUDA devices: {e:?}"))?;
            (0..n.max(0) as usize).collect()
        } else {
            args.devices.clone()
        };
        if devices.is_empty() {
            bail!("no CUDA device");
        }
        if devices.len() > 16 {
            bail!("at most 16 ranks (the check values stay exact in bf16 up to 16); got {}", devices.len());
        }
        if args.elements == 0 || args.iters == 0 || args.buckets == 0 {
            bail!("--elements, --iters and --buckets must be positive");
        }
        if args.buckets > args.elements {
            bail!("--buckets {} is more than --elements {}", args.buckets, args.elements);
        }
        let world = devices.len();
        let id = new_id()?;
        let host_total = Arc::new(Mutex::new(Vec::<f32>::new()));
        let barrier = Arc::new(Barrier::new(world));
        let results: Vec<anyhow::Result<RankResult>> = std::thread::scope(|scope| {
            let handles: Vec<_> = devices
                .iter()
                .enumerate()
                .map(|(rank, &ordinal)| {
                    let (id, host_total, barrier, args) = (&id, host_total.clone(), barrier.clone(), &args);
                    scope.spawn(move || rank_run(rank, ordinal, world, id, args, &host_total, &barrier))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a rank panicked")))).collect()
        });
        let results: Vec<RankResult> = results.into_iter().collect::<anyhow::Result<_>>()?;
        let median = |all: Vec<f64>| {
            let mut all = all;
            all.sort_by(f64::total_cmp);
            all[all.len() / 2]
        };
        // A collective is as slow as its slowest rank: the per-iteration maximum over ranks.
        let slowest = |pick: fn(&RankResult) -> &Vec<f64>| median((0..args.iters).map(|k| results.iter().map(|r| pick(r)[k]).fold(0.0, f64::max)).collect());
        let nccl_s = slowest(|r| &r.nccl_s);
        let host_s = slowest(|r| &r.host_s);
        let pipelined_s = slowest(|r| &r.pipelined_s);
        let one_by_one_s = slowest(|r| &r.one_by_one_s);
        let bytes = (args.elements * if args.bf16 { 2 } else { 4 }) as f64;
        // NCCL's convention (nccl-tests): algorithm bandwidth = bytes / time; bus bandwidth adds
        // the ring's 2 (n - 1) / n, comparable across rank counts.
        let bus = |s: f64| bytes / s * 2.0 * (world as f64 - 1.0) / world as f64 / 1e9;
        let json = serde_json::json!({
            "bench": "allreduce",
            "devices": devices,
            "ranks": world,
            "elements": args.elements,
            "dtype": if args.bf16 { "bf16" } else { "f32" },
            "iters": args.iters,
            "sums_exact": true,
            "nccl_s": nccl_s,
            "host_s": host_s,
            "host_over_nccl": host_s / nccl_s,
            "nccl_algbw_gbs": bytes / nccl_s / 1e9,
            "nccl_busbw_gbs": bus(nccl_s),
            "buckets": args.buckets,
            "buckets_pipelined_s": pipelined_s,
            "buckets_one_by_one_s": one_by_one_s,
            "one_by_one_over_pipelined": one_by_one_s / pipelined_s,
        });
        println!("{json}");
        Ok(())
    }

    fn rank_run(rank: usize, ordinal: usize, world: usize, id: &[u8], args: &AllReduceArgs, host_total: &Mutex<Vec<f32>>, barrier: &Barrier) -> anyhow::Result<RankResult> {
        let device = CudaDevice::new(ordinal);
        let n = args.elements;
        let dtype = if args.bf16 { DType::BF16 } else { DType::F32 };
        let data: Vec<f32> = (0..n).map(|i| value(i, rank)).collect();
        let input = Tensor::<Cuda, 1>::from_data(TensorData::new(data, [n]), &device).cast(dtype);
        let comm = NcclComm::join(ordinal, rank, world, id).with_context(|| format!("rank {rank} on CUDA device {ordinal}"))?;

        // Correctness first: the NCCL sum equals the exact total.
        let summed = comm.sum(input.clone())?.cast(DType::F32).into_data().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if let Some(i) = (0..n).find(|&i| summed[i] != total(i, world)) {
            bail!("rank {rank}: element {i} of the NCCL sum is {}, expected {}", summed[i], total(i, world));
        }
        // The trainer's buckets: each a fresh tensor (as the trainer's concatenation makes), the
        // next one made while the previous one is summed. Their sums, put back together, are the
        // same exact total.
        let bounds: Vec<(usize, usize)> = (0..args.buckets).map(|b| (b * n / args.buckets, (b + 1) * n / args.buckets)).collect();
        let bucket = |&(start, end): &(usize, usize)| -> Result<Tensor<Cuda, 1>, anchorage_train::TrainError> { Ok(input.clone().slice(start..end) * 1.0) };
        let mut sums = Vec::new();
        comm.sum_each(bounds.iter().map(bucket), |sum| sums.push(sum))?;
        let summed = Tensor::cat(sums, 0).cast(DType::F32).into_data().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if let Some(i) = (0..n).find(|&i| summed[i] != total(i, world)) {
            bail!("rank {rank}: element {i} of the bucketed NCCL sum is {}, expected {}", summed[i], total(i, world));
        }
        let mut pipelined_s = Vec::with_capacity(args.iters);
        let mut one_by_one_s = Vec::with_capacity(args.iters);
        for _ in 0..=args.iters {
            barrier.wait();
            let t = Instant::now();
            let mut sums = Vec::new();
            comm.sum_each(bounds.iter().map(bucket), |sum| sums.push(sum))?;
            pipelined_s.push(t.elapsed().as_secs_f64());
            drop(sums);
            barrier.wait();
            let t = Instant::now();
            let sums = bounds.iter().map(|b| comm.sum(bucket(b)?)).collect::<Result<Vec<_>, _>>()?;
            one_by_one_s.push(t.elapsed().as_secs_f64());
            drop(sums);
        }
        pipelined_s.remove(0);
        one_by_one_s.remove(0);

        let mut nccl_s = Vec::with_capacity(args.iters);
        for _ in 0..=args.iters {
            barrier.wait();
            let t = Instant::now();
            let out = comm.sum(input.clone())?;
            nccl_s.push(t.elapsed().as_secs_f64());
            drop(out);
        }
        nccl_s.remove(0); // the first one warms NCCL's channels up
        let mut host_s = Vec::with_capacity(args.iters);
        for _ in 0..=args.iters {
            barrier.wait();
            let t = Instant::now();
            let values = input.clone().cast(DType::F32).into_data().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
            {
                let mut total = host_total.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                if total.len() != n {
                    *total = vec![0.0; n];
                }
                for (t, v) in total.iter_mut().zip(&values) {
                    *t += v;
                }
            }
            barrier.wait();
            let total = host_total.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
            let back = Tensor::<Cuda, 1>::from_data(TensorData::new(total, [n]), &device).cast(dtype);
            let _ = back.clone().slice(0..1).into_data(); // wait for the upload
            host_s.push(t.elapsed().as_secs_f64());
            barrier.wait();
            if rank == 0 {
                host_total.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clear();
            }
        }
        host_s.remove(0);
        Ok(RankResult { nccl_s, host_s, pipelined_s, one_by_one_s })
    }
}
