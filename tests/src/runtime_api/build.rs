//! Locating the workspace and building function binaries with cargo.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use super::{HarnessError, lock};

/// The workspace root (the tests crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Builds package `name` (`cargo build -p <name> [--release]`, so `cargo test` alone works)
/// and returns the path of its binary. Panics with cargo's error when the build fails.
pub fn function_binary(name: &str, release: bool) -> PathBuf {
    match try_function_binary(name, release) {
        Ok(path) => path,
        Err(error) => panic!("{error}"),
    }
}

/// [`function_binary`] returning the error instead of panicking. Each (package, profile)
/// is built once per test process.
pub fn try_function_binary(name: &str, release: bool) -> Result<PathBuf, HarnessError> {
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    // Held across the build: concurrent tests wanting the same binary wait for one build.
    let mut built = lock(built);
    if let Some(path) = built.get(&(name.to_owned(), release)) {
        return Ok(path.clone());
    }
    let root = workspace_root();
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(&root).args([
        "build",
        "--message-format=json-render-diagnostics",
        "-p",
        name,
    ]);
    if release {
        command.arg("--release");
    }
    // Progress and diagnostics go to our stderr; artifact messages come on stdout.
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let output = command.output().map_err(|source| HarnessError::Io {
        context: format!("running {} build -p {name}", env!("CARGO")),
        source,
    })?;
    if !output.status.success() {
        return Err(HarnessError::Build {
            package: name.into(),
            detail: format!(
                "cargo build exited with {} (its errors are above)",
                output.status
            ),
        });
    }
    let mut executables = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_bin = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
        if let (true, Some(executable)) = (is_bin, message["executable"].as_str()) {
            let target = message["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            executables.push((target, PathBuf::from(executable)));
        }
    }
    let path = match executables.iter().find(|(target, _)| target == name) {
        Some((_, path)) => path.clone(),
        None if executables.len() == 1 => executables[0].1.clone(),
        None => {
            let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
                Some(dir) => root.join(dir),
                None => root.join("target"),
            };
            target_dir
                .join(if release { "release" } else { "debug" })
                .join(name)
        }
    };
    if !path.is_file() {
        return Err(HarnessError::Build {
            package: name.into(),
            detail: format!("no binary at {}", path.display()),
        });
    }
    built.insert((name.to_owned(), release), path.clone());
    Ok(path)
}
