//! Serializers: bincode (the default) and JSON, optionally compressed with zstd.

use serde::de::DeserializeOwned;
use serde::Serialize;
use taskcache_core::result::{SerializeError, Serializer};

/// bincode 2 with its standard configuration: compact and fast. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeSerializer;

/// Decodes with a bincode limit of the smallest power of 4 (from 64 KiB) that is at
/// least 64 times the payload: no claim in the payload can make decoding allocate more,
/// while a real value, whose in-memory size can exceed its encoding, still fits.
macro_rules! decode_with_limit {
    ($bytes:expr, $($exp:literal)*) => {{
        let bytes: &[u8] = $bytes;
        let needed = (bytes.len() as u64).saturating_mul(64);
        let config = bincode::config::standard();
        $(
            if needed <= (1u64 << $exp) {
                return bincode::serde::decode_from_slice(bytes, config.with_limit::<{ 1usize << $exp }>())
                    .map(|(v, _)| v)
                    .map_err(|e| SerializeError(e.to_string()));
            }
        )*
        bincode::serde::decode_from_slice(bytes, config)
            .map(|(v, _)| v)
            .map_err(|e| SerializeError(e.to_string()))
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
        out: &mut dyn std::io::Write,
    ) -> Result<(), SerializeError> {
        let mut out = out;
        bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| SerializeError(e.to_string()))
    }
    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SerializeError> {
        decode_with_limit!(bytes, 16 18 20 22 24 26 28 30 32 34 36 38 40 42 44 46 48)
    }
    fn raw_bytes(&self) -> bool {
        true
    }
}

/// JSON: readable by people and other tools.
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
        out: &mut dyn std::io::Write,
    ) -> Result<(), SerializeError> {
        serde_json::to_writer(out, value).map_err(|e| SerializeError(e.to_string()))
    }
    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SerializeError> {
        // JSON has no length prefixes to lie about: allocations follow the input.
        serde_json::from_slice(bytes).map_err(|e| SerializeError(e.to_string()))
    }
}

/// Compresses another serializer's output with zstd (feature `zstd`):
/// `Zstd::new(BincodeSerializer)` or `Zstd::new(JsonSerializer)`.
///
/// Its id is the inner serializer's with the high bit set, so a compressed file is never
/// read as an uncompressed one. Decompression stops at [`Zstd::MAX_EXPANSION`] times the
/// compressed size (and at least 1 GiB), so a crafted file cannot exhaust memory.
#[cfg(feature = "zstd")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Zstd<S> {
    inner: S,
    level: i32,
}

#[cfg(feature = "zstd")]
impl<S: Serializer> Zstd<S> {
    /// How much larger than its compressed form a value may decompress to.
    pub const MAX_EXPANSION: u64 = 1024;

    /// `inner`, compressed at zstd's default level (3).
    pub fn new(inner: S) -> Self {
        Zstd { inner, level: 3 }
    }

    /// The same with another compression level (1 to 22).
    pub fn with_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }
}

#[cfg(feature = "zstd")]
impl<S: Serializer + Clone> Serializer for Zstd<S> {
    fn id(&self) -> u8 {
        0x80 | self.inner.id()
    }
    fn name(&self) -> &'static str {
        "zstd"
    }
    fn serialize<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut dyn std::io::Write,
    ) -> Result<(), SerializeError> {
        let fail = |e: std::io::Error| SerializeError(format!("zstd: {e}"));
        let mut encoder = zstd::Encoder::new(out, self.level).map_err(fail)?;
        self.inner.serialize(value, &mut encoder)?;
        encoder.finish().map_err(fail)?;
        Ok(())
    }
    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SerializeError> {
        use std::io::Read;
        let limit = (bytes.len() as u64)
            .saturating_mul(Self::MAX_EXPANSION)
            .max(1 << 30);
        let decoder =
            zstd::Decoder::new(bytes).map_err(|e| SerializeError(format!("zstd: {e}")))?;
        let mut plain = Vec::new();
        decoder
            .take(limit + 1)
            .read_to_end(&mut plain)
            .map_err(|e| SerializeError(format!("zstd: {e}")))?;
        if plain.len() as u64 > limit {
            return Err(SerializeError(format!(
                "zstd: the payload expands beyond {limit} bytes ({}x its size)",
                Self::MAX_EXPANSION
            )));
        }
        self.inner.deserialize(&plain)
    }
}
