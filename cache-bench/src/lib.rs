//! Benchmarks of taskcache; the benches are in `benches/`: run
//! `cargo bench -p taskcache-bench --bench compare` for the table in BENCHMARKS.md.
//! This library holds what several benches share.

/// The host's CPU model, from `/proc/cpuinfo`: printed beside every table, so that
/// figures from different machines are never compared as if they were one.
pub fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// A field of `/proc/self/status` in bytes (`"VmHWM:"`: the peak resident size,
/// `"VmRSS:"`: the resident size now); 0 where there is none.
pub fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// The growth of this process's peak resident memory (VmHWM) while `f` runs, with what
/// `f` returned: memory as a user sees it, when the process does nothing else (run it
/// in a fresh child process, see [`run_self`]).
pub fn peak_growth<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = status_bytes("VmHWM:");
    let out = f();
    (status_bytes("VmHWM:").saturating_sub(before), out)
}

/// Runs this bench binary again as a child process (with `--bench`, as cargo runs it),
/// set up by `configure` (its environment says what the child does), and returns its
/// standard output. Panics, with the child's output, when the child fails.
pub fn run_self(configure: impl FnOnce(&mut std::process::Command)) -> String {
    let exe = std::env::current_exe().expect("the path of this bench binary");
    let mut command = std::process::Command::new(exe);
    command.arg("--bench");
    configure(&mut command);
    let out = command.output().expect("the bench binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the child process failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number that follows `name` in a child's output (`field("GROWTH 123", "GROWTH ")`
/// is 123); `None` when there is none.
pub fn field(text: &str, name: &str) -> Option<u64> {
    text.split(name)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
