//! `mr-worker`: runs tasks for a coordinator (see the `mr_worker` crate), or with
//! `sequential`, runs an app in one process as the reference for tests.

use anyhow::Context;
use clap::{Parser, Subcommand};
use mr_common::privileges;
use mr_common::telemetry::{self, LogFormat};
use mr_worker::app_runtime::Limits;
use mr_worker::runner::{self, WorkerConfig};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

/// Every flag's default comes from here, the one source of defaults.
static DEFAULTS: LazyLock<WorkerConfig> = LazyLock::new(WorkerConfig::default);

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "mr worker: runs map and reduce tasks of Wasm apps")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The coordinator's gRPC URL.
    #[arg(long, env = "MR_COORDINATOR", default_value_t = DEFAULTS.coordinator.clone())]
    coordinator: String,
    /// Shared data folder: inputs, intermediates and outputs (with file:// storage).
    #[arg(long, env = "MR_DATA_DIR", default_value_os_t = DEFAULTS.data_dir.clone())]
    data_dir: PathBuf,
    /// Where inputs, intermediates and outputs live: file:// (the data folder) or
    /// s3://BUCKET[/PREFIX] (credentials and endpoint from AWS_*; then no data folder is
    /// needed). The coordinator's --storage.
    #[arg(long, env = "MR_STORAGE", default_value_t = DEFAULTS.storage.url())]
    storage: String,
    /// Name in the coordinator's records and logs (default: <hostname>-<pid>).
    #[arg(long, env = "MR_WORKER_ID")]
    worker_id: Option<String>,
    /// Send `authorization: Bearer <TOKEN>` on every call (the coordinator's --auth-token).
    #[arg(long, env = "MR_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// PEM CA to trust for an https:// coordinator.
    #[arg(long, env = "MR_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Name to verify the coordinator's certificate against instead of the URL's host.
    #[arg(long, env = "MR_TLS_DOMAIN")]
    tls_domain: Option<String>,
    /// Most tasks to hold at once: the coordinator batches small map tasks up to this many
    /// per round trip (1: one at a time).
    #[arg(long, env = "MR_BATCH_TASKS", default_value_t = DEFAULTS.batch_tasks)]
    batch_tasks: u32,
    /// Where compiled apps are kept, so that an app is compiled once and not again after a
    /// restart (default: the data folder's `.mr/cache`, shared by its workers).
    #[arg(long, env = "MR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Log line format.
    #[arg(long, env = "MR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Runs an app over whole files in this one process and prints sorted `key value` lines
    /// (the lab's mrsequential; the reference the tests compare against).
    Sequential {
        /// The app's `.wasm` file.
        #[arg(long)]
        app: PathBuf,
        /// Write here instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Input files, relative to the data folder.
        #[arg(required = true)]
        inputs: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    // Before the allocator maps much: see the function for why (a quarter of a large map's
    // CPU went to zeroing huge pages).
    let thp = mr_common::limits::disable_transparent_huge_pages();
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    if let Err(error) = thp {
        tracing::warn!(%error, "could not turn transparent huge pages off (PR_SET_THP_DISABLE)");
    }
    let _ = mr_common::limits::raise_open_file_limit(); // logs what it did; runs on without
    // Started as root (compose), run as the data folder's owner before any thread or file
    // exists. `sequential` is a local tool: it runs as whoever starts it.
    let storage = mr_storage::Storage::open(&cli.storage)?;
    if cli.command.is_none() {
        // With S3 storage there is no data folder: the scratch folder's parent stands in
        // (as root: every capability dropped all the same).
        let owner_of = match storage.s3() {
            None => cli.data_dir.clone(),
            Some(_) => std::env::temp_dir(),
        };
        privileges::drop_to_data_owner(&owner_of)?;
    }
    // A file size limit (RLIMIT_FSIZE) must fail the write, as a full disk does, so the task
    // fails with a clear error; by default SIGXFSZ would kill the worker instead.
    // SAFETY: installing SIG_IGN for one signal before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // One thread runs the worker's loop, its RPCs and heartbeats (tasks run on a blocking
    // thread): a task's report and the next request then cost no hand-offs between threads.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work(cli, storage))
}

async fn work(cli: Cli, storage: mr_storage::Storage) -> anyhow::Result<()> {
    if let Some(Command::Sequential {
        app,
        output,
        inputs,
    }) = cli.command
    {
        let limits = Limits {
            time: Duration::from_secs(600),
            memory_bytes: 4 << 30,
        };
        let run = |out: &mut dyn std::io::Write| {
            let mut out = std::io::BufWriter::new(out);
            mr_worker::sequential::run(
                &app,
                &cli.data_dir,
                &inputs,
                &limits,
                cli.cache_dir.as_deref(),
                &mut out,
            )
        };
        match output {
            Some(path) => {
                let mut file = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                run(&mut file)?
            }
            None => run(&mut std::io::stdout().lock())?,
        }
        return Ok(());
    }
    let config = WorkerConfig {
        coordinator: cli.coordinator,
        data_dir: cli.data_dir,
        storage,
        worker_id: cli.worker_id.unwrap_or_else(runner::default_worker_id),
        auth_token: cli.auth_token,
        batch_tasks: cli.batch_tasks.max(1),
        cache_dir: cli.cache_dir,
        tls: mr_common::security::ClientTls {
            ca: cli.tls_ca,
            domain: cli.tls_domain,
        },
        ..WorkerConfig::default()
    };
    runner::run(config, mr_common::shutdown::signal()).await?;
    // The task was handed back and reported; an app still computing on its blocking thread
    // has nobody to report to, and waiting for it (as dropping the runtime would) could
    // take up to the task's time limit.
    std::process::exit(0)
}
