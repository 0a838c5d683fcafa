//! The `loadgen` binary: parse the command line, run, and turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use loadgen::{Cli, LoadgenError};

/// mimalloc's per-thread heaps instead of glibc's arenas: a request allocates and frees
/// dozens of small blocks across the runtime's threads, and glibc's arena locks, futex
/// wake-ups and consolidation were the largest user-space cost in `perf`
/// (docs/performance-notes.md has the figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Built here rather than by `#[tokio::main]`, which takes every core: the thread count
    // is the user's choice (--threads).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.threads))
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => {
            eprintln!(
                "loadgen: error: cannot start the async runtime ({error}); check the process's thread limit"
            );
            ExitCode::from(LoadgenError::EXIT_CODE)
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Goose warns once per failed request: thousands of lines a second when a target
            // goes away. The report counts them by cause instead ("No HTTP answer").
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,goose::goose=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(loadgen::cli::Command::History(args)) = &cli.command {
        return match loadgen::output::read_history(&args.reports) {
            Ok(entries) => {
                let text =
                    loadgen::render::history::render(&entries, args.metric.as_deref(), args.last);
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("loadgen: error: {why}");
                ExitCode::from(LoadgenError::EXIT_CODE)
            }
        };
    }
    if let Some(loadgen::cli::Command::Compare(args)) = cli.command.clone() {
        return match loadgen::versus::compare(args) {
            Ok(comparison) if comparison.passed => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(error) => {
                eprintln!("loadgen: error: {error}");
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
