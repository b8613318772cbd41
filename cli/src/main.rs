//! `mr`: the command-line client of mr's job API. Parses the command line (clap), connects
//! to the coordinator and runs one command; an error is one line on stderr, `mr: …`.
//!
//! Exit codes: 0 success; 1 an error (or, for `watch` and `submit --watch`, a FAILED job);
//! 2 a CANCELLED job (`watch`, `submit --watch`) or a command line clap refuses.

mod client;
mod commands;
mod error;
mod output;
mod watch;

use clap::{Parser, Subcommand};
use mr_common::security::ClientTls;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mr",
    version,
    about = "mr: submit, follow and read MapReduce jobs on an mr coordinator",
    after_help = "Exit codes: 0 success; 1 error or FAILED job; 2 CANCELLED job (watch) or bad usage."
)]
struct Cli {
    /// The coordinator's gRPC URL (https:// needs --tls-ca).
    #[arg(
        long,
        global = true,
        display_order = 100,
        env = "MR_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    coordinator: String,
    /// Send `authorization: Bearer <TOKEN>` on every call (the coordinator's --auth-token).
    #[arg(
        long,
        global = true,
        display_order = 101,
        env = "MR_AUTH_TOKEN",
        hide_env_values = true
    )]
    auth_token: Option<String>,
    /// PEM CA to trust for an https:// coordinator.
    #[arg(long, global = true, display_order = 102, env = "MR_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Name to verify the coordinator's certificate against instead of the URL's host.
    #[arg(long, global = true, display_order = 103, env = "MR_TLS_DOMAIN")]
    tls_domain: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Submit a job and print its id (then follow it with --watch).
    Submit {
        /// The app: `<APP>.wasm` in the coordinator's apps folder (e.g. wc, indexer).
        app: String,
        /// Input files: paths or globs relative to the data folder (quote globs).
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Number of reduce tasks (and output files).
        #[arg(long = "reduce", value_name = "N", default_value_t = 10)]
        n_reduce: u32,
        /// Largest input split one map task reads, in bytes [default: the coordinator's].
        #[arg(long, value_name = "BYTES")]
        split_bytes: Option<u64>,
        /// How many records the app fails on the job may skip [default: 0, none].
        #[arg(long, value_name = "N")]
        max_skipped_records: Option<u64>,
        /// Then follow the job as `mr watch` does (and exit as it does).
        #[arg(long)]
        watch: bool,
        /// Print `{"job_id": "…"}` (and, with --watch, one JSON job per update).
        #[arg(long)]
        json: bool,
    },
    /// Follow a job until it ends: exit 0 SUCCEEDED, 1 FAILED, 2 CANCELLED.
    ///
    /// On a terminal: progress bars per phase (tasks done, input MiB/s, ETA). Otherwise one
    /// line per change, `map 3/8 reduce 0/10 RUNNING`. Then the final state and error.
    Watch {
        /// The job's id.
        job: String,
        /// One JSON job per update instead.
        #[arg(long)]
        json: bool,
    },
    /// List every job the coordinator knows, newest first.
    Jobs {
        /// Print `{"jobs": [...]}` instead.
        #[arg(long)]
        json: bool,
    },
    /// A job's state, progress, inputs, outputs, error and skipped records.
    Status {
        /// The job's id.
        job: String,
        /// Also every task: kind, index, state, attempts, worker, input split.
        #[arg(long)]
        tasks: bool,
        /// Print the job as JSON instead (with `tasks` under --tasks).
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending or running job; prints its state then.
    Cancel {
        /// The job's id.
        job: String,
        /// Print the job as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// List the workers the coordinator has heard from.
    Workers {
        /// Print `{"workers": [...]}` instead.
        #[arg(long)]
        json: bool,
    },
    /// Write a SUCCEEDED job's output (every mr-out-Y, in order) to stdout.
    Cat {
        /// The job's id.
        job: String,
    },
    /// Apps: upload one, list them, delete an uploaded name.
    #[command(subcommand)]
    Apps(AppsCommand),
}

#[derive(Subcommand)]
enum AppsCommand {
    /// Upload an app module (a .wasm with the app interface); jobs can then name it.
    Push {
        /// The module file.
        file: std::path::PathBuf,
        /// The name jobs use [default: the file's name without .wasm].
        #[arg(long)]
        name: Option<String>,
        /// Print the app as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Uploaded apps, then the coordinator's built-ins.
    List {
        /// Print `{"apps": [...]}` instead.
        #[arg(long)]
        json: bool,
    },
    /// Forget an uploaded name (jobs that ran it keep their module).
    Delete {
        /// The uploaded name.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let message = match e.downcast_ref::<error::CliError>() {
                Some(cli_error) if cli_error.is_closed_pipe() => return ExitCode::SUCCESS,
                // Its message already says all its sources do.
                Some(cli_error) => cli_error.to_string(),
                None => format!("{e:#}"),
            };
            eprintln!("mr: {}", error::one_line(&message));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    use anyhow::Context;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(dispatch(cli))?)
}

async fn dispatch(cli: Cli) -> Result<u8, error::CliError> {
    let target = client::Target {
        url: cli.coordinator,
        auth_token: cli.auth_token,
        tls: ClientTls {
            ca: cli.tls_ca,
            domain: cli.tls_domain,
        },
    };
    let mut client = client::connect(&target).await?;
    let client = &mut client;
    match cli.command {
        Command::Submit {
            app,
            inputs,
            n_reduce,
            split_bytes,
            max_skipped_records,
            watch,
            json,
        } => {
            let submit = commands::Submit {
                app,
                inputs,
                n_reduce,
                split_bytes: split_bytes.unwrap_or(0),
                max_skipped_records: max_skipped_records.unwrap_or(0),
                watch,
                json,
            };
            commands::submit(client, submit).await
        }
        Command::Watch { job, json } => commands::watch_job(client, &job, json).await,
        Command::Jobs { json } => commands::jobs(client, json).await,
        Command::Status { job, tasks, json } => commands::status(client, &job, tasks, json).await,
        Command::Cancel { job, json } => commands::cancel(client, &job, json).await,
        Command::Workers { json } => commands::workers(client, json).await,
        Command::Cat { job } => commands::cat(client, &job).await,
        Command::Apps(AppsCommand::Push { file, name, json }) => {
            commands::push_app(client, &file, name, json).await
        }
        Command::Apps(AppsCommand::List { json }) => commands::list_apps(client, json).await,
        Command::Apps(AppsCommand::Delete { name }) => commands::delete_app(client, &name).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere_and_reduce_defaults_to_ten() {
        let cli = Cli::try_parse_from([
            "mr",
            "submit",
            "wc",
            "input/pg-*.txt",
            "--coordinator",
            "http://h:1",
        ])
        .expect("parses");
        assert_eq!(cli.coordinator, "http://h:1");
        match cli.command {
            Command::Submit { n_reduce, .. } => assert_eq!(n_reduce, 10),
            _ => panic!("not submit"),
        }
        assert!(
            Cli::try_parse_from(["mr", "submit", "wc"]).is_err(),
            "inputs are required"
        );
    }
}
