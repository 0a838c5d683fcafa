//! The `loadgen` binary: parse the command line, run, and turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use loadgen::{Cli, LoadgenError};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(loadgen::cli::Command::History(args)) = &cli.command {
        return match loadgen::judge::history::show(args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("loadgen: error: {why}");
                ExitCode::from(LoadgenError::EXIT_CODE)
            }
        };
    }
    let result = match cli.command {
        Some(loadgen::cli::Command::Merge(args)) => loadgen::merge::merge(args).await,
        _ => match cli.settings() {
            Ok(settings) => loadgen::run(settings).await,
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(outcome) if outcome.passed => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(error) => {
            eprintln!("loadgen: error: {error}");
            ExitCode::from(LoadgenError::EXIT_CODE)
        }
    }
}
