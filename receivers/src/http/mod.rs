//! The HTTP edge: the front door (`balancer`), each path's entry (`entry`), the read
//! endpoints every listener serves (`read`), the one error type (`error`) and the accept
//! loop with its limits (`serve`). Each router is built by a function (`..._app`), so its
//! checks run in-process in tests.

pub mod balancer;
pub mod entry;
pub mod error;
pub mod read;
pub mod serve;
