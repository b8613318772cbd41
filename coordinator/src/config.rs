//! Every tunable of the coordinator, in one place, with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest `n_reduce` a job may ask for: each map task writes one file per partition, so
/// this bounds the files a single job can create (maps × partitions).
pub const MAX_N_REDUCE: u32 = 10_000;

/// Configuration of a coordinator. `Default` gives the documented defaults; the binary fills
/// it from flags and `MR_*` environment variables.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Address of the gRPC server. Default `0.0.0.0:50051`.
    pub listen: SocketAddr,
    /// The shared data folder (inputs, intermediates, outputs). Default `./data`.
    pub data_dir: PathBuf,
    /// Where `<app>.wasm` modules are found. Default `./target/apps`.
    pub apps_dir: PathBuf,
    /// An attempt that neither reports nor heartbeats for this long is presumed dead and its
    /// task goes back to Idle. Default 10 s, as in the lab.
    pub task_timeout: Duration,
    /// Longest a `RequestTask` long poll is held before answering "no task". Default 20 s.
    pub long_poll: Duration,
    /// Largest input split per map task when a job does not choose. Default 16 MiB.
    pub default_split_bytes: u64,
    /// Failures of one task (app errors, limits, I/O) after which its job fails. Default 4.
    pub max_task_failures: u32,
    /// CPU-time budget of the app for one task, enforced by the worker. Default 60 s.
    pub task_time_limit: Duration,
    /// Memory limit of the app's linear memory for one task. Default 256 MiB.
    pub task_memory_limit: u64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            data_dir: PathBuf::from("data"),
            apps_dir: PathBuf::from("target/apps"),
            task_timeout: Duration::from_secs(10),
            long_poll: Duration::from_secs(20),
            default_split_bytes: 16 << 20,
            max_task_failures: 4,
            task_time_limit: Duration::from_secs(60),
            task_memory_limit: 256 << 20,
        }
    }
}
