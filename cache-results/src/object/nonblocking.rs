//! [`AsyncResultBackend`] for [`ObjectStoreResult`]: the same I/O as its blocking
//! methods, as futures that an async task awaits without blocking its executor.
//!
//! Every future's work runs on the private I/O runtime (`bridge::start`); the future
//! handed out only awaits that task's end, which any executor can do (tokio's, another,
//! or none). The blocking methods wait for the same futures (`read_value`, `lock` and the
//! record methods are these futures, waited for), so both paths check, store and fail
//! alike. Decoding and encoding are CPU work on the caller's thread, between the futures.

use super::{boxed, failed, ObjectStoreResult, Report, Stores, PARTS_IN_FLIGHT};
use crate::format;
use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{MultipartId, PutMode, PutOptions, PutPayload};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use taskcache_core::result::{
    AsyncResultBackend, BoxFuture, Encoded, Fetched, Location, LocationLock, PayloadDigest,
    ResultError, Serializer, Slot, Value, ValueType,
};

/// The buffer between the serializer and the temporary file of a large encoded value.
const SPOOL_BUFFER: usize = 1 << 20;

/// What messages call the temporary file of a large encoded value.
fn temporary() -> &'static Path {
    Path::new("a temporary file")
}

/// A value encoded by [`AsyncResultBackend::encode`], header and all.
enum Outgoing {
    /// The whole object (header, then payload), for one `PUT`.
    Whole(Vec<u8>),
    /// A value past `single_put_max`: its header, and its payload in an anonymous
    /// temporary file, for a multipart upload.
    Spilled {
        head: [u8; format::HEADER_LEN],
        payload: File,
    },
}

/// Why a store of an encoded value failed.
enum Failure {
    Store(object_store::Error),
    /// Reading the temporary file of a large value.
    Spill(io::Error),
}

impl Failure {
    fn into_error(self, report: &Report, path: &ObjectPath) -> ResultError {
        match self {
            Failure::Store(e) => report.store_error("write", path, &e),
            Failure::Spill(source) => ResultError::Io {
                path: temporary().to_path_buf(),
                source,
            },
        }
    }
}

/// The serializer's output: in memory up to `limit` payload bytes, then in an anonymous
/// temporary file from the payload's first byte (what was held is moved there).
struct Spool {
    /// Room for the header, then the payload, while it is held in memory.
    memory: Vec<u8>,
    limit: usize,
    file: Option<BufWriter<File>>,
    /// The first error of the temporary file, reported as such (not as the object's).
    failed: Option<io::Error>,
}

