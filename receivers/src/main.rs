//! The `receivers` binary: parse flags and environment, run until SIGINT/SIGTERM, exit.

use std::process::ExitCode;

use clap::Parser;
use receivers::Config;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();
    match receivers::run(config, shutdown_signal()).await {
        Ok(dir) => {
            eprintln!("receivers: stopped cleanly; reports in {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("receivers: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
