//! Verdicts, computed from what was recorded: the rule syntax, the gate, the baseline's
//! bootstrap, the live checks of --abort-on-fail, and the history's change points.

pub mod compare;
pub mod gate;
pub mod history;
pub mod live_gate;
pub mod rule;
