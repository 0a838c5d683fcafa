//! The paths and stages by name come from the shared contract with loadgen.

pub use contract::{Route, Stage};
