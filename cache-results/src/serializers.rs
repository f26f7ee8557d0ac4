//! Serializers: bincode (the default) and JSON, optionally compressed with zstd.
//!
//! All of them stream: `serialize` writes into the (buffered) file as it goes, and
//! `deserialize` reads from a buffered reader, decoding straight from its buffer when
//! that already holds the whole payload.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{BufRead, Write};
use taskcache_core::result::{SerializeError, Serializer};

/// bincode 2 with its standard configuration (little-endian, varint integers):
/// compact and fast. The default serializer, id 1.
///
/// Decoding is limited (bincode's `with_limit`) to 16 times the payload's length,
/// rounded up to a power of 4: no claimed length in a payload can make it allocate more
/// than 64 times the payload, while every real value fits (bincode's accounting counts
/// a decoded integer at its in-memory size, at most 16 times its one encoded byte).
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeSerializer;

/// How many bytes of bincode's limit accounting one payload byte may need: a `u128`
/// encoded in one varint byte is accounted as 16.
const CLAIMS_PER_BYTE: u64 = 16;

/// Reads bincode's input from a `BufRead`, using its buffer for bincode's look-ahead.
struct BufReadReader<'a>(&'a mut dyn BufRead);

impl bincode::de::read::Reader for BufReadReader<'_> {
    #[inline]
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        self.0
            .read_exact(bytes)
            .map_err(|inner| bincode::error::DecodeError::Io {
                inner,
                additional: bytes.len(),
            })
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.0.fill_buf().ok()?.get(..n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.0.consume(n);
    }
}

/// Decodes one value with `config`: from the buffer when it holds the whole payload,
/// else streaming.
fn decode_with<T: DeserializeOwned, C: bincode::config::Config>(
    input: &mut dyn BufRead,
    max_len: u64,
    config: C,
) -> Result<T, SerializeError> {
    let fail = |e: bincode::error::DecodeError| match e {
        bincode::error::DecodeError::LimitExceeded => SerializeError(format!(
            "a length in the payload claims more memory than {max_len} payload bytes can \
             hold (bincode's decoding limit)"
        )),
        e => SerializeError(e.to_string()),
    };
    let buffered = input
        .fill_buf()
        .map_err(|e| SerializeError(e.to_string()))?;
    if buffered.len() as u64 == max_len {
        let (value, used) = bincode::serde::decode_from_slice(buffered, config).map_err(fail)?;
        input.consume(used);
        return Ok(value);
    }
    bincode::serde::decode_from_reader(BufReadReader(input), config).map_err(fail)
}

/// Picks the smallest limit `1 << exp` (from the list) that is at least `needed`:
/// bincode's limit is a const generic, so each candidate is its own instantiation.
macro_rules! decode_limited {
    ($input:expr, $max_len:expr, $needed:expr, $($exp:literal)*) => {{
        $(
            if $needed <= (1u64 << $exp) {
                let config = bincode::config::standard().with_limit::<{ 1usize << $exp }>();
                return decode_with($input, $max_len, config);
            }
        )*
    }};
}

impl Serializer for BincodeSerializer {
    fn id(&self) -> u8 {
        1
    }

    fn name(&self) -> &'static str {
        "bincode"
    }

    fn serialize<T: Serialize + ?Sized>(
        &self,
        value: &T,
        mut out: &mut dyn Write,
    ) -> Result<(), SerializeError> {
        bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| SerializeError(e.to_string()))
    }

    fn deserialize<T: DeserializeOwned>(
        &self,
        input: &mut dyn BufRead,
        max_len: u64,
    ) -> Result<T, SerializeError> {
        let needed = max_len.saturating_mul(CLAIMS_PER_BYTE);
        decode_limited!(input, max_len, needed, 16 18 20 22 24 26 28 30);
        #[cfg(target_pointer_width = "64")]
        decode_limited!(input, max_len, needed, 32 34 36 38 40 42 44 46 48);
        Err(SerializeError(format!(
            "a payload of {max_len} bytes is too large to decode on this system"
        )))
    }

    fn encodes_bytes_as_bincode(&self) -> bool {
        true
    }
}

/// JSON (serde_json): files people and other tools can read. Id 2.
///
/// JSON has no length prefixes: what decoding allocates follows the bytes actually
/// read.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerializer;

impl Serializer for JsonSerializer {
    fn id(&self) -> u8 {
        2
    }