impl Spool {
    fn put(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            if self.memory.len() - format::HEADER_LEN + buf.len() <= self.limit {
                self.memory.extend_from_slice(buf);
                return Ok(());
            }
            let mut file = BufWriter::with_capacity(SPOOL_BUFFER, tempfile::tempfile()?);
            file.write_all(&self.memory[format::HEADER_LEN..])?;
            self.memory = Vec::new();
            self.file = Some(file);
        }
        self.file.as_mut().expect("created above").write_all(buf)
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.put(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                let shown = io::Error::new(e.kind(), e.to_string());
                self.failed.get_or_insert(e);
                Err(shown)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: Serializer> ObjectStoreResult<S> {
    /// Encodes `value` for `location` (see [`AsyncResultBackend::encode`]).
    fn encode_value(&self, value: Value<'_>, location: &Location) -> Result<Encoded, ResultError> {
        let path = self.result_object(location)?;
        let shown = PathBuf::from(self.shown(&path));
        // As the blocking write: past one `PUT`'s size a value goes up in parts, when the
        // store has a multipart API; a `Vec<u8>` whose size says so goes to the file
        // from its first byte, never held whole a second time.
        let threshold = self.single_put_max.max(self.part_size);
        // Without a multipart API everything goes up in one `PUT`, from memory.
        let multipart = self.stores()?.multipart.is_some();
        let limit = if multipart { threshold } else { usize::MAX };
        let (limit, capacity) = match value.bytes() {
            Some(b) if b.len() >= limit => (0, 0),
            Some(b) => (limit, format::HEADER_LEN + 9 + b.len()),
            None => (limit, 0),
        };
        let mut memory = Vec::with_capacity(capacity.max(format::HEADER_LEN));
        memory.resize(format::HEADER_LEN, 0);
        let mut spool = Spool {
            memory,
            limit,
            file: None,
            failed: None,
        };
        let encoded =
            format::encode_payload(value, &self.serializer, &mut spool, &shown, |_| Ok(()));
        let header = match (encoded, spool.failed.take()) {
            (Err(_), Some(source)) => {
                return Err(ResultError::Io {
                    path: temporary().to_path_buf(),
                    source,
                })
            }
            (encoded, _) => encoded?,
        };
        let head = header.to_bytes();
        let outgoing = match spool.file {
            None => {
                let mut whole = spool.memory;
                whole[..format::HEADER_LEN].copy_from_slice(&head);
                Outgoing::Whole(whole)
            }
            Some(file) => Outgoing::Spilled {
                head,
                payload: file.into_inner().map_err(|e| ResultError::Io {
                    path: temporary().to_path_buf(),
                    source: e.into_error(),
                })?,
            },
        };
        Ok(Encoded::new(PayloadDigest(header.digest), outgoing))
    }

    /// Stores an encoded value at `location` (see [`AsyncResultBackend::store`]).
    fn start_store(
        &self,
        encoded: Encoded,
        location: &Location,
    ) -> BoxFuture<'static, Result<PayloadDigest, ResultError>> {
        let start = || {
            let path = self.result_object(location)?;
            let digest = encoded.digest();
            let outgoing = encoded.downcast::<Outgoing>().map_err(|_| {
                self.remote(
                    "write",
                    self.shown(&path),
                    "the value was encoded by another backend",
                    FIX_FOREIGN,
                )
            })?;
            let stores = self.stores()?.clone();
            let (part_size, report, at) = (self.part_size, self.report(), path.clone());
            let storing = async move {
                upload(outgoing, stores, &at, part_size)
                    .await
                    .map_err(|f| f.into_error(&report, &at))?;
                Ok(digest)
            };
            // A write that has begun completes, awaited or not.
            Ok(self.spawn_io("write", &path, storing, false))
        };
        start().unwrap_or_else(failed)
    }
}

/// What to do with a value fetched or encoded by another backend.
const FIX_FOREIGN: &str = "hand what a backend's `fetch` or `encode` returns to the same \
    backend's `decode` or `store`";

/// Uploads an encoded value to `path`, atomically: one `PUT`, or a multipart upload
/// whose object appears whole when it completes.
async fn upload(
    outgoing: Outgoing,
    stores: Stores,
    path: &ObjectPath,
    part_size: usize,
) -> Result<(), Failure> {
    let (head, mut payload) = match outgoing {
        Outgoing::Whole(whole) => {
            return put_whole(&stores, path, PutPayload::from(whole)).await;
        }
        Outgoing::Spilled { head, payload } => (head, payload),
    };
    payload.rewind().map_err(Failure::Spill)?;
    let Some(multipart) = stores.multipart.clone() else {
        // Encoded by a result whose store has a multipart API, stored by one without:
        // one `PUT`, from memory.
        let mut bytes = Vec::new();
        payload.read_to_end(&mut bytes).map_err(Failure::Spill)?;
        let whole: PutPayload = [Bytes::copy_from_slice(&head), Bytes::from(bytes)]
            .into_iter()
            .collect();
        return put_whole(&stores, path, whole).await;
    };
    // The first part is sent last, behind the header, as the blocking upload does.
    let first = read_part(&mut payload, part_size)?;
    let id = multipart
        .create_multipart(path)
        .await
        .map_err(Failure::Store)?;
    let sent = send_parts(&multipart, path, &id, head, first, payload, part_size).await;
    let completed = match sent {
        Ok(parts) => multipart
            .complete_multipart(path, &id, parts)
            .await
            .map(|_| ())
            .map_err(Failure::Store),
        Err(e) => Err(e),
    };
    if completed.is_err() {
        // Parts already sent are discarded with the upload.
        let _ = multipart.abort_multipart(path, &id).await;
    }
    completed
}

async fn put_whole(stores: &Stores, path: &ObjectPath, payload: PutPayload) -> Result<(), Failure> {
    let options = PutOptions {
        mode: PutMode::Overwrite,
        ..PutOptions::default()
    };
    stores
        .store
        .put_opts(path, payload, options)
        .await
        .map(|_| ())
        .map_err(Failure::Store)
}

/// The next part of a spilled payload, up to `part_size` bytes (empty at its end). A
/// read of the temporary file, on the I/O runtime: never on the caller's executor.
fn read_part(file: &mut File, part_size: usize) -> Result<Vec<u8>, Failure> {
    let mut part = Vec::with_capacity(part_size);
    Read::take(file, part_size as u64)
        .read_to_end(&mut part)
        .map_err(Failure::Spill)?;
    Ok(part)
}

/// Sends the parts after the first, a few at a time, then the header with the first;
/// returns the parts in order.
async fn send_parts(
    multipart: &Arc<dyn MultipartStore>,
    path: &ObjectPath,
    id: &MultipartId,
    head: [u8; format::HEADER_LEN],
    first: Vec<u8>,
    mut payload: File,
    part_size: usize,
) -> Result<Vec<PartId>, Failure> {
    type Sending = tokio::task::JoinHandle<object_store::Result<PartId>>;
    let landed = |sending: Result<object_store::Result<PartId>, tokio::task::JoinError>| {
        sending
            .map_err(|e| {
                Failure::Store(object_store::Error::Generic {
                    store: "taskcache",
                    source: format!("the upload of a part failed: {e}").into(),
                })
            })?
            .map_err(Failure::Store)
    };
    let mut in_flight: VecDeque<(usize, Sending)> = VecDeque::new();
    let mut done = Vec::new();
    let mut index = 1;
    let sent = async {
        loop {
            let part = read_part(&mut payload, part_size)?;
            if part.is_empty() {
                break;
            }
            let (m, at, i) = (Arc::clone(multipart), path.clone(), id.clone());
            let sending =
                tokio::spawn(
                    async move { m.put_part(&at, &i, index, PutPayload::from(part)).await },
                );
            in_flight.push_back((index, sending));
            index += 1;
            while in_flight.len() > PARTS_IN_FLIGHT {
                let (i, sending) = in_flight.pop_front().expect("more than one in flight");
                done.push((i, landed(sending.await)?));
            }
        }
        while let Some((i, sending)) = in_flight.pop_front() {
            done.push((i, landed(sending.await)?));
        }
        let part: PutPayload = [Bytes::copy_from_slice(&head), Bytes::from(first)]
            .into_iter()
            .collect();
        let part = multipart
            .put_part(path, id, 0, part)
            .await
            .map_err(Failure::Store)?;
        done.push((0, part));
        Ok(())
    }
    .await;
    if sent.is_err() {
        // The parts still in flight end before the upload is aborted.
        for (_, sending) in in_flight {
            let _ = sending.await;
        }
    }
    sent?;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, p)| p).collect())
}

