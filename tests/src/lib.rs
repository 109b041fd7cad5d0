//! End-to-end checks of memsentry's programs, run as a person would run them: the tests in
//! `tests/tests/` start the README's commands with the same `cargo` that runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

/// Runs `cargo <args>` in the workspace root with the cargo that runs the tests.
pub fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(workspace_root());
    for (name, value) in envs {
        command.env(name, value);
    }
    command.output().expect("cargo runs")
}
