//! The Kubernetes manifests in deploy/k8s/, checked offline: they validate strictly against
//! the Kubernetes API schemas (scripts/k8s-validate, kubernetes-validate from PyPI, which
//! scripts/test installs), a manifest with an unknown field is refused, and the workers'
//! Job and the merge agree on the number of workers.

mod common;

use std::path::Path;
use std::process::Command;

fn validate(dir: &Path) -> (bool, String) {
    let out = Command::new(common::workspace_root().join("scripts/k8s-validate"))
        .arg(dir)
        .current_dir(common::workspace_root())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_manifests_validate_strictly_and_a_typo_is_refused() {
    let k8s = common::workspace_root().join("deploy/k8s");
    let (ok, output) = validate(&k8s);
    assert!(ok, "{output}");
    assert!(output.contains("valid against Kubernetes"), "{output}");

    let dir = tempfile::tempdir().unwrap();
    let workers = std::fs::read_to_string(k8s.join("loadgen-workers.yaml")).unwrap();
    let typo = workers.replacen(
        "imagePullPolicy: IfNotPresent",
        "imagePulPolicy: IfNotPresent",
        1,
    );
    assert_ne!(typo, workers);
    std::fs::write(dir.path().join("loadgen-workers.yaml"), typo).unwrap();
    let (ok, output) = validate(dir.path());
    assert!(!ok, "a misspelt field passed: {output}");
    assert!(output.contains("imagePulPolicy"), "{output}");
}

#[test]
fn the_merge_reads_every_worker_the_job_runs() {
    let k8s = common::workspace_root().join("deploy/k8s");
    let workers = std::fs::read_to_string(k8s.join("loadgen-workers.yaml")).unwrap();
    let merge = std::fs::read_to_string(k8s.join("loadgen-merge.yaml")).unwrap();
    let field = |name: &str| -> usize {
        workers
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in the workers' Job"))
            .parse()
            .unwrap()
    };
    let n = field("completions");
    assert_eq!(field("parallelism"), n);
    assert!(workers.contains(&format!("--worker=$(WORKER_INDEX)/{n}")));
    for i in 0..n {
        assert!(
            merge.contains(&format!("/reports/$(RUN_ID)-w{i}\"")),
            "merge misses worker {i}"
        );
    }
    assert!(
        !merge.contains(&format!("-w{n}\"")),
        "merge names a worker the Job does not run"
    );
}
