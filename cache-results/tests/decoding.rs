//! `BincodeSerializer` decodes bincode's standard encoding itself: it must read exactly
//! what `bincode::serde` writes, refuse exactly what `bincode::serde` refuses, and
//! leave what follows the value. And a `Zstd` payload is one frame that records its
//! decompressed size, which is held to.

#[cfg(feature = "zstd")]
mod common;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::BufReader;
use taskcache_results::{BincodeSerializer, Serializer};

fn standard() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Decodes `bytes` as bincode itself does, and as `BincodeSerializer` does from a
/// slice and streaming through buffers of a few sizes; all must agree (compared by
/// their encodings, which tell NaNs apart).
fn agree<T: Serialize + DeserializeOwned + Debug>(bytes: &[u8]) -> Option<T> {
    let same = |a: &T, b: &T| {
        bincode::serde::encode_to_vec(a, standard()).unwrap()
            == bincode::serde::encode_to_vec(b, standard()).unwrap()
    };
    // (Limited, or a changed length could make bincode allocate more than there is.)
    let limited = standard().with_limit::<{ 1 << 30 }>();
    let reference: Option<(T, usize)> = bincode::serde::decode_from_slice(bytes, limited).ok();
    let mut input = bytes;
    let ours = BincodeSerializer
        .deserialize::<T>(&mut input, bytes.len() as u64)
        .ok();
    let used = bytes.len() - input.len();
    match (&reference, &ours) {
        (Some((r, r_used)), Some(o)) => {
            assert!(same(r, o), "{r:?} and {o:?} from {bytes:?}");
            assert_eq!(*r_used, used, "bytes used, {bytes:?}");
        }
        (None, None) => {}
        _ => panic!(
            "bincode: {:?}, ours: {ours:?}, for {bytes:?}",
            reference.as_ref().map(|r| &r.0)
        ),
    }
    for capacity in [1, 2, 3, 7, 64] {
        let mut streamed = BufReader::with_capacity(capacity, bytes);
        let again = BincodeSerializer
            .deserialize::<T>(&mut streamed, bytes.len() as u64)
            .ok();
        assert!(
            match (&again, &ours) {
                (Some(a), Some(o)) => same(a, o),
                (a, o) => a.is_none() && o.is_none(),
            },
            "streamed through {capacity} bytes: {again:?}, from a slice: {ours:?}, {bytes:?}"
        );
    }
    ours
}

