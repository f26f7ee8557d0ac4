//! Helpers of `tests/reliability.rs`: child processes run with a deadline, the suite's
//! settings, a seeded random generator, file listing, and byte-level forgeries of the
//! result file format.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The role of a child process (unset in the parent).
pub const CHILD_ENV: &str = "TASKCACHE_REL_CHILD";
/// The directory a child's tasks keep their results under.
pub const ROOT_ENV: &str = "TASKCACHE_REL_ROOT";
/// `long` selects the long setting (more kills, processes, rounds and mutations).
pub const MODE_ENV: &str = "TASKCACHE_RELIABILITY";
/// Replays the random choices of an earlier run (each test prints its seed).
pub const SEED_ENV: &str = "TASKCACHE_RELIABILITY_SEED";

/// The length of a result file's header (`taskcache::results::format::HEADER_LEN`).
pub use taskcache::results::format::HEADER_LEN;

/// Whether the long setting is on.
pub fn long() -> bool {
    std::env::var(MODE_ENV).is_ok_and(|v| v.trim().eq_ignore_ascii_case("long"))
}

/// `default` in the default setting, `long` in the long one.
pub fn scaled<T>(default: T, long_setting: T) -> T {
    if long() {
        long_setting
    } else {
        default
    }
}

/// The role this process was started for, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// An environment variable a child was given.
pub fn child_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("the parent sets {name}"))
}

/// The directory `sub` under the child's root. Tasks name their result directory with
/// it; only children call tasks, so the parent never evaluates it.
pub fn dir(sub: &str) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        PathBuf::from(std::env::var_os(ROOT_ENV).expect("tasks are only called in child processes"))
    })
    .join(sub)
}

/// A fresh directory for one test's files, removed when dropped (kept with
/// `TASKCACHE_RELIABILITY_KEEP=1`, for a look after a failure).
pub fn test_root(test: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("taskcache-reliability-{test}-"))
        .tempdir()
        .unwrap();
    keep_if_asked(&mut dir);
    dir
}

/// Like [`test_root`], in memory (`/dev/shm`) when the machine has it: for tests whose
/// subject is the checks on what is read, not durability, where `fsync` is only a cost.
pub fn memory_test_root(test: &str) -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let mut dir = match tempfile::Builder::new()
        .prefix(&format!("taskcache-reliability-{test}-"))
        .tempdir_in(shm)
    {
        Ok(dir) => dir,
        Err(_) => return test_root(test),
    };
    keep_if_asked(&mut dir);
    dir
}

fn keep_if_asked(dir: &mut tempfile::TempDir) {
    if std::env::var_os("TASKCACHE_RELIABILITY_KEEP").is_some() {
        dir.disable_cleanup(true);
        println!("files kept in {}", dir.path().display());
    }
}

/// xorshift64*: enough randomness for choosing kill moments and bit flips, and
/// reproducible from a printed seed.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `TASKCACHE_RELIABILITY_SEED`, else from the clock; the
    /// seed is printed (shown when the test fails) together with `what`.
    pub fn seeded(what: &str) -> Self {
        let seed = std::env::var(SEED_ENV)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    ^ u64::from(std::process::id()) << 32
            });
        println!("{what}: {SEED_ENV}={seed}");
        Rng::new(seed)
    }

    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The seed a child can be handed to continue with other numbers.
    pub fn fork(&mut self) -> u64 {
        self.next_u64()
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `range`.
    pub fn in_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.below(range.end - range.start)
    }
}

/// This test binary, run again for the one test `test` as a child in `role`, with its
/// tasks' results under `root`.
pub fn child_command(test: &str, role: &str, root: &Path) -> Command {
    // This very binary, even when a build has replaced the file meanwhile.
    let exe = Path::new("/proc/self/exe");
    let exe = if exe.exists() {
        exe.to_path_buf()
    } else {
        std::env::current_exe().unwrap()
    };
    let mut command = Command::new(exe);
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env(ROOT_ENV, root)
        // The suite is about persistence: a switch turning it off would void it.
        .env_remove(taskcache::CHECKPOINTING_ENV)
        .stdin(Stdio::null());
    command
}

