//! `mr-s3-server`: the s3s-fs S3 server (crates.io `s3s-fs`, the library behind its own
//! `s3s-fs` binary) serving a folder, built with the workspace so that it is one more
//! static binary of the image rather than a separate install. Each top-level folder of
//! `--root` is a bucket; `--bucket` creates ones that are missing. With
//! `--access-key`/`--secret-key`, requests must be signed with them (SigV4).
//!
//! GETs are served by reads of 1 MiB rather than s3s-fs's 4 KiB (`served`).
//!
//! The tests restart it mid-job (its objects are files, so they survive), the bench
//! measures S3 storage against it, and `docker-compose.s3.yml` runs it. Started as root,
//! it first takes the identity of `--root`'s owner, as the other binaries take the data
//! folder's (`mr_common::privileges`), so the objects it writes are that user's files.
//! `mr-s3-server health` is the container's health check (there is no shell in the image).

mod served;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "An S3-compatible server over a folder (s3s-fs)",
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to serve on.
    #[arg(long, env = "MR_S3_LISTEN", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Folder holding the buckets (one folder each).
    #[arg(long, env = "MR_S3_ROOT", required = true)]
    root: Option<PathBuf>,
    /// Buckets to create if missing (repeatable).
    #[arg(long = "bucket", env = "MR_S3_BUCKETS", value_delimiter = ',')]
    buckets: Vec<String>,
    /// Access key clients must sign with (with --secret-key); none: any request is served.
    #[arg(long, env = "MR_S3_ACCESS_KEY")]
    access_key: Option<String>,
    /// Secret key clients must sign with.
    #[arg(long, env = "MR_S3_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Log line format.
    #[arg(long, env = "MR_LOG_FORMAT", value_enum, default_value_t = mr_common::telemetry::LogFormat::Text)]
    log_format: mr_common::telemetry::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Exits 0 if a server accepts connections on ADDR (the compose health check).
    Health {
        #[arg(long, default_value = "127.0.0.1:9000")]
        addr: SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Health { addr }) = cli.command {
        return health(addr);
    }
    mr_common::telemetry::init(cli.log_format);
    let root = cli.root.clone().context("--root is required")?;
    // Before any thread or file exists: as root, become the folder's owner.
    mr_common::privileges::drop_to_data_owner(&root)?;
    for bucket in &cli.buckets {
        let dir = root.join(bucket);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating bucket {}", dir.display()))?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(cli, root))
}

/// A connection to ADDR: the server binds before it serves, so one accepted connection
/// means it is up (no request: s3s would log an unsigned one as an error every time).
fn health(addr: SocketAddr) -> anyhow::Result<()> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("no S3 server answers on {addr}"))?;
    println!("SERVING");
    Ok(())
}

async fn serve(cli: Cli, root: PathBuf) -> anyhow::Result<()> {
    let served =
        served::Served::new(&root).with_context(|| format!("serving {}", root.display()))?;
    let mut builder = S3ServiceBuilder::new(served);
    match (cli.access_key, cli.secret_key) {
        (Some(access), Some(secret)) => builder.set_auth(SimpleAuth::from_single(access, secret)),
        (None, None) => {}
        _ => anyhow::bail!("--access-key and --secret-key go together"),
    }
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    tracing::info!(addr = %listener.local_addr()?, root = %root.display(), "S3 server listening");
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(mr_common::shutdown::signal());
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.as_mut() => break,
        };
        // Small answers go out at once: without it, a response written in two parts
        // waits for the client's delayed ACK (~40 ms per request on loopback).
        if let Err(error) = socket.set_nodelay(true) {
            tracing::warn!(%error, "setting TCP_NODELAY failed");
        }
        let conn = http.serve_connection(TokioIo::new(socket), service.clone());
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
    }
    Ok(())
}
