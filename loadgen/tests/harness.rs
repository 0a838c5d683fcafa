//! The runner the other tests start loadgen with: it reads a child's output while the child
//! runs, so a chatty child finishes instead of blocking on a full pipe, and it kills a child
//! that outlives its deadline.

mod common;

use std::process::Command;
use std::time::Duration;

use common::run_to_deadline;

#[test]
fn output_larger_than_a_pipe_is_read_while_the_child_runs() {
    // 1 MiB on each stream: a pipe holds 64 KiB, so a runner that read only after the exit
    // would leave the child blocked until the deadline.
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2; exit 3",
    ]);
    let run = run_to_deadline(command, "a chatty child", Duration::from_secs(30));
    assert_eq!(run.code, 3);
    assert_eq!(run.stdout.len(), 1 << 20);
    assert_eq!(run.stderr.len(), 1 << 20);
}

#[test]
#[should_panic(expected = "a sleeping child still running after 1s")]
fn a_child_past_its_deadline_is_killed_and_reported() {
    let mut command = Command::new("sh");
    command.args(["-c", "echo started >&2; exec sleep 60"]);
    run_to_deadline(command, "a sleeping child", Duration::from_secs(1));
}
