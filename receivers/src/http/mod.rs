//! The HTTP edge: the front door (`balancer`), each path's entry (`entry`), the read
//! endpoints every listener serves (`read`), the one error type (`error`) and the test-only
//! slowdown (`slowdown`). Each router is built by a function (`..._app`), so its checks run
//! in-process in tests. They are served by `crate::serve`, as the gRPC path's server is.

pub mod balancer;
pub mod entry;
pub mod error;
pub mod read;
pub mod slowdown;
