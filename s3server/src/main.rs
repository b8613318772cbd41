//! `mr-s3-server`: the s3s-fs S3 server (crates.io `s3s-fs`, the library behind its own
//! `s3s-fs` binary) serving a folder, built with the workspace so that it is one more
//! static binary of the image rather than a separate install. Each top-level folder of
//! `--root` is a bucket; `--bucket` creates ones that are missing. With
//! `--access-key`/`--secret-key`, requests must be signed with them (SigV4).
//!
//! The tests restart it mid-job (its objects are files, so they survive), the bench
//! measures S3 storage against it, and the compose profile `s3` runs it.

use anyhow::Context;
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "An S3-compatible server over a folder (s3s-fs)")]
struct Cli {
    /// Address to serve on.
    #[arg(long, env = "MR_S3_LISTEN", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Folder holding the buckets (one folder each).
    #[arg(long, env = "MR_S3_ROOT")]
    root: PathBuf,
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    mr_common::telemetry::init(cli.log_format);
    for bucket in &cli.buckets {
        let dir = cli.root.join(bucket);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating bucket {}", dir.display()))?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let fs = s3s_fs::FileSystem::new(&cli.root)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("serving {}", cli.root.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    match (cli.access_key, cli.secret_key) {
        (Some(access), Some(secret)) => builder.set_auth(SimpleAuth::from_single(access, secret)),
        (None, None) => {}
        _ => anyhow::bail!("--access-key and --secret-key go together"),
    }
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    tracing::info!(addr = %listener.local_addr()?, root = %cli.root.display(), "S3 server listening");
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
