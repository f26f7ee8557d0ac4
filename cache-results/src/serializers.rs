//! Serializers: bincode (the default) and JSON, optionally compressed with zstd.
//!
//! All of them stream: `serialize` writes into the (buffered) file as it goes, and
//! `deserialize` reads from a buffered reader, decoding straight from its buffer when
//! that already holds the whole payload.

use std::io::{BufRead, Write};
use taskcache_core::result::{SerializeError, Serializer, Visit};

/// bincode 2 with its standard configuration (little-endian, varint integers):
/// compact and fast. The default serializer, id 1.
///
/// Decoding reads bincode's encoding itself (bincode's own serde decoder allocates a
/// string's claimed length before reading it) and never allocates for a length in the
/// payload ahead of the bytes behind it:
///
/// - a string or byte buffer claiming more bytes than the payload has left fails before
///   anything is allocated; one that fits is allocated once, at its length, when its
///   bytes are already buffered, and otherwise grows as they are read (to at most twice
///   what has arrived);
/// - a sequence or map reserves room for at most as many elements as there are payload
///   bytes left, and at most 1 MiB (serde's cap), then grows with the elements decoded.
///
/// So whatever lengths a payload of `n` bytes claims, decoding it allocates nothing
/// beyond what its bytes really decode to, except one string's buffer of at most `n`
/// bytes (streaming: at most about twice the bytes read so far) or a sequence's first
/// reservation of at most 1 MiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeSerializer;

impl Serializer for BincodeSerializer {
    fn id(&self) -> u8 {
        1
    }

    fn name(&self) -> &'static str {
        "bincode"
    }

    fn serialize(
        &self,
        value: &dyn erased_serde::Serialize,
        mut out: &mut dyn Write,
    ) -> Result<(), SerializeError> {
        bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| SerializeError(e.to_string()))
    }

    fn deserialize_with(
        &self,
        input: &mut dyn BufRead,
        max_len: u64,
        visit: &mut Visit<'_>,
    ) -> Result<(), SerializeError> {
        bincode_decode::decode(input, max_len, visit).map_err(|e| SerializeError(e.0))
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

    fn serialize(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut dyn Write,
    ) -> Result<(), SerializeError> {
        serde_json::to_writer(out, value).map_err(|e| SerializeError(e.to_string()))
    }

    fn deserialize_with(
        &self,
        input: &mut dyn BufRead,
        max_len: u64,
        visit: &mut Visit<'_>,
    ) -> Result<(), SerializeError> {
        let fail = |e: serde_json::Error| SerializeError(e.to_string());
        let erased = |e: erased_serde::Error| SerializeError(e.to_string());
        let buffered = input
            .fill_buf()
            .map_err(|e| SerializeError(e.to_string()))?;
        if buffered.len() as u64 == max_len {
            let mut de = serde_json::Deserializer::from_slice(buffered);
            visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de)).map_err(erased)?;
            de.end().map_err(fail)?;
            let used = buffered.len();
            input.consume(used);
            return Ok(());
        }
        // `end` reads on to the end of the input: only whitespace may follow the value.
        let mut de = serde_json::Deserializer::from_reader(input);
        visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de)).map_err(erased)?;
        de.end().map_err(fail)?;
        Ok(())
    }
}

/// Compresses another serializer's stream with zstd (feature `zstd`):
/// `Zstd::new(BincodeSerializer)` or `Zstd::new(JsonSerializer)`, for large
/// compressible values.
///
/// Its id is the inner serializer's with the high bit set, so a compressed file is never
/// read as an uncompressed one. Both directions stream through the (de)compressor.
///
/// The payload is one zstd frame that records its decompressed size (the frame's
/// content size: the value is encoded once to count its bytes, then again through the
/// compressor). A reader refuses a frame without one, or recording more than zstd can
/// expand its length to ([`Zstd::MAX_EXPANSION`]); the inner serializer is handed at
/// most that many decompressed bytes, told that is all there is, and a stream that ends
/// short of it or runs past it is an error.
#[cfg(feature = "zstd")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Zstd<S> {
    inner: S,
    level: i32,
}

