//! The `coxswain` binary: parses the command line and hands off to the crates that do the work.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coxswain_apiserver::ServerConfig;
use coxswain_apiserver::allocator::ServiceNetwork;
use coxswain_conformance::bench::storage::StorageBench;
use tracing_subscriber::EnvFilter;

/// glibc's allocator serialises the many small allocations of concurrent requests on its arena
/// locks; mimalloc keeps them per thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Coxswain: a Kubernetes-API-compatible control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server (with its store) until SIGINT or SIGTERM.
    Server {
        /// Where the SQLite file, the certificates and admin.kubeconfig live.
        #[arg(long, default_value = "./coxswain-data")]
        data_dir: PathBuf,
        /// Address to serve HTTPS on.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// `sqlite` (a file under --data-dir) or a postgres:// URL.
        #[arg(long, default_value = "sqlite")]
        storage: String,
        /// kube-apiserver's static token CSV: token,user,uid,"group1,group2".
        #[arg(long)]
        token_auth_file: Option<PathBuf>,
        /// IPv4 range ClusterIPs are allocated from.
        #[arg(long, default_value = "10.96.0.0/12")]
        service_cluster_ip_range: String,
        /// Inclusive range NodePorts are allocated from.
        #[arg(long, default_value = "30000-32767")]
        service_node_port_range: String,
    },
    /// Print an admin kubeconfig for a server's data dir.
    Kubeconfig {
        #[arg(long, default_value = "./coxswain-data")]
        data_dir: PathBuf,
        /// A logical cluster: the kubeconfig then addresses /clusters/<NAME>.
        #[arg(long)]
        cluster: Option<String>,
        /// The server's address, as given to `coxswain server --listen`.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
    },
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

/// Runs the server until SIGINT or SIGTERM, then shuts it down in order.
async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let server = coxswain_apiserver::start(config)
        .await
        .context("cannot start the server")?;
    println!(
        "coxswain is ready on https://{} after {} ms; kubeconfig: {}",
        server.addr,
        started.elapsed().as_millis(),
        server.kubeconfig.display()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server {
            data_dir,
            listen,
            storage,
            token_auth_file,
            service_cluster_ip_range,
            service_node_port_range,
        } => {
            let service_network = ServiceNetwork::parse(&service_cluster_ip_range, &service_node_port_range)
                .map_err(anyhow::Error::msg)?;
            serve(ServerConfig {
                data_dir,
                listen,
                storage,
                token_auth_file,
                service_network,
            })
            .await?
        }
        Command::Kubeconfig {
            data_dir,
            cluster,
            listen,
        } => {
            if !data_dir.join("pki/ca.crt").exists() {
                anyhow::bail!(
                    "no certificates under {}; start `coxswain server --data-dir {}` first",
                    data_dir.join("pki").display(),
                    data_dir.display()
                );
            }
            let pki =
                coxswain_apiserver::pki::ensure(&data_dir, listen).context("cannot read the certificates")?;
            let host = if listen.ip().is_unspecified() {
                format!("127.0.0.1:{}", listen.port())
            } else {
                listen.to_string()
            };
            print!(
                "{}",
                coxswain_apiserver::pki::admin_kubeconfig(
                    &pki,
                    &format!("https://{host}"),
                    cluster.as_deref()
                )
            );
        }
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
