//! Serializers: bincode (the default) and JSON.

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