/// `value` round-trips through bincode's encoding and our decoding, and every prefix
/// and many single-byte changes of its encoding are decoded (or refused) as bincode
/// does.
fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let bytes = bincode::serde::encode_to_vec(value, standard()).unwrap();
    assert_eq!(agree::<T>(&bytes).as_ref(), Some(value));
    let mut followed = bytes.clone();
    followed.extend_from_slice(b"tail");
    let mut input = &followed[..];
    let back: T = BincodeSerializer
        .deserialize(&mut input, followed.len() as u64)
        .unwrap();
    assert_eq!(&back, value);
    assert_eq!(input, b"tail", "what follows the value is left");
    for end in 0..bytes.len().min(300) {
        agree::<T>(&bytes[..end]);
    }
    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ bytes.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200 {
        let mut changed = bytes.clone();
        if changed.is_empty() {
            break;
        }
        let at = (next() % changed.len() as u64) as usize;
        changed[at] = match next() % 4 {
            0 => 250 + (next() % 6) as u8,
            1 => 0,
            2 => 1,
            _ => next() as u8,
        };
        agree::<T>(&changed);
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Newtype(u32);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pair(i16, String);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect(u32, u32),
    Named { name: String, sides: Option<u8> },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Everything {
    flag: bool,
    small: (i8, u8, i16, u16),
    mid: (i32, u32, f32),
    wide: (i64, u64, f64),
    huge: (i128, u128),
    letters: Vec<char>,
    text: String,
    bytes: Vec<u8>,
    maybe: Option<Box<Everything>>,
    shapes: Vec<Shape>,
    map: BTreeMap<String, Vec<u16>>,
    unit: (),
    unit_struct: Unit,
    newtype: Newtype,
    pair: Pair,
    nested: Vec<Vec<Option<u64>>>,
}

fn everything(n: u64) -> Everything {
    Everything {
        flag: n.is_multiple_of(2),
        small: (-(n as i8), n as u8, -300, 65_535),
        mid: (i32::MIN, 65_536 + n as u32, 1.5),
        wide: (i64::MIN + n as i64, u64::MAX - n, -0.25),
        huge: (i128::MIN, u128::MAX),
        letters: vec!['a', 'é', '€', '𝄞'],
        text: "héllo wörld ".repeat(n as usize),
        bytes: (0..n as u8).collect(),
        maybe: (n > 0).then(|| Box::new(everything(n - 1))),
        shapes: vec![
            Shape::Empty,
            Shape::Circle(2.0),
            Shape::Rect(3, 251),
            Shape::Named {
                name: "hex".into(),
                sides: Some(6),
            },
            Shape::Named {
                name: String::new(),
                sides: None,
            },
        ],
        map: (0..n).map(|i| (i.to_string(), vec![i as u16; 3])).collect(),
        unit: (),
        unit_struct: Unit,
        newtype: Newtype(n as u32 * 1000),
        pair: Pair(i16::MIN, "p".into()),
        nested: vec![vec![None, Some(n)], vec![], vec![Some(u64::MAX)]],
    }
}

/// Bytes through `serialize_bytes` and `deserialize_byte_buf`.
#[derive(Debug, PartialEq)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

#[test]
fn decodes_what_bincode_writes_and_refuses_what_it_refuses() {
    for n in [
        0u64,
        1,
        250,
        251,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        u64::MAX,
    ] {
        check(&n);
        check(&(n as u16));
        check(&(n as u32));
        check(&(n as i64));
        check(&-(n as i64));
        check(&(n as i16));
        check(&(n as i32));
        check(&(n as u128 * 1_000_003));
        check(&-(n as i128 * 1_000_003));
    }
    for c in [
        '\0',
        'a',
        '\u{7f}',
        '\u{80}',
        'é',
        '€',
        '\u{ffff}',
        '𝄞',
        char::MAX,
    ] {
        check(&c);
    }
    for f in [0.0f64, -0.0, 1.0e300, f64::INFINITY, f64::MIN_POSITIVE] {
        check(&f);
        check(&(f as f32));
    }
    check(&true);
    check(&false);
    check(&());
    check(&Unit);
    check(&Some(3u8));
    check(&None::<u8>);
    check(&String::new());
    check(&"x".repeat(250));
    check(&"ü".repeat(40_000));
    check(&Bytes(vec![]));
    check(&Bytes((0..=255).collect()));
    check(&vec![String::from("a"), String::from("bc")]);
    check(&vec![0u64; 1000]);
    check(&BTreeMap::from([(1u8, 'x'), (2, 'y')]));
    for n in [0, 1, 3] {
        check(&everything(n));
    }
    // The rest of the enum's variants, and invalid ones.
    check(&Shape::Empty);
    agree::<Shape>(&[4]);
    agree::<Shape>(&[252, 0, 0, 0, 0]);
    agree::<Shape>(&[253, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Invalid UTF-8, characters and markers.
    agree::<String>(&[2, 0xc3, 0x28]);
    agree::<char>(&[0xc0, 0x80]);
    agree::<char>(&[0xed, 0xa0, 0x80]);
    agree::<u128>(&[255]);
    agree::<u64>(&[254, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    agree::<u16>(&[251, 1]);
    // Non-minimal varints are accepted, as bincode does.
    assert_eq!(agree::<u64>(&[251, 5, 0]), Some(5));
}

#[test]
fn a_sequence_reserves_no_more_than_its_bytes() {
    // A claimed count far beyond the payload is only a hint, and wrong: the payload
    // ends first.
    let mut payload = vec![253u8];
    payload.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    payload.extend_from_slice(&[1, 2, 3]);
    assert_eq!(agree::<Vec<u64>>(&payload), None);
    // Zero-sized elements take no bytes: a long sequence of them is real. (Only
    // round-tripped: a changed length would have both decoders count to it.)
    let units = vec![(); 100_000];
    let bytes = bincode::serde::encode_to_vec(&units, standard()).unwrap();
    assert_eq!(agree::<Vec<()>>(&bytes), Some(units));
}

#[cfg(feature = "zstd")]
mod zstd_frames {
    use super::common::{forged, reframe};
    use taskcache_results::{
        BincodeSerializer, JsonSerializer, LocalResult, Location, ResultBackendExt, ResultError,
        Serializer, Zstd,
    };

    fn at(name: &str) -> Location {
        Location::new(name).unwrap()
    }

    #[test]
    fn a_frame_records_its_decompressed_size() {
        let dir = tempfile::tempdir().unwrap();
        for level in [1, 3, 19] {
            let zstd = Zstd::new(BincodeSerializer).with_level(level);
            let result = LocalResult::new(dir.path()).with_serializer(zstd);
            for value in [String::new(), "abc".repeat(100_000)] {
                let loc = at("v.bin");
                result.write(&value, &loc).unwrap();
                let file = std::fs::read(loc.under(dir.path())).unwrap();
                let plain = bincode::serde::encode_to_vec(&value, bincode::config::standard())
                    .unwrap()
                    .len() as u64;
                assert_eq!(
                    zstd::zstd_safe::get_frame_content_size(&file[60..]).ok(),
                    Some(Some(plain))
                );
                assert_eq!(result.read::<String>(&loc).unwrap(), value);
            }
        }
    }

    /// Reads `frame` as the payload of a `T` written by `Zstd(BincodeSerializer)`.
    fn read<T: serde::de::DeserializeOwned + 'static>(frame: &[u8]) -> Result<T, ResultError> {
        let dir = tempfile::tempdir().unwrap();
        let zstd = Zstd::new(BincodeSerializer);
        let loc = at("f.bin");
        std::fs::write(loc.under(dir.path()), forged::<T>(zstd.id(), frame)).unwrap();
        LocalResult::new(dir.path())
            .with_serializer(zstd)
            .read::<T>(&loc)
    }

    fn refused<T: serde::de::DeserializeOwned + std::fmt::Debug + 'static>(frame: &[u8]) -> String {
        let e = read::<T>(frame).unwrap_err();
        assert!(
            matches!(
                e,
                ResultError::TypeMismatch { .. } | ResultError::Corrupt { .. }
            ),
            "{e}"
        );
        e.to_string()
    }

    #[test]
    fn a_frame_not_holding_what_it_records_is_refused() {
        let value = "honest value ".repeat(1000);
        let plain = bincode::serde::encode_to_vec(&value, bincode::config::standard()).unwrap();
        let honest = zstd::bulk::compress(&plain, 3).unwrap();
        assert_eq!(read::<String>(&honest).unwrap(), value);
        // The same blocks under a header recording another size: shorter, longer.
        assert_eq!(
            read::<String>(&reframe(&honest, plain.len() as u64)).unwrap(),
            value
        );
        for size in [
            0,
            1,
            plain.len() as u64 - 1,
            plain.len() as u64 + 1,
            1 << 20,
        ] {
            refused::<String>(&reframe(&honest, size));
        }
        // More than zstd can expand its bytes to.
        let e = refused::<String>(&reframe(&honest, 1 << 40));
        assert!(e.contains("expand"), "{e}");
        // A frame that does not record its size (as written before it did).
        let mut encoder = zstd::Encoder::new(Vec::new(), 3).unwrap();
        std::io::Write::write_all(&mut encoder, &plain).unwrap();
        let unsized_frame = encoder.finish().unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&unsized_frame).ok(),
            Some(None)
        );
        let e = refused::<String>(&unsized_frame);
        assert!(e.contains("record"), "{e}");
        // A decompressed value followed by bytes it does not account for.
        let mut longer = plain.clone();
        longer.extend_from_slice(b"extra");
        let e = refused::<String>(&zstd::bulk::compress(&longer, 3).unwrap());
        assert!(e.contains("followed"), "{e}");
        // A truncated frame, a frame followed by bytes, not a frame at all.
        refused::<String>(&honest[..honest.len() - 1]);
        refused::<String>(&honest[..10]);
        let mut trailing = honest.clone();
        trailing.extend_from_slice(&honest);
        let e = refused::<String>(&trailing);
        assert!(e.contains("left over"), "{e}");
        refused::<String>(&plain);
        refused::<String>(b"");
    }

    #[test]
    fn json_behind_zstd_records_its_size_too() {
        let dir = tempfile::tempdir().unwrap();
        let result = LocalResult::new(dir.path()).with_serializer(Zstd::new(JsonSerializer));
        let value: Vec<String> = (0..50_000).map(|i| format!("row {i}")).collect();
        result.write(&value, &at("j.bin")).unwrap();
        assert_eq!(result.read::<Vec<String>>(&at("j.bin")).unwrap(), value);
    }
}

/// A recursive type: each level is an `Option` byte and a box.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Chain(Option<Box<Chain>>);

#[test]
fn a_crafted_count_of_zero_sized_elements_fails_quickly() {
    // `Vec<()>` claiming u64::MAX elements: no element takes a byte.
    let mut bytes = vec![253u8];
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    let len = bytes.len() as u64;
    let started = std::time::Instant::now();
    let result = BincodeSerializer.deserialize::<Vec<()>>(&mut &bytes[..], len);
    assert!(result.is_err(), "refused, not looped over");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // An honest one still decodes.
    let honest =
        bincode::serde::encode_to_vec(vec![(); 1000], bincode::config::standard()).unwrap();
    let back: Vec<()> = BincodeSerializer
        .deserialize(&mut &honest[..], honest.len() as u64)
        .unwrap();
    assert_eq!(back.len(), 1000);
}

#[test]
fn a_value_nested_past_the_limit_is_refused_without_overflowing_the_stack() {
    // 100 000 levels of `Some`, then `None`: far deeper than any stack holds.
    let mut bytes = vec![1u8; 100_000];
    bytes.push(0);
    let len = bytes.len() as u64;
    // On a thread with the stack Rust gives a spawned thread (2 MiB), in a debug build.
    let result = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            BincodeSerializer
                .deserialize::<Chain>(&mut &bytes[..], len)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    let message = result.unwrap_err();
    assert!(message.contains("nests deeper"), "{message}");
    // Shallow ones decode.
    let shallow = [1u8, 1, 1, 0];
    assert!(BincodeSerializer
        .deserialize::<Chain>(&mut &shallow[..], 4)
        .is_ok());
}