/// A child process whose output is collected while it runs.
pub struct Running {
    child: Child,
    what: String,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// Starts `command` with its output collected (`what` names it in messages).
pub fn start(mut command: Command, what: &str) -> Running {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    Running {
        child,
        what: what.to_owned(),
        stdout,
        stderr,
    }
}

impl Running {
    /// Waits for the child to end, at most `deadline`: a child still running then is
    /// killed and the test fails (a hang). A child that failed fails the test too.
    /// Returns the report lines the child printed with [`report`].
    pub fn finish(mut self, deadline: Duration) -> Vec<String> {
        let until = Instant::now() + deadline;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = self.stdout.join().unwrap();
        let stderr = self.stderr.join().unwrap();
        match status {
            None => panic!(
                "{}: still running after {deadline:?} (a hang), killed\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                self.what
            ),
            Some(s) if !s.success() => panic!(
                "{}: failed ({s})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                self.what
            ),
            Some(_) => stdout
                .lines()
                // The harness may have begun the line ("test name ... ").
                .filter_map(|l| l.find(REPORT).map(|at| l[at + REPORT.len()..].to_owned()))
                .collect(),
        }
    }
}

/// Runs a child to its end (see [`Running::finish`]).
pub fn run_child(command: Command, what: &str, deadline: Duration) -> Vec<String> {
    start(command, what).finish(deadline)
}

const REPORT: &str = "@reliability ";

/// Prints a line for the parent (what [`Running::finish`] returns).
pub fn report(line: impl std::fmt::Display) {
    println!("{REPORT}{line}");
}

/// Runs `f` on a thread of its own and waits at most `deadline` for it: a hang or a panic
/// fails the test with `what` in the message.
pub fn within<R: Send + 'static>(
    what: &str,
    deadline: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = send.send(outcome);
    });
    match receive.recv_timeout(deadline) {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(not a string)");
            panic!("{what}: panicked: {message}")
        }
        Err(_) => panic!("{what}: no answer within {deadline:?} (a hang)"),
    }
}

/// Every file under `dir`, hidden ones and those in hidden directories included.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(p) {
            for e in entries.flatten() {
                let path = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&path, out),
                    _ => out.push(path),
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// The temporary files writers leave under `dir` when they die mid-write.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    all_files(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".tmp-") && n.ends_with(".taskcache"))
        })
        .collect()
}

/// Sets the modification time of `path` an hour back, so that the sweep of stale
/// temporary files (which spares files younger than 10 s) takes it.
pub fn age(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(path)
        .and_then(|f| f.set_modified(old))
        .unwrap_or_else(|e| panic!("cannot age {}: {e}", path.display()));
}

