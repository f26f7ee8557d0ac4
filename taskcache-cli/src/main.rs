//! The `taskcache` binary: see the `taskcache_cli` library, which does the work.

#![forbid(unsafe_code)]

use std::io::IsTerminal;

fn main() -> std::process::ExitCode {
    let stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let progress = stdout.is_terminal() && stderr.is_terminal();
    // Stdout is buffered (`ls` may print many rows); stderr is not locked here, as the
    // progress bars are drawn on it from the worker threads.
    let mut out = std::io::BufWriter::new(stdout.lock());
    let code = taskcache_cli::run(
        std::env::args_os(),
        taskcache_cli::Io {
            out: &mut out,
            err: &mut stderr,
            progress,
        },
    );
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(2))
}