impl<S: Serializer> AsyncResultBackend for ObjectStoreResult<S> {
    fn fetch(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
        ty: ValueType,
    ) -> BoxFuture<'static, Result<Fetched, ResultError>> {
        let fetching = self.start_fetch(location, pinned, ty);
        boxed(async move { fetching.await.map(Fetched::new) })
    }

    fn decode(&self, fetched: Fetched, slot: &mut dyn Slot) -> Result<(), ResultError> {
        let stored = fetched.downcast::<format::Stored>().map_err(|_| {
            self.remote(
                "read",
                self.root.clone(),
                "the value was fetched by another backend",
                FIX_FOREIGN,
            )
        })?;
        stored.decode(&self.serializer, slot)
    }

    fn encode(&self, value: Value<'_>, location: &Location) -> Result<Encoded, ResultError> {
        self.encode_value(value, location)
    }

    fn store(
        &self,
        encoded: Encoded,
        location: &Location,
    ) -> BoxFuture<'static, Result<PayloadDigest, ResultError>> {
        self.start_store(encoded, location)
    }

    fn lock(&self, location: &Location) -> BoxFuture<'static, Result<LocationLock, ResultError>> {
        self.start_lock(location)
    }

    fn put_record(
        &self,
        key: &str,
        id: &str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), ResultError>> {
        self.start_put_record(key, id, &bytes)
    }

    fn get_record(
        &self,
        key: &str,
        id: &str,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, ResultError>> {
        self.start_get_record(self.record_object(key, id))
    }

    fn list_records(&self, key: &str) -> BoxFuture<'static, Result<Vec<String>, ResultError>> {
        self.start_list_records(key)
    }

    fn remove_record(&self, key: &str, id: &str) -> BoxFuture<'static, Result<(), ResultError>> {
        match self.record_object(key, id) {
            Ok(path) => self.start_delete(&path),
            Err(e) => failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::bridge;
    use crate::JsonSerializer;
    use object_store::memory::InMemory;
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    use object_store::{ObjectStore, ObjectStoreExt};
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    use taskcache_core::result::{ResultBackend, ResultBackendExt, TypedSlot};

    /// A runtime of one thread and no drivers: whatever waits here must be woken from
    /// elsewhere (the I/O runtime), and a blocking wait would stop everything on it.
    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    fn memory() -> (Arc<InMemory>, ObjectStoreResult) {
        let store = Arc::new(InMemory::new());
        let result = ObjectStoreResult::new_multipart(Arc::clone(&store), "team/cache");
        (store, result)
    }

    /// A store that waits 30 ms (on tokio's timer) before each get and put.
    fn slow() -> (Arc<ThrottledStore<InMemory>>, ObjectStoreResult) {
        let config = ThrottleConfig {
            wait_get_per_call: Duration::from_millis(30),
            wait_put_per_call: Duration::from_millis(30),
            ..ThrottleConfig::default()
        };
        let store = Arc::new(ThrottledStore::new(InMemory::new(), config));
        let result = ObjectStoreResult::new_multipart(Arc::clone(&store), "team/cache");
        (store, result)
    }

    fn at(name: &str) -> Location {
        Location::new(name).unwrap()
    }

    fn backend<S: Serializer>(result: &ObjectStoreResult<S>) -> &dyn AsyncResultBackend {
        ResultBackend::as_async(result).expect("an object store result is async")
    }

    async fn write<T: Serialize + 'static>(
        result: &ObjectStoreResult,
        value: &T,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError> {
        let encoded = backend(result).encode(Value::of(value), location)?;
        backend(result).store(encoded, location).await
    }

    async fn read<T: DeserializeOwned + 'static>(
        result: &ObjectStoreResult,
        location: &Location,
        pinned: Option<&PayloadDigest>,
    ) -> Result<T, ResultError> {
        let fetched = backend(result)
            .fetch(location, pinned, ValueType::of::<T>())
            .await?;
        let mut slot = TypedSlot::<T>(None);
        backend(result).decode(fetched, &mut slot)?;
        Ok(slot.0.expect("decoded"))
    }

    /// Where an encoded value is held.
    fn encoded_in(
        result: &ObjectStoreResult,
        value: Value<'_>,
        location: &Location,
    ) -> &'static str {
        let encoded = backend(result).encode(value, location).unwrap();
        match encoded.downcast::<Outgoing>().ok().unwrap() {
            Outgoing::Whole(_) => "memory",
            Outgoing::Spilled { .. } => "file",
        }
    }

    /// Where a fetched value is held.
    fn fetched_in<T: 'static>(result: &ObjectStoreResult, location: &Location) -> &'static str {
        let fetched = current_thread()
            .block_on(backend(result).fetch(location, None, ValueType::of::<T>()))
            .unwrap();
        fetched.downcast::<format::Stored>().ok().unwrap().held().0
    }

    /// The bytes of the object at `path`, read on the I/O runtime (a throttled store's
    /// waits need tokio's timer).
    fn object<T: ObjectStore>(store: &Arc<T>, path: &str) -> Vec<u8> {
        let (store, path) = (Arc::clone(store), ObjectPath::from(path));
        bridge::run(async move { store.get(&path).await?.bytes().await })
            .unwrap()
            .unwrap()
            .to_vec()
    }

    fn put<T: ObjectStore>(store: &Arc<T>, path: &str, bytes: Vec<u8>) {
        let (store, path) = (Arc::clone(store), ObjectPath::from(path));
        bridge::run(async move { store.put(&path, PutPayload::from(bytes)).await })
            .unwrap()
            .unwrap();
    }

    /// Runs `future` while another task on the same (current-thread) runtime counts its
    /// turns: the count when `future` ends, and how long it took.
    async fn ticks_while<T>(future: impl Future<Output = T>) -> (T, usize, Duration) {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn({
            let (ticks, stop) = (Arc::clone(&ticks), Arc::clone(&stop));
            async move {
                while !stop.load(Ordering::SeqCst) {
                    ticks.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            }
        });
        let started = Instant::now();
        let out = future.await;
        let (counted, took) = (ticks.load(Ordering::SeqCst), started.elapsed());
        stop.store(true, Ordering::SeqCst);
        ticker.await.unwrap();
        (out, counted, took)
    }

    #[test]
    fn small_byte_and_spilled_values_round_trip_as_the_blocking_path_writes_them() {
        let (store, result) = memory();
        // One part is 5 MiB (the least), and past one part a value goes up in parts.
        let result = result.with_part_size(5 << 20).with_single_put_max(0);
        let rt = current_thread();
        let small = (7u32, "seven".to_string());
        let few_bytes: Vec<u8> = vec![1, 2, 3];
        let many_bytes: Vec<u8> = (0..(6u32 << 20) + 5).map(|i| (i % 251) as u8).collect();
        // About 9 bytes each in bincode: 7 MiB, spilled both ways.
        let large: Vec<u64> = (0..800_000u64).map(|i| u64::MAX - i).collect();

        assert_eq!(encoded_in(&result, Value::of(&small), &at("s")), "memory");
        assert_eq!(
            encoded_in(&result, Value::of(&few_bytes), &at("b")),
            "memory"
        );
        assert_eq!(
            encoded_in(&result, Value::of(&many_bytes), &at("m")),
            "file"
        );
        assert_eq!(encoded_in(&result, Value::of(&large), &at("l")), "file");

        rt.block_on(async {
            let d = write(&result, &small, &at("async/small.bin"))
                .await
                .unwrap();
            assert_eq!(
                read::<(u32, String)>(&result, &at("async/small.bin"), Some(&d))
                    .await
                    .unwrap(),
                small
            );
            write(&result, &few_bytes, &at("async/few.bin"))
                .await
                .unwrap();
            assert_eq!(
                read::<Vec<u8>>(&result, &at("async/few.bin"), None)
                    .await
                    .unwrap(),
                few_bytes
            );
            write(&result, &many_bytes, &at("async/many.bin"))
                .await
                .unwrap();
            assert_eq!(
                read::<Vec<u8>>(&result, &at("async/many.bin"), None)
                    .await
                    .unwrap(),
                many_bytes
            );
            let d = write(&result, &large, &at("async/large.bin"))
                .await
                .unwrap();
            assert_eq!(
                read::<Vec<u64>>(&result, &at("async/large.bin"), Some(&d))
                    .await
                    .unwrap(),
                large
            );
        });
        assert_eq!(
            fetched_in::<(u32, String)>(&result, &at("async/small.bin")),
            "payload"
        );
        assert_eq!(
            fetched_in::<Vec<u8>>(&result, &at("async/many.bin")),
            "bytes"
        );
        assert_eq!(
            fetched_in::<Vec<u64>>(&result, &at("async/large.bin")),
            "spilled"
        );

        // The objects are the blocking path's, byte for byte, and it reads them.
        result.write(&small, &at("sync/small.bin")).unwrap();
        result.write(&few_bytes, &at("sync/few.bin")).unwrap();
        result.write(&many_bytes, &at("sync/many.bin")).unwrap();
        result.write(&large, &at("sync/large.bin")).unwrap();
        for name in ["small.bin", "few.bin", "many.bin", "large.bin"] {
            assert!(
                object(&store, &format!("team/cache/sync/{name}"))
                    == object(&store, &format!("team/cache/async/{name}")),
                "{name}"
            );
        }
        assert_eq!(
            result.read::<Vec<u64>>(&at("async/large.bin")).unwrap(),
            large
        );
        assert_eq!(
            result.read::<Vec<u8>>(&at("async/many.bin")).unwrap(),
            many_bytes
        );
    }

    #[test]
    fn without_a_multipart_api_a_large_value_goes_up_in_one_put() {
        let store = Arc::new(InMemory::new());
        let result = ObjectStoreResult::new(Arc::clone(&store) as Arc<dyn ObjectStore>, "p")
            .with_part_size(5 << 20)
            .with_single_put_max(0);
        let large: Vec<u64> = (0..800_000u64).map(|i| u64::MAX - i).collect();
        assert_eq!(encoded_in(&result, Value::of(&large), &at("l")), "memory");
        let back = current_thread().block_on(async {
            write(&result, &large, &at("l")).await.unwrap();
            read::<Vec<u64>>(&result, &at("l"), None).await.unwrap()
        });
        assert_eq!(back, large);
    }

    #[test]
    fn a_byte_vector_reaches_its_slot_without_a_copy() {
        let (_, result) = memory();
        let bytes: Vec<u8> = (0..3u32 << 20).map(|i| i as u8).collect();
        result.write(&bytes, &at("b.bin")).unwrap();
        let fetched = current_thread()
            .block_on(backend(&result).fetch(&at("b.bin"), None, ValueType::of::<Vec<u8>>()))
            .unwrap();
        let stored = fetched.downcast::<format::Stored>().ok().unwrap();
        let (held, address) = stored.held();
        assert_eq!(held, "bytes");
        let mut slot = TypedSlot::<Vec<u8>>(None);
        backend(&result)
            .decode(Fetched::new(stored), &mut slot)
            .unwrap();
        let back = slot.0.unwrap();
        assert_eq!(Some(back.as_ptr()), address);
        assert!(back == bytes);
    }

    #[test]
    fn missing_changed_corrupt_and_foreign_values_are_refused() {
        let (store, result) = memory();
        let result = result.with_part_size(5 << 20).with_single_put_max(0);
        let rt = current_thread();
        rt.block_on(async {
            let err = read::<u32>(&result, &at("missing.bin"), None)
                .await
                .unwrap_err();
            assert!(matches!(err, ResultError::NotFound { .. }), "{err}");

            // A record pinned the first payload; the location was written again since.
            let first = write(&result, &1u32, &at("pinned.bin")).await.unwrap();
            let second = write(&result, &2u32, &at("pinned.bin")).await.unwrap();
            let err = read::<u32>(&result, &at("pinned.bin"), Some(&first))
                .await
                .unwrap_err();
            assert!(matches!(err, ResultError::Changed { .. }), "{err}");
            assert_eq!(
                read::<u32>(&result, &at("pinned.bin"), Some(&second))
                    .await
                    .unwrap(),
                2
            );

            let err = read::<String>(&result, &at("pinned.bin"), None)
                .await
                .unwrap_err();
            assert!(matches!(err, ResultError::TypeMismatch { .. }), "{err}");
        });
        // Small, byte-vector and spilled values, damaged then cut short.
        let words: Vec<u64> = (0..400_000u64).map(|i| u64::MAX - i).collect();
        let bytes: Vec<u8> = vec![9; 2 << 20];
        result.write(&5u32, &at("small.bin")).unwrap();
        result.write(&bytes, &at("bytes.bin")).unwrap();
        result.write(&words, &at("large.bin")).unwrap();
        assert_eq!(fetched_in::<Vec<u64>>(&result, &at("large.bin")), "spilled");
        type Read<'a> = &'a dyn Fn() -> Result<(), ResultError>;
        let reads: [(&str, Read<'_>); 3] = [
            ("small.bin", &|| {
                rt.block_on(read::<u32>(&result, &at("small.bin"), None))
                    .map(drop)
            }),
            ("bytes.bin", &|| {
                rt.block_on(read::<Vec<u8>>(&result, &at("bytes.bin"), None))
                    .map(drop)
            }),
            ("large.bin", &|| {
                rt.block_on(read::<Vec<u64>>(&result, &at("large.bin"), None))
                    .map(drop)
            }),
        ];
        for (name, read) in reads {
            let path = format!("team/cache/{name}");
            let good = object(&store, &path);
            read().unwrap();
            let mut flipped = good.clone();
            *flipped.last_mut().unwrap() ^= 1;
            put(&store, &path, flipped);
            let err = read().unwrap_err();
            assert!(matches!(err, ResultError::Corrupt { .. }), "{name}: {err}");
            put(&store, &path, good[..good.len() - 1].to_vec());
            let err = read().unwrap_err();
            assert!(matches!(err, ResultError::Corrupt { .. }), "{name}: {err}");
            put(
                &store,
                &path,
                b"not a taskcache result, but long enough to hold a header".repeat(2),
            );
            let err = read().unwrap_err();
            assert!(matches!(err, ResultError::Corrupt { .. }), "{name}: {err}");
        }
        // Another serializer's object.
        let json = result.clone().with_serializer(JsonSerializer);
        json.write(&5u32, &at("json.bin")).unwrap();
        let err = rt
            .block_on(read::<u32>(&result, &at("json.bin"), None))
            .unwrap_err();
        assert!(matches!(err, ResultError::Corrupt { .. }), "{err}");

        // What another backend fetched or encoded is an error, not a panic.
        let mut slot = TypedSlot::<u32>(None);
        let err = backend(&result)
            .decode(Fetched::new(5u32), &mut slot)
            .unwrap_err();
        assert!(err.to_string().contains("another backend"), "{err}");
        let err = rt
            .block_on(backend(&result).store(Encoded::new(PayloadDigest([0; 32]), 5u32), &at("x")))
            .unwrap_err();
        assert!(err.to_string().contains("another backend"), "{err}");
        // A value fetched as one type and decoded as another.
        let fetched = rt
            .block_on(backend(&result).fetch(&at("small.bin"), None, ValueType::of::<u32>()))
            .unwrap_err();
        assert!(
            matches!(fetched, ResultError::Corrupt { .. }),
            "damaged above"
        );
        result.write(&5u32, &at("small.bin")).unwrap();
        let fetched = rt
            .block_on(backend(&result).fetch(&at("small.bin"), None, ValueType::of::<u32>()))
            .unwrap();
        let mut other = TypedSlot::<u64>(None);
        let err = backend(&result).decode(fetched, &mut other).unwrap_err();
        assert!(matches!(err, ResultError::TypeMismatch { .. }), "{err}");
    }

    #[test]
    fn records_round_trip_through_the_async_api_as_the_blocking_one_stores_them() {
        let (_, result) = memory();
        let records = backend(&result);
        current_thread().block_on(async {
            assert!(records.list_records("k/a").await.unwrap().is_empty());
            records
                .put_record("k/a", "one", b"{\"x\":1}".to_vec())
                .await
                .unwrap();
            records
                .put_record("k/a", "two/%", b"{}".to_vec())
                .await
                .unwrap();
            records
                .put_record("k/b", "three", b"{}".to_vec())
                .await
                .unwrap();
            assert_eq!(records.list_records("k/a").await.unwrap(), ["one", "two/%"]);
            assert_eq!(
                records.get_record("k/a", "one").await.unwrap().unwrap(),
                b"{\"x\":1}"
            );
            // The blocking methods read what the async ones stored, and the other way.
            assert_eq!(
                ResultBackend::get_record(&result, "k/a", "one")
                    .unwrap()
                    .unwrap(),
                b"{\"x\":1}"
            );
            ResultBackend::put_record(&result, "k/c", "four", b"[4]").unwrap();
            assert_eq!(
                records.get_record("k/c", "four").await.unwrap().unwrap(),
                b"[4]"
            );
            records.remove_record("k/a", "one").await.unwrap();
            records.remove_record("k/a", "one").await.unwrap();
            assert_eq!(records.get_record("k/a", "one").await.unwrap(), None);
            assert_eq!(records.list_records("k/a").await.unwrap(), ["two/%"]);
            assert_eq!(
                ResultBackend::list_records(&result, "k/a").unwrap(),
                ["two/%"]
            );
        });
    }

    #[test]
    fn a_fetch_and_a_store_let_other_tasks_of_a_current_thread_runtime_run() {
        let (_, result) = slow();
        let value: Vec<String> = (0..1000).map(|i| format!("row {i}")).collect();
        current_thread().block_on(async {
            let (stored, ticks, took) = ticks_while(write(&result, &value, &at("v.bin"))).await;
            stored.unwrap();
            assert!(took >= Duration::from_millis(30), "{took:?}");
            assert!(ticks > 0, "the store blocked the runtime for {took:?}");
            let (back, ticks, took) =
                ticks_while(read::<Vec<String>>(&result, &at("v.bin"), None)).await;
            assert_eq!(back.unwrap(), value);
            assert!(took >= Duration::from_millis(30), "{took:?}");
            assert!(ticks > 0, "the fetch blocked the runtime for {took:?}");
        });
    }

    #[test]
    fn a_lock_and_its_release_let_other_tasks_of_a_current_thread_runtime_run() {
        let (store, result) = slow();
        let location = at("target.bin");
        let lock_path = result.lock_object(&location).unwrap().to_string();
        let state = |store: &Arc<ThrottledStore<InMemory>>| {
            let body = object(store, &lock_path);
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            body["state"].as_str().unwrap().to_owned()
        };
        current_thread().block_on(async {
            let (lock, ticks, took) =
                ticks_while(async { backend(&result).lock(&location).await }).await;
            let lock = lock.unwrap();
            assert!(took >= Duration::from_millis(60), "{took:?}");
            assert!(
                ticks > 0,
                "taking the lock blocked the runtime for {took:?}"
            );
            assert_eq!(state(&store), "held");
            let ((), ticks, took) = ticks_while(async { lock.release().await }).await;
            assert!(took >= Duration::from_millis(30), "{took:?}");
            assert!(
                ticks > 0,
                "releasing the lock blocked the runtime for {took:?}"
            );
        });
        // Released once the future has ended.
        assert_eq!(state(&store), "released");
    }

    #[test]
    fn a_lock_dropped_without_release_is_released_before_the_drop_returns() {
        let (store, result) = slow();
        let location = at("target.bin");
        let lock_path = result.lock_object(&location).unwrap().to_string();
        let lock = ResultBackend::lock(&result, &location).unwrap();
        let started = Instant::now();
        drop(lock);
        assert!(started.elapsed() >= Duration::from_millis(30));
        let body = object(&store, &lock_path);
        assert!(String::from_utf8_lossy(&body).contains("\"released\""));
        // And the next taker has it at once, not after the 30 s lease.
        let started = Instant::now();
        let again = current_thread()
            .block_on(backend(&result).lock(&location))
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(again);
    }

    #[test]
    fn a_fetch_needs_no_tokio_context() {
        let (_, result) = slow();
        result.write(&vec![1u16, 2, 3], &at("v.bin")).unwrap();
        // The store's waits are tokio timers: they would panic here, outside any runtime,
        // if the fetch's work ran on this thread.
        assert!(tokio::runtime::Handle::try_current().is_err());
        let back =
            futures::executor::block_on(read::<Vec<u16>>(&result, &at("v.bin"), None)).unwrap();
        assert_eq!(back, [1, 2, 3]);
    }
}