#[cfg(feature = "zstd")]
impl<S: Serializer> Zstd<S> {
    /// The most a zstd frame can expand: an RLE block holds 128 KiB in 4 bytes. A frame
    /// recording a larger decompressed size than this many times the compressed payload
    /// is refused unread; real data never is, however well it compresses.
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

/// Counts what is written to it.
#[cfg(feature = "zstd")]
struct Counter(u64);

#[cfg(feature = "zstd")]
impl Write for Counter {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0 += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The largest zstd frame header: magic, descriptor, window, dictionary id, content size.
#[cfg(feature = "zstd")]
const FRAME_HEADER_MAX: usize = 18;

/// The length of a zstd frame header, from its magic number and descriptor byte; `None`
/// when they are not a zstd frame's.
#[cfg(feature = "zstd")]
fn frame_header_len(start: &[u8; 5]) -> Option<usize> {
    if start[..4] != 0xFD2F_B528u32.to_le_bytes() {
        return None;
    }
    let descriptor = start[4];
    let single_segment = descriptor & 0x20 != 0;
    let content_size = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let dictionary = [0, 1, 2, 4][usize::from(descriptor & 3)];
    Some(5 + usize::from(!single_segment) + dictionary + content_size)
}

/// The buffer the inner serializer reads decompressed bytes through (less for a small
/// value).
#[cfg(feature = "zstd")]
const PLAIN_BUFFER: usize = 128 << 10;

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

    fn serialize(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut dyn Write,
    ) -> Result<(), SerializeError> {
        let fail = |e: std::io::Error| SerializeError(format!("zstd: {e}"));
        // The frame records the decompressed size: encoding is cheap next to
        // compressing, and counting keeps both passes streaming.
        let mut counted = Counter(0);
        self.inner.serialize(value, &mut counted)?;
        let mut encoder = zstd::Encoder::new(out, self.level).map_err(fail)?;
        encoder.include_contentsize(true).map_err(fail)?;
        // zstd fails the frame if the second pass writes another number of bytes.
        encoder
            .set_pledged_src_size(Some(counted.0))
            .map_err(fail)?;
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

    fn deserialize_with(
        &self,
        input: &mut dyn BufRead,
        max_len: u64,
        visit: &mut Visit<'_>,
    ) -> Result<(), SerializeError> {
        use std::io::Read;
        let fail = |e: std::io::Error| SerializeError(format!("zstd: {e}"));
        let refuse = |why: String| SerializeError(format!("zstd: {why}"));
        // The frame header first, for the decompressed size its writer recorded.
        let mut header = [0u8; FRAME_HEADER_MAX];
        let mut start = [0u8; 5];
        input.read_exact(&mut start).map_err(fail)?;
        let header_len = frame_header_len(&start)
            .ok_or_else(|| refuse("the payload does not start with a zstd frame".into()))?;
        header[..5].copy_from_slice(&start);
        input.read_exact(&mut header[5..header_len]).map_err(fail)?;
        let header = &header[..header_len];
        let size = match zstd::zstd_safe::get_frame_content_size(header) {
            Ok(Some(size)) => size,
            Ok(None) => {
                return Err(refuse(
                    "the frame does not record its decompressed size (written by an older \
                     taskcache?)"
                        .into(),
                ))
            }
            Err(_) => return Err(refuse("the frame header is invalid".into())),
        };
        let bound = max_len.saturating_mul(Self::MAX_EXPANSION);
        if size > bound {
            return Err(refuse(format!(
                "the frame records {size} decompressed bytes, more than its {max_len} bytes \
                 can expand to"
            )));
        }
        // One frame: the decoder stops at its end, so whatever follows stays in `input`
        // for the caller to see.
        let decoder = zstd::Decoder::with_buffer(header.chain(input))
            .map_err(fail)?
            .single_frame();
        let capacity = usize::try_from(size).map_or(PLAIN_BUFFER, |s| s.clamp(1, PLAIN_BUFFER));
        let mut plain = std::io::BufReader::with_capacity(capacity, decoder.take(size));
        self.inner.deserialize_with(&mut plain, size, visit)?;
        let rest = plain.fill_buf().map_err(fail)?;
        if !rest.is_empty() {
            return Err(refuse(format!(
                "the decompressed value is followed by {} more bytes",
                rest.len()
            )));
        }
        let mut decoder = plain.into_inner();
        if decoder.limit() > 0 {
            return Err(refuse(format!(
                "the frame decompresses to {} bytes, not the {size} it records",
                size - decoder.limit()
            )));
        }
        // Reading on makes the decoder check the end of the frame.
        let mut probe = [0u8; 1];
        match decoder.get_mut().read(&mut probe).map_err(fail)? {
            0 => Ok(()),
            _ => Err(refuse(format!(
                "the frame decompresses to more than the {size} bytes it records"
            ))),
        }
    }
}

/// bincode's standard encoding (varint integers, little-endian), decoded through serde
/// exactly as `bincode::serde` decodes it, except that no length in the payload is
/// trusted ahead of the bytes behind it (see [`super::BincodeSerializer`]).
mod bincode_decode {
    use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
    use std::fmt;
    use std::io::BufRead;

