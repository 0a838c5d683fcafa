//! The command line, split as ripgrep splits its flags: `args` holds every flag as clap
//! parses it, `settings` checks and derives them into `Settings` before anything is sent,
//! `shape` reads the scenario and the users plan, and `gate_file` reads the gate's rules.

mod args;
mod gate_file;
mod settings;
mod shape;

pub use args::{Cli, Command, CompareArgs, GateArgs, HistoryArgs, MergeArgs, ReconcileArgs};
pub use gate_file::parse_rules;
pub use settings::{OpenSettings, Settings};
