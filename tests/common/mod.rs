//! What several integration tests share: a temporary directory per task, the result
//! files under one, and running this test binary again as a second process.

#![allow(dead_code)] // each test binary uses its own part of this

use std::path::{Path, PathBuf};
use std::process::Command;

/// Each task gets a directory of its own under one temporary root per test process; a
/// child process is handed the parent's root through `TASKCACHE_TEST_ROOT`.
pub fn dir(task: &str) -> String {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let root = ROOT.get_or_init(|| match std::env::var_os("TASKCACHE_TEST_ROOT") {
        Some(root) => PathBuf::from(root),
        None => tempfile::tempdir().unwrap().keep(),
    });
    root.join(task).to_string_lossy().into_owned()
}

/// Every result file under `dir`: locks, records and temporary files live in hidden
/// entries and are left out.
pub fn files_under(dir: &str) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new(dir), &mut out);
    out
}

/// Runs this test binary again for one test, with `child` set (see [`child`]) and the
/// same temporary root, and returns its stdout; fails if the child does.
pub fn run_child(test: &str, child: &str) -> String {
    let root = Path::new(&dir("x")).parent().unwrap().to_path_buf();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("TASKCACHE_TEST_ROOT", root)
        .env("TASKCACHE_TEST_CHILD", child)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// What the parent handed this process when it runs as a child, else `None`.
pub fn child() -> Option<String> {
    std::env::var("TASKCACHE_TEST_CHILD").ok()
}

/// Appends `line` to the side file `log` (a body's record that it ran).
pub fn append(log: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    // One write: `writeln!` writes the line and its newline apart, and a process
    // killed between the two left a line without its end, which the next line joined.
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// The lines of the side file `log` (none when it does not exist yet).
pub fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}