    /// Why decoding failed.
    #[derive(Debug)]
    pub(super) struct Error(pub(super) String);

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    impl de::Error for Error {
        fn custom<M: fmt::Display>(msg: M) -> Self {
            Error(msg.to_string())
        }
    }

    fn ended() -> Error {
        Error("the payload ends in the middle of a value".into())
    }

    /// Decodes one value of the `max_len` bytes `input` yields at most, leaving what
    /// follows it in `input`: from `input`'s buffer when it holds them all, else
    /// streaming.
    pub(super) fn decode(
        input: &mut dyn BufRead,
        max_len: u64,
        visit: &mut super::Visit<'_>,
    ) -> Result<(), Error> {
        let erased = |e: erased_serde::Error| Error(e.to_string());
        let buffered = input.fill_buf().map_err(|e| Error(e.to_string()))?;
        if buffered.len() as u64 == max_len {
            let mut de = Decoder(
                Slice {
                    bytes: buffered,
                    at: 0,
                },
                Limits::for_payload(max_len),
            );
            visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de)).map_err(erased)?;
            let used = de.0.at;
            input.consume(used);
            return Ok(());
        }
        let mut de = Decoder(
            Stream {
                input,
                left: max_len,
            },
            Limits::for_payload(max_len),
        );
        visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de)).map_err(erased)
    }

    /// Where the bytes come from.
    trait Source {
        /// The bytes available now; empty at the end of the input.
        fn buffered(&mut self) -> Result<&[u8], Error>;
        /// Marks `n` bytes of [`Source::buffered`] as read.
        fn consume(&mut self, n: usize);
        /// The most bytes the input may still yield.
        fn left(&self) -> u64;
    }

    /// A payload held whole in memory.
    struct Slice<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl Source for Slice<'_> {
        #[inline]
        fn buffered(&mut self) -> Result<&[u8], Error> {
            Ok(&self.bytes[self.at..])
        }
        #[inline]
        fn consume(&mut self, n: usize) {
            self.at += n;
        }
        #[inline]
        fn left(&self) -> u64 {
            (self.bytes.len() - self.at) as u64
        }
    }

    /// A payload read through a buffer.
    struct Stream<'a> {
        input: &'a mut dyn BufRead,
        left: u64,
    }

    impl Source for Stream<'_> {
        #[inline]
        fn buffered(&mut self) -> Result<&[u8], Error> {
            self.input.fill_buf().map_err(|e| Error(e.to_string()))
        }
        #[inline]
        fn consume(&mut self, n: usize) {
            self.input.consume(n);
            self.left = self.left.saturating_sub(n as u64);
        }
        #[inline]
        fn left(&self) -> u64 {
            self.left
        }
    }

    /// The first reservation of a string or byte buffer whose bytes are not all
    /// buffered yet; it then doubles, up to its length, as they are read.
    const FIRST_CHUNK: usize = 64 << 10;

    struct Decoder<S>(S, Limits);

    /// How deep values may nest, and how many elements may be visited, in one payload.
    ///
    /// A crafted payload must fail quickly: elements of a zero-sized type (`Vec<()>`)
    /// take no bytes, so their claimed count is bounded here rather than by the bytes
    /// left; and each level of nesting takes stack, so a recursive type nested deeper
    /// than [`MAX_DEPTH`] is refused (as serde_json does at the same depth) instead of overflowing it.
    struct Limits {
        depth: u32,
        elements: u64,
    }

    /// The deepest nesting decoded.
    const MAX_DEPTH: u32 = 128;
    /// Elements allowed beyond one per payload byte (for zero-sized ones).
    const SPARE_ELEMENTS: u64 = 1 << 24;

    impl Limits {
        fn for_payload(len: u64) -> Self {
            Limits {
                depth: 0,
                elements: len.saturating_add(SPARE_ELEMENTS),
            }
        }
    }

    impl<S: Source> Decoder<S> {
        /// Runs `f` one level deeper, refusing to go past [`MAX_DEPTH`].
        fn nested<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R, Error>) -> Result<R, Error> {
            if self.1.depth >= MAX_DEPTH {
                return Err(Error(format!(
                    "the value nests deeper than {MAX_DEPTH} levels"
                )));
            }
            self.1.depth += 1;
            let result = f(self);
            self.1.depth -= 1;
            result
        }

        /// Counts one element, refusing more than the payload can account for.
        fn element(&mut self) -> Result<(), Error> {
            self.1.elements = self.1.elements.checked_sub(1).ok_or_else(|| {
                Error("the value claims more elements than its payload can hold".into())
            })?;
            Ok(())
        }

        #[inline]
        fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
            let mut out = [0u8; N];
            let buffered = self.0.buffered()?;
            if let Some(bytes) = buffered.get(..N) {
                out.copy_from_slice(bytes);
                self.0.consume(N);
            } else {
                self.fill(&mut out)?;
            }
            Ok(out)
        }

        #[cold]
        fn fill(&mut self, out: &mut [u8]) -> Result<(), Error> {
            let mut at = 0;
            while at < out.len() {
                let buffered = self.0.buffered()?;
                if buffered.is_empty() {
                    return Err(ended());
                }
                let n = buffered.len().min(out.len() - at);
                out[at..at + n].copy_from_slice(&buffered[..n]);
                self.0.consume(n);
                at += n;
            }
            Ok(())
        }

        #[inline]
        fn byte(&mut self) -> Result<u8, Error> {
            Ok(self.array::<1>()?[0])
        }

        /// A varint of at most `widest`'s width: 251 for a `u16`, 252 for a `u32`, 253
        /// for a `u64`, as bincode's (which refuses wider markers).
        #[inline]
        fn varint(&mut self, widest: u8, ty: &str) -> Result<u64, Error> {
            match self.byte()? {
                byte @ 0..=250 => Ok(u64::from(byte)),
                251 if widest >= 251 => Ok(u64::from(u16::from_le_bytes(self.array()?))),
                252 if widest >= 252 => Ok(u64::from(u32::from_le_bytes(self.array()?))),
                253 if widest >= 253 => Ok(u64::from_le_bytes(self.array()?)),
                marker => Err(Error(format!("invalid varint marker {marker} for a {ty}"))),
            }
        }

        fn varint_u128(&mut self, ty: &str) -> Result<u128, Error> {
            let buffered = self.0.buffered()?;
            if buffered.first() == Some(&254) {
                self.0.consume(1);
                return Ok(u128::from_le_bytes(self.array()?));
            }
            self.varint(253, ty).map(u128::from)
        }

        /// A length: a `u64` varint that must fit a `usize`.
        fn len(&mut self) -> Result<usize, Error> {
            let len = self.varint(253, "length")?;
            usize::try_from(len)
                .map_err(|_| Error(format!("a length of {len} does not fit this system")))
        }

        /// The `len` bytes of a string or byte buffer, allocated only as far as they
        /// are really there.
        fn bytes(&mut self, len: usize) -> Result<Vec<u8>, Error> {
            let left = self.0.left();
            if len as u64 > left {
                return Err(Error(format!(
                    "a length in the payload claims {len} bytes, beyond the limit of the \
                     {left} payload bytes left"
                )));
            }
            let buffered = self.0.buffered()?;
            if let Some(bytes) = buffered.get(..len) {
                let bytes = bytes.to_vec();
                self.0.consume(len);
                return Ok(bytes);
            }
            let mut out = Vec::new();
            while out.len() < len {
                let buffered = self.0.buffered()?;
                if buffered.is_empty() {
                    return Err(ended());
                }
                let n = buffered.len().min(len - out.len());
                if out.capacity() - out.len() < n {
                    let wanted = (out.len() + n).max(out.len() * 2).max(FIRST_CHUNK);
                    out.reserve_exact(wanted.min(len) - out.len());
                }
                out.extend_from_slice(&buffered[..n]);
                self.0.consume(n);
            }
            Ok(out)
        }

        fn string(&mut self) -> Result<String, Error> {
            let len = self.len()?;
            String::from_utf8(self.bytes(len)?)
                .map_err(|e| Error(format!("a string is not UTF-8: {}", e.utf8_error())))
        }
    }

    /// bincode's zigzag encoding of signed integers.
    #[inline]
    fn unzigzag(n: u64) -> i64 {
        ((n >> 1) as i64) ^ -((n & 1) as i64)
    }

    /// The length of a UTF-8 sequence from its first byte (0: not a first byte).
    fn utf8_width(first: u8) -> usize {
        match first {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        }
    }

    impl<'de, S: Source> de::Deserializer<'de> for &mut Decoder<S> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error(
                "bincode does not support deserialize_any (a self-describing format is \
                 needed)"
                    .into(),
            ))
        }

        fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.byte()? {
                0 => visitor.visit_bool(false),
                1 => visitor.visit_bool(true),
                b => Err(Error(format!("invalid boolean value {b}"))),
            }
        }

        fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_i8(self.byte()? as i8)
        }

        fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_i16(unzigzag(self.varint(251, "i16")?) as i16)
        }

        fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_i32(unzigzag(self.varint(252, "i32")?) as i32)
        }

        fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_i64(unzigzag(self.varint(253, "i64")?))
        }

        fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let n = self.varint_u128("i128")?;
            visitor.visit_i128(((n >> 1) as i128) ^ -((n & 1) as i128))
        }

        fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u8(self.byte()?)
        }

        fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u16(self.varint(251, "u16")? as u16)
        }

        fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u32(self.varint(252, "u32")? as u32)
        }

        fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u64(self.varint(253, "u64")?)
        }

        fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u128(self.varint_u128("u128")?)
        }

        fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_f32(f32::from_le_bytes(self.array()?))
        }

        fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_f64(f64::from_le_bytes(self.array()?))
        }

        fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let mut utf8 = [0u8; 4];
            utf8[0] = self.byte()?;
            let width = utf8_width(utf8[0]);
            if width == 0 {
                return Err(Error(format!("invalid char encoding {utf8:?}")));
            }
            if width > 1 {
                let buffered = self.0.buffered()?;
                if let Some(rest) = buffered.get(..width - 1) {
                    utf8[1..width].copy_from_slice(rest);
                    self.0.consume(width - 1);
                } else {
                    self.fill(&mut utf8[1..width])?;
                }
            }
            let c = std::str::from_utf8(&utf8[..width])
                .ok()
                .and_then(|s| s.chars().next())
                .ok_or_else(|| Error(format!("invalid char encoding {utf8:?}")))?;
            visitor.visit_char(c)
        }

        fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_string(self.string()?)
        }

        fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_string(self.string()?)
        }

        fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let len = self.len()?;
            visitor.visit_byte_buf(self.bytes(len)?)
        }

        fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let len = self.len()?;
            visitor.visit_byte_buf(self.bytes(len)?)
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.byte()? {
                0 => visitor.visit_none(),
                1 => self.nested(|de| visitor.visit_some(de)),
                b => Err(Error(format!(
                    "invalid Option<T> variant {b}, expected 0 or 1"
                ))),
            }
        }

        fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }

        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.nested(|de| visitor.visit_newtype_struct(de))
        }

        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let len = self.len()?;
            self.nested(|de| visitor.visit_seq(Elements { de, len }))
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.nested(|de| visitor.visit_seq(Elements { de, len }))
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.nested(|de| visitor.visit_seq(Elements { de, len }))
        }

        fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let len = self.len()?;
            self.nested(|de| visitor.visit_map(Elements { de, len }))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.nested(|de| {
                visitor.visit_seq(Elements {
                    de,
                    len: fields.len(),
                })
            })
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.nested(|de| visitor.visit_enum(de))
        }

        fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error(
                "bincode does not support deserialize_identifier".into(),
            ))
        }

        fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error(
                "bincode does not support deserialize_ignored_any".into(),
            ))
        }

        fn is_human_readable(&self) -> bool {
            false
        }
    }

    /// The elements of a sequence, tuple or struct, or the entries of a map.
    struct Elements<'a, S> {
        de: &'a mut Decoder<S>,
        len: usize,
    }

    impl<S: Source> Elements<'_, S> {
        /// At most one element per payload byte left: what a collection reserves is
        /// bounded by the bytes really there, not by the length claimed.
        fn hint(&self) -> Option<usize> {
            Some(
                self.len
                    .min(usize::try_from(self.de.0.left()).unwrap_or(usize::MAX)),
            )
        }
    }

    impl<'de, S: Source> de::SeqAccess<'de> for Elements<'_, S> {
        type Error = Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            if self.len == 0 {
                return Ok(None);
            }
            self.len -= 1;
            self.de.element()?;
            seed.deserialize(&mut *self.de).map(Some)
        }

        fn size_hint(&self) -> Option<usize> {
            self.hint()
        }
    }

    impl<'de, S: Source> de::MapAccess<'de> for Elements<'_, S> {
        type Error = Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            if self.len == 0 {
                return Ok(None);
            }
            self.len -= 1;
            self.de.element()?;
            seed.deserialize(&mut *self.de).map(Some)
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
            seed.deserialize(&mut *self.de)
        }

        fn size_hint(&self) -> Option<usize> {
            self.hint()
        }
    }

    impl<'de, S: Source> de::EnumAccess<'de> for &mut Decoder<S> {
        type Error = Error;
        type Variant = Self;

        fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
            let index = self.varint(252, "u32")? as u32;
            let value = seed.deserialize(IntoDeserializer::<Error>::into_deserializer(index))?;
            Ok((value, self))
        }
    }

    impl<'de, S: Source> de::VariantAccess<'de> for &mut Decoder<S> {
        type Error = Error;

        fn unit_variant(self) -> Result<(), Error> {
            Ok(())
        }

        fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
            seed.deserialize(self)
        }

        fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_seq(Elements { de: self, len })
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.nested(|de| {
                visitor.visit_seq(Elements {
                    de,
                    len: fields.len(),
                })
            })
        }
    }
}
