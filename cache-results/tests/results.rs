//! The result backends end to end: round trips, damaged and foreign files, locations,
//! failed writes, locks (across threads and processes) and records.

mod common;

use common::forged;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use taskcache_results::format::{self, HEADER_LEN};
use taskcache_results::{
    BincodeSerializer, JsonSerializer, LocalResult, Location, MemoryResult, ResultBackend,
    ResultBackendExt, ResultError, Serializer, Value,
};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Report {
    region: String,
    rows: Vec<u64>,
    note: Option<String>,
}

fn report(rows: u64) -> Report {
    Report {
        region: "emea".into(),
        rows: (0..rows).collect(),
        note: Some("quarterly".into()),
    }
}

fn at(location: &str) -> Location {
    Location::new(location).unwrap()
}

/// The files under `dir`, recursively, as relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

fn round_trip<S: Serializer>(serializer: S) {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path()).with_serializer(serializer);
    // Small, and large enough to be hashed and decoded in two streaming passes.
    for rows in [3u64, 300_000] {
        let loc = at(&format!("reports/{rows}.bin"));
        result.write(&report(rows), &loc).unwrap();
        assert_eq!(result.read::<Report>(&loc).unwrap(), report(rows));
        assert_eq!(
            result.read::<Report>(&loc).unwrap(),
            report(rows),
            "again (a large file is trusted while unchanged)"
        );
    }
    // Read whole, read straight into the vector, hashed on a second thread.
    for len in [0usize, 1, 250, 251, 70_000, 3 << 20] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
        let loc = at(&format!("bytes/{len}.bin"));
        result.write(&bytes, &loc).unwrap();
        assert_eq!(result.read::<Vec<u8>>(&loc).unwrap(), bytes, "{len}");
    }
    let unit = at("unit.bin");
    result.write(&(), &unit).unwrap();
    result.read::<()>(&unit).unwrap();
    assert!(
        !files_under(dir.path()).iter().any(|f| f.contains(".tmp-")),
        "no temporary file left"
    );
}

#[test]
fn round_trips_a_struct_and_bytes_with_bincode() {
    round_trip(BincodeSerializer);
}

#[test]
fn round_trips_a_struct_and_bytes_with_json() {
    round_trip(JsonSerializer);
    let dir = tempfile::tempdir().unwrap();
    let loc = at("r.json");
    LocalResult::new(dir.path())
        .with_serializer(JsonSerializer)
        .write(&report(2), &loc)
        .unwrap();
    let file = std::fs::read(loc.under(dir.path())).unwrap();
    assert_eq!(
        &file[HEADER_LEN..],
        br#"{"region":"emea","rows":[0,1],"note":"quarterly"}"#,
        "the payload is plain JSON"
    );
}

#[cfg(feature = "zstd")]
#[test]
fn round_trips_a_struct_and_bytes_with_zstd() {
    use taskcache_results::Zstd;
    round_trip(Zstd::new(BincodeSerializer));
    round_trip(Zstd::new(JsonSerializer).with_level(9));
    let dir = tempfile::tempdir().unwrap();
    let plain = LocalResult::new(dir.path());
    let packed = LocalResult::new(dir.path()).with_serializer(Zstd::new(BincodeSerializer));
    let repetitive = Report {
        region: "emea".repeat(1000),
        rows: (0..10_000).map(|i| i % 10).collect(),
        note: None,
    };
    plain.write(&repetitive, &at("plain.bin")).unwrap();
    packed.write(&repetitive, &at("packed.bin")).unwrap();
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().len();
    assert!(size("packed.bin") < size("plain.bin") / 2);
    // Far better than 1024:1 is real data too, not a bomb.
    let zeros = vec![0u64; 4 << 20];
    packed.write(&zeros, &at("zeros.bin")).unwrap();
    assert!(size("zeros.bin") * 1024 < 4 << 20);
    assert_eq!(packed.read::<Vec<u64>>(&at("zeros.bin")).unwrap(), zeros);
    // Compressed and plain files are told apart by their serializer id.
    let e = plain.read::<Report>(&at("packed.bin")).unwrap_err();
    assert!(matches!(e, ResultError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("serializer"), "{e}");
}

#[test]
fn a_byte_vector_file_is_plain_bincode() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    for len in [0usize, 7, 251, 65_536, 100_000] {
        let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let loc = at(&format!("{len}.bin"));
        result.write(&bytes, &loc).unwrap();
        let file = std::fs::read(loc.under(dir.path())).unwrap();
        let bincode = bincode::serde::encode_to_vec(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(&file[HEADER_LEN..], &bincode[..], "{len}");
        // And a payload bincode wrote reads back through the one-piece path.
        std::fs::write(loc.under(dir.path()), forged::<Vec<u8>>(1, &bincode)).unwrap();
        assert_eq!(result.read::<Vec<u8>>(&loc).unwrap(), bytes);
    }
}

const CHILD_ENV: &str = "TASKCACHE_RESULTS_TEST_CHILD_DIR";

#[test]
fn a_file_is_read_back_by_another_process() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let result = LocalResult::new(PathBuf::from(dir));
        assert_eq!(
            result.read::<Report>(&at("shared/report.bin")).unwrap(),
            report(50)
        );
        let bytes: Vec<u8> = result.read(&at("shared/bytes.bin")).unwrap();
        assert_eq!(bytes, vec![9u8; 100_000]);
        println!("child read both values");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    result.write(&report(50), &at("shared/report.bin")).unwrap();
    result
        .write(&vec![9u8; 100_000], &at("shared/bytes.bin"))
        .unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_file_is_read_back_by_another_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("child read both values"), "{stdout}");
}