/// Polls until `path` exists, at most `deadline`.
pub fn wait_for_file(path: &Path, deadline: Duration) {
    let until = Instant::now() + deadline;
    while !path.exists() {
        assert!(
            Instant::now() < until,
            "{} did not appear within {deadline:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name of the lock file `LocalResult` takes for `location`: the hex of the first
/// 16 bytes of the SHA-256 of the location, `.lock`.
pub fn lock_file_name(location: &str) -> String {
    format!("{}.lock", hex(&Sha256::digest(location.as_bytes())[..16]))
}

/// The location whose lock guards the cache record `record_id` of `cache_key` (what a
/// run racing other processes on the same inputs locks).
pub fn record_lock_location(cache_key: &str, record_id: &str) -> String {
    format!(
        "records/{}/{record_id}",
        hex(&Sha256::digest(cache_key.as_bytes())[..16])
    )
}

/// The directory of the cache records of `cache_key` under a result directory.
pub fn records_dir(result_dir: &Path, cache_key: &str) -> PathBuf {
    result_dir
        .join(".taskcache-records")
        .join(hex(cache_key.as_bytes()))
}

/// Creates a FIFO at `path` with the `mkfifo` command; false when there is no such
/// command (the caller skips).
pub fn mkfifo(path: &Path) -> bool {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    match Command::new("mkfifo").arg(path).status() {
        Ok(s) if s.success() => true,
        Ok(s) => panic!("mkfifo {} failed: {s}", path.display()),
        Err(_) => false,
    }
}

/// Whether `path` is a FIFO.
pub fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

// ---- The result file format, byte by byte (see cache-results/src/format.rs) ----

/// The header byte of the serializer id.
pub const SERIALIZER_AT: usize = 10;
/// The header's payload length field.
pub const LEN_FIELD: std::ops::Range<usize> = 20..28;
/// The header's payload SHA-256.
pub const DIGEST_FIELD: std::ops::Range<usize> = 28..60;

/// `file` with its payload replaced by `payload` and the header's length and checksum
/// made to agree: a forgery only a decoder can catch.
pub fn resealed(file: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = file[..HEADER_LEN].to_vec();
    out[LEN_FIELD].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    out[DIGEST_FIELD].copy_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// bincode's encoding of a length (standard configuration: varint).
pub fn bincode_len(len: u64) -> Vec<u8> {
    if len < 251 {
        vec![len as u8]
    } else if let Ok(v) = u16::try_from(len) {
        let mut out = vec![251];
        out.extend_from_slice(&v.to_le_bytes());
        out
    } else if let Ok(v) = u32::try_from(len) {
        let mut out = vec![252];
        out.extend_from_slice(&v.to_le_bytes());
        out
    } else {
        let mut out = vec![253];
        out.extend_from_slice(&len.to_le_bytes());
        out
    }
}

/// The bincode length at `at` in `bytes`: its value and its size.
pub fn read_bincode_len(bytes: &[u8], at: usize) -> (u64, usize) {
    let word = |n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&bytes[at + 1..at + 1 + n]);
        u64::from_le_bytes(b)
    };
    match bytes[at] {
        v @ 0..=250 => (u64::from(v), 1),
        251 => (word(2), 3),
        252 => (word(4), 5),
        253 => (word(8), 9),
        other => panic!("not a bincode length: {other}"),
    }
}

/// `payload` with the bincode length at `at` replaced by `len`.
pub fn with_bincode_len(payload: &[u8], at: usize, len: u64) -> Vec<u8> {
    let (_, size) = read_bincode_len(payload, at);
    let mut out = payload[..at].to_vec();
    out.extend_from_slice(&bincode_len(len));
    out.extend_from_slice(&payload[at + size..]);
    out
}

/// Where a zstd frame records its decompressed size in `payload` (a frame), and how:
/// `(offset, field size, value)`; `None` when the frame does not record it.
pub fn zstd_content_size(payload: &[u8]) -> Option<(usize, usize, u64)> {
    let descriptor = *payload.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    let size = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => return None,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let dictionary = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let at = 5 + usize::from(!single_segment) + dictionary;
    let mut b = [0u8; 8];
    b[..size].copy_from_slice(payload.get(at..at + size)?);
    let raw = u64::from_le_bytes(b);
    Some((at, size, if size == 2 { raw + 256 } else { raw }))
}

/// `payload` (a zstd frame) recording `value` as its decompressed size, in the same
/// field (saturated to what the field holds).
pub fn with_zstd_content_size(payload: &[u8], value: u64) -> Vec<u8> {
    let (at, size, _) = zstd_content_size(payload).expect("a frame with a content size");
    let raw = match size {
        1 => value.min(255),
        2 => value.clamp(256, 65_535 + 256) - 256,
        4 => value.min(u64::from(u32::MAX)),
        _ => value,
    };
    let mut out = payload.to_vec();
    out[at..at + size].copy_from_slice(&raw.to_le_bytes()[..size]);
    out
}

/// Resets this process's `VmHWM` to its current resident memory (Linux 4.0 and later);
/// false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident memory of this process (`VmHWM`), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

// ---- Allocation accounting ----

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, noting the largest single request and the peak of live heap
/// bytes: a crafted length that makes a reader allocate its claim shows here even when
/// the pages are never touched (and so never counted in `VmHWM`).
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn noted(size: usize) {
    LARGEST.fetch_max(size, Ordering::Relaxed);
}

fn grown(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is passed on to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        noted(layout.size());
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grown(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        noted(layout.size());
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grown(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        noted(new_size);
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grown(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap so far: the largest single allocation requested, and the peak of live
/// bytes.
pub fn heap_stats() -> (usize, usize) {
    (
        LARGEST.load(Ordering::Relaxed),
        PEAK.load(Ordering::Relaxed),
    )
}

/// Starts counting the largest allocation and the peak anew (the peak from what is
/// live now).
pub fn reset_heap_stats() {
    LARGEST.store(0, Ordering::Relaxed);
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}
