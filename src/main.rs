//! The `coxswain` binary: parses the command line and hands off to the crates that do the work.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coxswain_conformance::bench::storage::StorageBench;
use tracing_subscriber::EnvFilter;

/// Coxswain: a Kubernetes-API-compatible control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure parts of Coxswain; each benchmark prints one JSON line.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Create small objects through the storage engine with concurrent writers, and measure the
    /// same database's plain batched-INSERT ceiling in the same run.
    Storage {
        /// `sqlite` (a file under --data-dir) or a postgres:// URL.
        #[arg(long, default_value = "sqlite")]
        storage: String,
        /// Directory for the SQLite file; a fresh temp dir when omitted.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Concurrent writers.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Objects to create.
        #[arg(long, default_value_t = 50_000)]
        objects: usize,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line: what failed, its cause, and (from the storage errors) the fix.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench {
            bench:
                Bench::Storage {
                    storage,
                    data_dir,
                    concurrency,
                    objects,
                },
        } => {
            let report = StorageBench {
                storage,
                data_dir,
                concurrency,
                objects,
            }
            .run()
            .await
            .context("storage benchmark failed")?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