/// Writes a small struct, a large struct and a large byte vector, damages each file with
/// `hurt`, and checks that reading gives `Corrupt`.
fn assert_damage_is_corrupt(hurt: impl Fn(&mut Vec<u8>), what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let check = |loc: &Location, e: ResultError| {
        assert!(
            matches!(e, ResultError::Corrupt { .. }),
            "{what}, {loc}: {e}"
        );
        assert!(
            e.to_string()
                .contains(&loc.under(dir.path()).display().to_string()),
            "names the file: {e}"
        );
    };
    type Write<'a> = &'a dyn Fn(&LocalResult, &Location);
    let cases: [(&str, Write); 3] = [
        ("small.bin", &|r, l| {
            r.write(&report(10), l).unwrap();
        }),
        ("large.bin", &|r, l| {
            r.write(&report(400_000), l).unwrap();
        }),
        ("bytes.bin", &|r, l| {
            r.write(&vec![5u8; 3 << 20], l).unwrap();
        }),
    ];
    for (name, write) in cases {
        let loc = at(name);
        write(&result, &loc);
        // Read once, so that a large file is trusted: damage must still be caught.
        if name == "bytes.bin" {
            result.read::<Vec<u8>>(&loc).unwrap();
        } else {
            result.read::<Report>(&loc).unwrap();
        }
        let path = loc.under(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        hurt(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
        let e = if name == "bytes.bin" {
            result.read::<Vec<u8>>(&loc).unwrap_err()
        } else {
            result.read::<Report>(&loc).unwrap_err()
        };
        check(&loc, e);
    }
}

#[test]
fn a_truncated_file_is_corrupt() {
    assert_damage_is_corrupt(|b| b.truncate(b.len() - 1), "last byte cut");
    assert_damage_is_corrupt(|b| b.truncate(b.len() / 2), "cut in half");
    assert_damage_is_corrupt(|b| b.truncate(HEADER_LEN), "header only");
    assert_damage_is_corrupt(|b| b.truncate(HEADER_LEN - 1), "header cut");
    assert_damage_is_corrupt(|b| b.clear(), "empty");
}

#[test]
fn a_flipped_payload_byte_is_corrupt() {
    assert_damage_is_corrupt(|b| b[HEADER_LEN] ^= 0x01, "first payload byte");
    assert_damage_is_corrupt(|b| *b.last_mut().unwrap() ^= 0x80, "last payload byte");
    assert_damage_is_corrupt(
        |b| {
            let middle = HEADER_LEN + (b.len() - HEADER_LEN) / 2;
            b[middle] ^= 0x10;
        },
        "middle payload byte",
    );
    assert_damage_is_corrupt(|b| b.push(0), "a byte appended");
}

#[test]
fn every_flipped_header_byte_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = at("r.bin");
    result.write(&report(10), &loc).unwrap();
    let path = loc.under(dir.path());
    let good = std::fs::read(&path).unwrap();
    for i in 0..HEADER_LEN {
        for bit in [0x01u8, 0x80] {
            let mut bytes = good.clone();
            bytes[i] ^= bit;
            std::fs::write(&path, &bytes).unwrap();
            match result.read::<Report>(&loc) {
                Err(ResultError::Corrupt { .. } | ResultError::TypeMismatch { .. }) => {}
                other => panic!("header byte {i} ^ {bit:#x}: {other:?}"),
            }
        }
    }
    std::fs::write(&path, &good).unwrap();
    assert_eq!(result.read::<Report>(&loc).unwrap(), report(10));
}

#[test]
fn another_type_is_a_type_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = at("numbers.bin");
    result.write(&vec![1u32, 2, 3], &loc).unwrap();
    let e = result.read::<String>(&loc).unwrap_err();
    match &e {
        ResultError::TypeMismatch { path, expected, .. } => {
            assert_eq!(path, &loc.under(dir.path()));
            assert!(expected.contains("String"), "{expected}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("numbers.bin"), "{e}");
    assert_eq!(result.read::<Vec<u32>>(&loc).unwrap(), [1, 2, 3]);
    // The same in memory.
    let memory = MemoryResult::new();
    memory.write(&vec![1u32, 2, 3], &loc).unwrap();
    assert!(matches!(
        memory.read::<String>(&loc),
        Err(ResultError::TypeMismatch { .. })
    ));
}

#[test]
fn a_changed_definition_is_a_type_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = at("r.bin");
    let path = loc.under(dir.path());
    // A `Report` of an older shape: only a string, then nothing.
    let old = bincode::serde::encode_to_vec("emea", bincode::config::standard()).unwrap();
    std::fs::write(&path, forged::<Report>(1, &old)).unwrap();
    let e = result.read::<Report>(&loc).unwrap_err();
    assert!(matches!(e, ResultError::TypeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("earlier definition"), "{e}");
    // A value followed by bytes it does not account for.
    let mut longer = bincode::serde::encode_to_vec(report(1), bincode::config::standard()).unwrap();
    longer.extend_from_slice(&[0, 0]);
    std::fs::write(&path, forged::<Report>(1, &longer)).unwrap();
    let e = result.read::<Report>(&loc).unwrap_err();
    assert!(matches!(e, ResultError::TypeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("left over"), "{e}");
}

#[test]
fn files_of_another_version_or_serializer_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let loc = at("r.bin");
    let path = loc.under(dir.path());
    LocalResult::new(dir.path())
        .with_serializer(JsonSerializer)
        .write(&report(3), &loc)
        .unwrap();
    let e = LocalResult::new(dir.path())
        .read::<Report>(&loc)
        .unwrap_err();
    assert!(matches!(e, ResultError::Corrupt { .. }), "{e}");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let e = LocalResult::new(dir.path())
        .with_serializer(JsonSerializer)
        .read::<Report>(&loc)
        .unwrap_err();
    assert!(e.to_string().contains("version 1"), "{e}");
}

#[test]
fn a_crafted_huge_length_is_refused() {
    let huge = u64::MAX / 2;
    let mut claim = vec![253u8];
    claim.extend_from_slice(&huge.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = at("crafted.bin");
    let path = loc.under(dir.path());

    // A Vec<u8> claiming u64::MAX / 2 bytes, with a valid checksum.
    let mut payload = claim.clone();
    payload.extend_from_slice(b"tiny");
    std::fs::write(&path, forged::<Vec<u8>>(1, &payload)).unwrap();
    let e = result.read::<Vec<u8>>(&loc).unwrap_err();
    assert!(matches!(e, ResultError::Corrupt { .. }), "{e}");
    // The same claim for a String (bincode allocates a string's length up front).
    std::fs::write(&path, forged::<String>(1, &payload)).unwrap();
    let e = result.read::<String>(&loc).unwrap_err();
    assert!(matches!(e, ResultError::TypeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("limit"), "bincode's limit: {e}");
    // For a Vec<String>, and for a Vec<u8> inside a struct (serde's sequence path).
    std::fs::write(&path, forged::<Vec<String>>(1, &payload)).unwrap();
    assert!(result.read::<Vec<String>>(&loc).is_err());
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Blob {
        data: Vec<u8>,
    }
    std::fs::write(&path, forged::<Blob>(1, &payload)).unwrap();
    assert!(result.read::<Blob>(&loc).is_err());
    // In a file large enough to be decoded streaming.
    let mut large = claim.clone();
    large.resize(3 << 20, b'x');
    std::fs::write(&path, forged::<String>(1, &large)).unwrap();
    let e = result.read::<String>(&loc).unwrap_err();
    assert!(matches!(e, ResultError::TypeMismatch { .. }), "{e}");
    // Behind zstd.
    #[cfg(feature = "zstd")]
    {
        use taskcache_results::Zstd;
        let packed = zstd::encode_all(&payload[..], 3).unwrap();
        std::fs::write(&path, forged::<String>(0x81, &packed)).unwrap();
        let e = LocalResult::new(dir.path())
            .with_serializer(Zstd::new(BincodeSerializer))
            .read::<String>(&loc)
            .unwrap_err();
        assert!(matches!(e, ResultError::TypeMismatch { .. }), "{e}");
    }
    // And in memory.
    let memory = MemoryResult::new();
    memory.set_bytes(&loc, forged::<String>(1, &payload));
    assert!(memory.read::<String>(&loc).is_err());
    // A header claiming more payload than the file holds.
    let mut bytes = forged::<String>(1, b"\x01a");
    bytes[20..28].copy_from_slice(&huge.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let e = result.read::<String>(&loc).unwrap_err();
    assert!(matches!(e, ResultError::Corrupt { .. }), "{e}");
}

#[test]
fn home_is_expanded() {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        assert_eq!(LocalResult::new("~/x").dir(), Path::new("~/x"));
        return;
    };
    let home = PathBuf::from(home);
    assert_eq!(LocalResult::new("~").dir(), home);
    assert_eq!(
        LocalResult::new("~/.taskcache").dir(),
        home.join(".taskcache")
    );
    assert_eq!(LocalResult::new("~/a/b").dir(), home.join("a/b"));
    assert_eq!(LocalResult::new("~user/x").dir(), Path::new("~user/x"));
    assert_eq!(LocalResult::new("data/~").dir(), Path::new("data/~"));
    assert_eq!(LocalResult::new("/abs").dir(), Path::new("/abs"));
}

#[test]
fn locations_that_leave_the_directory_are_rejected() {
    for bad in [
        "",
        "..",
        "../x",
        "a/../b",
        "a/..",
        "/etc/passwd",
        "\\server\\share",
        "C:/x",
        "c:x",
        "a/D:/b",
        "a\0b",
        "a//b",
        "/",
        ".",
        "./",
        "a\\..\\b",
    ] {
        let e = Location::new(bad).unwrap_err();
        assert_eq!(e.location, bad);
        let message = e.to_string();
        assert!(
            message.contains("inside the result's directory"),
            "{message}"
        );
    }
    for (good, normal) in [
        ("a", "a"),
        ("./a/b", "a/b"),
        ("a/./b/", "a/b"),
        ("a\\b", "a/b"),
        ("Monday/12:30.bin", "Monday/12:30.bin"),
        ("..a/b..", "..a/b.."),
        ("x.bin", "x.bin"),
    ] {
        assert_eq!(Location::new(good).unwrap().as_str(), normal, "{good}");
    }
    let json = serde_json::to_string(&at("a/b")).unwrap();
    assert_eq!(json, r#""a/b""#);
    assert!(serde_json::from_str::<Location>(r#""../x""#).is_err());
}

#[test]
fn locations_inside_the_backends_own_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    for loc in [".locks/x.lock", ".taskcache-records/k/i.rec"] {
        let e = result.write(&1u8, &at(loc)).unwrap_err();
        assert!(matches!(e, ResultError::Location(_)), "{e}");
    }
}

#[test]
fn a_failed_write_is_io_with_the_path_and_leaves_nothing() {
    // A regular file where a directory should be: fails even for root (we run as root,
    // so a read-only directory would not).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let result = LocalResult::new(dir.path().join("file").join("sub"));
    let e = result.write(&report(1), &at("a/b.bin")).unwrap_err();
    match &e {
        ResultError::Io { path, .. } => assert!(path.starts_with(dir.path().join("file"))),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("file/sub"), "{e}");
    assert_eq!(files_under(dir.path()), ["file"]);
    // Reading there is a miss, not an error.
    assert!(matches!(
        result.read::<Report>(&at("a/b.bin")),
        Err(ResultError::NotFound { .. })
    ));
    assert!(!result.exists(&at("a/b.bin")).unwrap());
}

/// A value whose serialization fails after part of it has been written.
struct FailsHalfway;

impl Serialize for FailsHalfway {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(100_000))?;
        for i in 0..50_000u64 {
            seq.serialize_element(&i)?;
        }
        Err(S::Error::custom("the value refused to be written"))
    }
}

#[test]
fn a_failed_serialization_keeps_the_old_value_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = at("r.bin");
    result.write(&report(5), &loc).unwrap();
    let e = result.write(&FailsHalfway, &loc).unwrap_err();
    assert!(matches!(e, ResultError::Serialize { .. }), "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(e.to_string().contains("r.bin"), "{e}");
    assert_eq!(files_under(dir.path()), ["r.bin"]);
    assert_eq!(result.read::<Report>(&loc).unwrap(), report(5));
    let memory = MemoryResult::new();
    assert!(memory.write(&FailsHalfway, &loc).is_err());
    assert!(!memory.exists(&loc).unwrap());
}

/// A writer that fails once `room` bytes are written, as a full disk does.
struct FullDisk {
    inner: std::io::Cursor<Vec<u8>>,
    room: usize,
}

impl std::io::Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.inner.get_ref().len() + buf.len() > self.room {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for FullDisk {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

#[test]
fn a_full_disk_is_io_not_a_serializer_failure() {
    for serializer_writes in [true, false] {
        let mut out = FullDisk {
            inner: std::io::Cursor::new(Vec::new()),
            room: 4096,
        };
        let path = Path::new("results/full.bin");
        let e = if serializer_writes {
            let value = report(100_000);
            format::encode_into(
                Value::of(&value),
                &BincodeSerializer,
                &mut out,
                path,
                |_| Ok(()),
            )
        } else {
            let value = vec![1u8; 100_000];
            format::encode_into(
                Value::of(&value),
                &BincodeSerializer,
                &mut out,
                path,
                |_| Ok(()),
            )
        }
        .unwrap_err();
        match &e {
            ResultError::Io { path: p, source } => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn exists_does_not_validate_but_read_does() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = at("x/garbage.bin");
    assert!(!result.exists(&loc).unwrap());
    std::fs::create_dir_all(dir.path().join("x")).unwrap();
    std::fs::write(loc.under(dir.path()), b"not a result").unwrap();
    assert!(result.exists(&loc).unwrap());
    assert!(matches!(
        result.read::<String>(&loc),
        Err(ResultError::Corrupt { .. })
    ));
    assert!(
        !result.exists(&at("x")).unwrap(),
        "a directory is not a result"
    );
}

#[test]
fn two_threads_locking_one_location_are_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalResult::new(dir.path());
    let memory = MemoryResult::new();
    let backends: [&(dyn Fn(&Location) -> taskcache_results::LocationLock + Sync); 2] =
        [&|l| local.lock(l).unwrap(), &|l| memory.lock(l).unwrap()];
    for lock in backends {
        let loc = at("t.bin");
        let inside = AtomicU32::new(0);
        let entered = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        let _held = lock(&loc);
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "one holder");
                        entered.fetch_add(1, Ordering::SeqCst);
                        std::thread::yield_now();
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(entered.load(Ordering::SeqCst), 20);
        // Locks on different locations do not wait for each other.
        let _a = lock(&at("a.bin"));
        let _b = lock(&at("b.bin"));
    }
    assert!(
        files_under(dir.path())
            .iter()
            .all(|f| f.starts_with(".locks/")),
        "lock files stay out of the results' tree: {:?}",
        files_under(dir.path())
    );
}

const LOCK_CHILD_ENV: &str = "TASKCACHE_RESULTS_TEST_LOCK_CHILD_DIR";

#[test]
fn a_lock_is_held_across_processes() {
    use std::io::{BufRead, Write};
    if let Some(dir) = std::env::var_os(LOCK_CHILD_ENV) {
        let dir = PathBuf::from(dir);
        println!("child waiting");
        std::io::stdout().flush().unwrap();
        let _held = LocalResult::new(&dir).lock(&at("shared.bin")).unwrap();
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("log"))
            .unwrap();
        log.write_all(b"child has the lock\n").unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("log"), b"").unwrap();
    let result = LocalResult::new(dir.path());
    let held = result.lock(&at("shared.bin")).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_lock_is_held_across_processes",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOCK_CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("child waiting") {
        line.clear();
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "the child ended early"
        );
    }
    // Give the child time to reach the lock; it must not get it while we hold it.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("log"))
        .unwrap();
    log.write_all(b"parent releases\n").unwrap();
    drop(held);
    std::io::copy(&mut stdout, &mut std::io::sink()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("log")).unwrap(),
        "parent releases\nchild has the lock\n"
    );
}

fn check_records(backend: &impl ResultBackend) {
    let key = "prices / eu and us";
    assert_eq!(backend.list_records(key).unwrap(), Vec::<String>::new());
    assert_eq!(backend.get_record(key, "ab12").unwrap(), None);
    backend.put_record(key, "cd34", b"two").unwrap();
    backend.put_record(key, "ab12", b"one").unwrap();
    backend.put_record(key, "ab12", b"one, again").unwrap();
    backend.put_record("other key", "ab12", b"other").unwrap();
    backend.put_record(key, "odd id/with %", b"odd").unwrap();
    assert_eq!(
        backend.get_record(key, "ab12").unwrap().as_deref(),
        Some(&b"one, again"[..])
    );
    assert_eq!(
        backend.list_records(key).unwrap(),
        ["ab12", "cd34", "odd id/with %"]
    );
    assert_eq!(
        backend.get_record(key, "odd id/with %").unwrap().as_deref(),
        Some(&b"odd"[..])
    );
    backend.remove_record(key, "ab12").unwrap();
    backend.remove_record(key, "ab12").unwrap();
    backend.remove_record("never written", "ab12").unwrap();
    assert_eq!(
        backend.list_records(key).unwrap(),
        ["cd34", "odd id/with %"]
    );
    assert_eq!(backend.list_records("other key").unwrap(), ["ab12"]);
    let long_key = "k".repeat(1000);
    backend.put_record(&long_key, "ff", b"long").unwrap();
    assert_eq!(backend.list_records(&long_key).unwrap(), ["ff"]);
}

#[test]
fn records_with_any_key() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalResult::new(dir.path());
    check_records(&local);
    assert!(
        files_under(dir.path())
            .iter()
            .all(|f| f.starts_with(".taskcache-records/") && f.ends_with(".rec")),
        "{:?}",
        files_under(dir.path())
    );
    // Records outlive the backend value (and the process).
    assert_eq!(
        LocalResult::new(dir.path())
            .list_records("other key")
            .unwrap(),
        ["ab12"]
    );
    check_records(&MemoryResult::new());
}

#[test]
fn memory_results_are_shared_by_clones_and_not_persistent() {
    let memory = MemoryResult::new();
    let clone = memory.clone();
    assert!(!memory.is_persistent());
    assert!(memory.is_empty());
    let loc = memory.default_location("my_task");
    assert!(loc.as_str().starts_with("my_task/"), "{loc}");
    clone.write(&report(4), &loc).unwrap();
    assert_eq!(memory.len(), 1);
    assert!(memory.exists(&loc).unwrap());
    assert_eq!(memory.read::<Report>(&loc).unwrap(), report(4));
    assert!(memory.read::<Vec<u8>>(&loc).is_err());
    let bytes = vec![3u8; 200_000];
    memory.write(&bytes, &at("b.bin")).unwrap();
    assert_eq!(clone.read::<Vec<u8>>(&at("b.bin")).unwrap(), bytes);
    assert!(matches!(
        memory.read::<Report>(&at("missing.bin")),
        Err(ResultError::NotFound { .. })
    ));
    // Damage is caught as in a file.
    let mut stored = memory.bytes(&loc).unwrap();
    *stored.last_mut().unwrap() ^= 1;
    memory.set_bytes(&loc, stored);
    let e = clone.read::<Report>(&loc).unwrap_err();
    assert!(matches!(e, ResultError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("memory:my_task/"), "{e}");
}

#[test]
fn a_local_result_describes_itself_and_makes_fresh_locations() {
    let result = LocalResult::new("/tmp/somewhere").with_location("{task_name}.bin");
    assert_eq!(result.describe(), "LocalResult(dir = /tmp/somewhere)");
    assert_eq!(result.location_template(), Some("{task_name}.bin"));
    assert!(result.is_persistent());
    assert_eq!(
        result.with_serializer(JsonSerializer).describe(),
        "LocalResult(dir = /tmp/somewhere, serializer = json)"
    );
    let a = LocalResult::new("/tmp/x").default_location("flow::task");
    let b = LocalResult::new("/tmp/x").default_location("flow::task");
    assert_ne!(a, b);
    assert!(a.as_str().starts_with("flow__task/") && a.as_str().ends_with(".bin"));
}