    fn name(&self) -> &'static str {
        "json"
    }

    fn serialize<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut dyn Write,
    ) -> Result<(), SerializeError> {
        serde_json::to_writer(out, value).map_err(|e| SerializeError(e.to_string()))
    }

    fn deserialize<T: DeserializeOwned>(
        &self,
        input: &mut dyn BufRead,
        max_len: u64,
    ) -> Result<T, SerializeError> {
        let fail = |e: serde_json::Error| SerializeError(e.to_string());
        let buffered = input
            .fill_buf()
            .map_err(|e| SerializeError(e.to_string()))?;
        if buffered.len() as u64 == max_len {
            let mut de = serde_json::Deserializer::from_slice(buffered);
            let value = T::deserialize(&mut de).map_err(fail)?;
            de.end().map_err(fail)?;
            let used = buffered.len();
            input.consume(used);
            return Ok(value);
        }
        // `end` reads on to the end of the input: only whitespace may follow the value.
        let mut de = serde_json::Deserializer::from_reader(input);
        let value = T::deserialize(&mut de).map_err(fail)?;
        de.end().map_err(fail)?;
        Ok(value)
    }
}

/// Compresses another serializer's stream with zstd (feature `zstd`):
/// `Zstd::new(BincodeSerializer)` or `Zstd::new(JsonSerializer)`, for large
/// compressible values.
///
/// Its id is the inner serializer's with the high bit set, so a compressed file is never
/// read as an uncompressed one. Both directions stream through the (de)compressor.
#[cfg(feature = "zstd")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Zstd<S> {
    inner: S,
    level: i32,
}

#[cfg(feature = "zstd")]
impl<S: Serializer> Zstd<S> {
    /// The most a zstd frame can expand: an RLE block holds 128 KiB in 4 bytes. The
    /// decompressed stream is cut off there, and the inner serializer is told that its
    /// input is at most this many times the compressed payload, so real data is never
    /// refused however well it compresses.
    pub const MAX_EXPANSION: u64 = 32 * 1024;

    /// `inner`, compressed at zstd's default level (3).
    pub fn new(inner: S) -> Self {
        Zstd { inner, level: 3 }
    }

    /// The same with another compression level (1 to 22; higher is smaller and slower).
    pub fn with_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }
}

#[cfg(feature = "zstd")]
impl<S: Serializer> Serializer for Zstd<S> {
    fn id(&self) -> u8 {
        0x80 | self.inner.id()
    }

    fn name(&self) -> &'static str {
        match self.inner.name() {
            "bincode" => "zstd(bincode)",
            "json" => "zstd(json)",
            _ => "zstd",
        }
    }

    fn serialize<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut dyn Write,
    ) -> Result<(), SerializeError> {
        let fail = |e: std::io::Error| SerializeError(format!("zstd: {e}"));
        let mut encoder = zstd::Encoder::new(out, self.level).map_err(fail)?;
        {
            // The inner serializer writes a few bytes at a time; the compressor is
            // handed large blocks.
            let mut buffered = std::io::BufWriter::with_capacity(128 << 10, &mut encoder);
            self.inner.serialize(value, &mut buffered)?;
            buffered.flush().map_err(fail)?;
        }
        encoder.finish().map_err(fail)?;
        Ok(())
    }

    fn deserialize<T: DeserializeOwned>(
        &self,
        input: &mut dyn BufRead,
        max_len: u64,
    ) -> Result<T, SerializeError> {
        use std::io::Read;
        let fail = |e: std::io::Error| SerializeError(format!("zstd: {e}"));
        let bound = max_len.saturating_mul(Self::MAX_EXPANSION);
        // One frame: the decoder stops at its end, so whatever follows stays in `input`
        // for the caller to see.
        let decoder = zstd::Decoder::with_buffer(input)
            .map_err(fail)?
            .single_frame();
        let mut plain = std::io::BufReader::with_capacity(128 << 10, decoder.take(bound));
        let value = self.inner.deserialize(&mut plain, bound);
        let value = match value {
            Ok(v) => v,
            Err(e) if plain.get_ref().limit() == 0 => {
                return Err(SerializeError(format!(
                    "zstd: the payload decompresses to more than {bound} bytes, more than zstd \
                     can expand ({e})"
                )))
            }
            Err(e) => return Err(e),
        };
        // Reading to the end makes the decoder check the end of the frame.
        let rest = plain.fill_buf().map_err(fail)?;
        if !rest.is_empty() {
            return Err(SerializeError(format!(
                "zstd: the decompressed value is followed by {} more bytes",
                rest.len()
            )));
        }
        Ok(value)
    }
}
