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
    // Registered before anything starts: a SIGINT during start-up then stops the receivers
    // the graceful way (reports written) instead of killing them.
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(error) => {
            eprintln!("receivers: error: cannot listen for SIGINT/SIGTERM: {error}");
            return ExitCode::FAILURE;
        }
    };
    match receivers::run(config, shutdown).await {
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

/// Ctrl-C or SIGTERM, whichever comes first; both handlers are installed when this returns.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}
