//! Results in object storage, through the `object_store` crate: any
//! [`ObjectStore`] ([`ObjectStoreResult`]), and S3, GCS and Azure Blob Storage from a
//! URL ([`S3Result`], [`GcsResult`], [`AzureResult`], behind the cargo features `aws`,
//! `gcp` and `azure`).

mod bridge;
mod lock;
mod nonblocking;
mod redact;

use crate::local::{self, hex};
use crate::{format, BincodeSerializer};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use std::fmt;
use std::future::Future;
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use taskcache_core::header::{Header, HEADER_LEN};
use taskcache_core::result::{
    AsyncResultBackend, BoxFuture, Location, LocationError, LocationLock, PayloadDigest,
    RecordEntry, RemoteError, ResultBackend, ResultEntry, ResultError, Serializer, Slot, Value,
    ValueType,
};

pub use object_store;

/// The default size of an upload's parts (S3 requires at least 5 MiB for all but the last).
const PART_SIZE: usize = 8 << 20;
/// The default size up to which a value goes up in one `PUT`, held in memory.
const SINGLE_PUT_MAX: usize = 100 << 20;
/// Parts uploaded at once while the serializer writes the next.
const PARTS_IN_FLIGHT: usize = 2;
/// Batches of a download buffered between the network and the reading thread.
const CHUNKS_IN_FLIGHT: usize = 8;
/// The size of a download's batches.
const BATCH: usize = 1 << 20;
/// The default lease of a lock object.
const LEASE: Duration = Duration::from_secs(30);

/// What to tell a user to do about a store error.
const FIX_ACCESS: &str = "check the URL, the bucket or container, and the credentials (the \
    AWS_*, GOOGLE_* or AZURE_* environment variables, or the result's `with_option`)";
const FIX_NETWORK: &str = "the store could not be reached or refused the request after \
    `object_store`'s retries (set them with `with_retry`); a failed read is a miss (the task \
    runs) and a failed write keeps the value in memory (the state's `persist_error`)";

/// The store and, when it has one, its low-level multipart API (for uploads whose
/// parts are sent out of order).
#[derive(Clone)]
struct Stores {
    store: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
}

/// A store and one object in it: what a future on the I/O runtime owns.
pub(crate) struct StoreHandle {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
}

/// Which cloud a URL names.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // each variant exists with its feature
enum Cloud {
    S3,
    Gcs,
    Azure,
}

/// How the store is made: given, or built from a URL at first use.
#[derive(Clone)]
enum Origin {
    Given(Stores),
    Url {
        cloud: Cloud,
        /// `scheme://bucket`, without the prefix.
        bucket: String,
        /// Builder options, `(key, value)`, applied after the environment's.
        options: Vec<(String, String)>,
        retry: Retry,
    },
}

/// The retry settings of a store built from a URL (none without a cloud feature).
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
type Retry = Option<object_store::RetryConfig>;
#[cfg(not(any(feature = "aws", feature = "gcp", feature = "azure")))]
type Retry = Option<std::convert::Infallible>;

/// The store, built once, shared by the clones of a result.
struct Shared {
    origin: Origin,
    built: OnceLock<Result<Stores, String>>,
    /// The large objects this process has verified (see [`Verified`]).
    verified: Verified,
}

/// The large objects this process has read and verified, by path: the store's version
/// of each (its ETag, which changes whenever the content does), its size, its payload's
/// SHA-256 and the CRC-64 taken beside it. A later read of the same version checks the
/// header, the length and that the header states that digest, and checks the payload
/// against the CRC-64 instead of hashing it again (a fraction of the work): damage in
/// transit or at rest, or an ETag that stayed the same over other content, still shows,
/// as a CRC mismatch. Any other version is hashed in full. Only objects of at least
/// [`TRUSTED_MIN`] bytes are remembered, at most [`TRUSTED_MAX`] of them, and only by a
/// strong ETag (a weak one, `W/…`, says nothing of the bytes).
#[derive(Default)]
struct Verified(std::sync::Mutex<std::collections::HashMap<String, VerifiedVersion>>);

/// What [`Verified`] remembers of one object.
struct VerifiedVersion {
    e_tag: String,
    size: u64,
    digest: PayloadDigest,
    crc: u64,
}

/// The smallest object [`Verified`] remembers: below it hashing costs less than a
/// lookup matters.
const TRUSTED_MIN: u64 = 1 << 20;

/// How many objects [`Verified`] remembers (forgotten all at once past that).
const TRUSTED_MAX: usize = 1024;

impl Verified {
    /// Whether an object of `size` bytes is one to remember.
    fn wants(size: u64) -> bool {
        size >= TRUSTED_MIN
    }

    /// The digest and CRC-64 the payload of this version of `path` was verified to
    /// have, if it was.
    fn get(
        &self,
        path: &ObjectPath,
        e_tag: Option<&str>,
        size: u64,
    ) -> Option<(PayloadDigest, u64)> {
        let e_tag = e_tag.filter(|t| !t.starts_with("W/"))?;
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match known.get(path.as_ref()) {
            Some(v) if v.e_tag == e_tag && v.size == size => Some((v.digest, v.crc)),
            _ => None,
        }
    }

    /// Remembers that this version of `path` holds a payload whose digest is `digest`
    /// and CRC-64 `crc`.
    fn remember(
        &self,
        path: &ObjectPath,
        e_tag: Option<String>,
        size: u64,
        (digest, crc): (PayloadDigest, Option<u64>),
    ) {
        let (Some(e_tag), Some(crc)) = (e_tag.filter(|t| !t.starts_with("W/")), crc) else {
            return;
        };
        if !Self::wants(size) {
            return;
        }
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= TRUSTED_MAX {
            known.clear();
        }
        known.insert(
            path.to_string(),
            VerifiedVersion {
                e_tag,
                size,
                digest,
                crc,
            },
        );
    }
}

/// Results in any `object_store` store.
///
/// The objects are result files, byte for byte: the same header, checksum and type
/// fingerprint as [`LocalResult`](crate::LocalResult) writes, so a file can be uploaded
/// as it is and read back here, and an object downloaded and read by `LocalResult`.
/// Every read is verified the same way. Under the prefix, the layout is the local one:
/// results at their locations, cache records under `.taskcache-records/`, lock objects
/// under `.locks/`.
///
/// - **Writes** are atomic: an object appears whole when its single `PUT`, or its
///   multipart upload's completion, succeeds. A value whose encoding is larger than
///   100 MiB ([`with_single_put_max`](ObjectStoreResult::with_single_put_max)) streams:
///   the serializer's output is cut into parts (8 MiB) uploaded while it is still being
///   written and hashed, the first part held back until the end, since it starts with
///   the header that carries the checksum (a multipart upload's parts may be sent in
///   any order). Streaming needs a store that implements `MultipartStore` (S3, GCS,
///   Azure, memory; [`ObjectStoreResult::new_multipart`]); with any other store a value
///   is uploaded in one `PUT` from memory.
/// - **Reads** stream too: the header is checked as soon as it arrives (a pinned-out or
///   mistyped object is refused before its payload is fetched), and the payload is
///   hashed as it comes down. A `Vec<u8>` goes straight into its vector; a large value
///   of another type is spilled to a temporary file and decoded only once its checksum
///   has passed.
/// - **Locks** are lock objects with a lease, taken with conditional writes (see
///   [`with_lease`](ObjectStoreResult::with_lease)): two machines that share nothing but
///   the bucket compute a missing target once, and a crashed holder blocks nobody for
///   longer than its lease.
/// - **Faults**: a failed read (a timeout, a 5xx after `object_store`'s retries, a
///   refused credential) is a miss and the task runs; a failed write is the state's
///   `persist_error` and the value is still returned. Messages never contain a
///   credential: every configured secret and every URL query is removed from them.
///
/// The store is built at first use, not when the result is made, so a result can be
/// written straight into `#[task(result = S3Result::new("s3://bucket/prefix"))]`; a bad
/// URL or a missing credential is then an error on the task's state and in its log.
///
/// `object_store` is async. Every request runs on a small private tokio runtime
/// started on first use (no runtime to set up). The blocking methods wait for it (inside
/// `block_in_place` on a worker of a multi-threaded tokio runtime, so the executor
/// keeps running its other tasks); [`ResultBackend::as_async`] offers the same I/O as
/// futures ([`AsyncResultBackend`]) that only await the request's end, so an async task
/// awaits them on any executor (a current-thread runtime, another executor's) without
/// blocking it. Reads, locks and records are one path: the blocking methods wait for
/// those futures. Writes differ: a blocking write streams the value into its upload as
/// it is serialized; an async task's value is encoded first, on the polling thread (a
/// value past [`with_single_put_max`](ObjectStoreResult::with_single_put_max) into a
/// temporary file), then uploaded.
///
/// ```
/// use std::sync::Arc;
/// use taskcache::results::{ObjectStoreResult, Location, ResultBackendExt};
/// use taskcache::results::object_store::memory::InMemory;
///
/// let result = ObjectStoreResult::new_multipart(Arc::new(InMemory::new()), "team/cache");
/// let at = Location::new("reports/monday.bin").unwrap();
/// result.write(&vec![1u32, 2, 3], &at).unwrap();
/// let back: Vec<u32> = result.read(&at).unwrap();
/// assert_eq!(back, [1, 2, 3]);
/// ```
#[derive(Clone)]
pub struct ObjectStoreResult<S = BincodeSerializer> {
    shared: Arc<Shared>,
    /// The prefix's segments (`team/cache` is `["team", "cache"]`), or why it is bad.
    prefix: Result<Vec<String>, String>,
    /// What messages call it: `S3Result(s3://bucket/prefix)`.
    name: String,
    /// `s3://bucket/prefix`, for messages about objects.
    root: String,
    location: Option<String>,
    serializer: S,
    lease: Duration,
    part_size: usize,
    single_put_max: usize,
    /// Option values that are credentials, removed from every message.
    secrets: Vec<String>,
}

impl ObjectStoreResult {
    /// Results under `prefix` in `store`, uploaded in one `PUT` each (the store has no
    /// out-of-order multipart API through `dyn ObjectStore`; see
    /// [`new_multipart`](Self::new_multipart)).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: impl Into<String>) -> Self {
        let stores = Stores {
            store,
            multipart: None,
        };
        Self::given(stores, prefix.into())
    }

    /// Results under `prefix` in `store`, large values streamed as multipart uploads
    /// (`AmazonS3`, `GoogleCloudStorage`, `MicrosoftAzure` and `InMemory` implement
    /// `MultipartStore`).
    pub fn new_multipart<T>(store: Arc<T>, prefix: impl Into<String>) -> Self
    where
        T: ObjectStore + MultipartStore,
    {
        let stores = Stores {
            store: Arc::clone(&store) as Arc<dyn ObjectStore>,
            multipart: Some(store),
        };
        Self::given(stores, prefix.into())
    }

    fn given(stores: Stores, prefix: String) -> Self {
        // A store's own description may quote its URL: shown without credentials.
        let display = redact::display_url(&format!("{}", stores.store));
        let mut result = Self::with_origin(Origin::Given(stores), &prefix);
        result.root = format!(
            "{}/{}",
            display.trim_end_matches('/'),
            prefix.trim_matches('/')
        )
        .trim_end_matches('/')
        .to_owned();
        result.name = format!("ObjectStoreResult({})", result.root);
        result
    }

    /// A result from a URL `scheme://bucket/prefix`; the store is built at first use.
    #[allow(dead_code)] // used by the cloud constructors, each behind its feature
    fn from_url(cloud: Cloud, kind: &str, scheme: &str, url: &str) -> Self {
        let shown = redact::display_url(url);
        let (bucket, prefix) = match url.strip_prefix(scheme) {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                (format!("{scheme}{bucket}"), prefix.to_owned())
            }
            // Reported at first use: building the store from it fails with the URL.
            None => (url.to_owned(), String::new()),
        };
        let origin = Origin::Url {
            cloud,
            bucket,
            options: Vec::new(),
            retry: None,
        };
        let mut result = Self::with_origin(origin, &prefix);
        if !url.starts_with(scheme) {
            result.prefix = Err(format!(
                "`{shown}` is not a URL {kind} can use: write it as `{scheme}bucket/prefix`"
            ));
        }
        result.root = shown.trim_end_matches('/').to_owned();
        result.name = format!("{kind}({})", result.root);
        result
    }

    fn with_origin(origin: Origin, prefix: &str) -> Self {
        let trimmed = prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            Ok(Vec::new())
        } else {
            Location::new(trimmed)
                .map(|l| l.as_str().split('/').map(str::to_owned).collect())
                .map_err(|e| e.to_string())
        };
        ObjectStoreResult {
            shared: Arc::new(Shared {
                origin,
                built: OnceLock::new(),
                verified: Verified::default(),
            }),
            prefix,
            name: String::new(),
            root: String::new(),
            location: None,
            serializer: BincodeSerializer,
            lease: LEASE,
            part_size: PART_SIZE,
            single_put_max: SINGLE_PUT_MAX,
            secrets: Vec::new(),
        }
    }
}

impl<S: Serializer> ObjectStoreResult<S> {
    /// Writes each output to this templated location (`"{task_name}/{today}.bin"`),
    /// rendered by the runtime, instead of a fresh unique one.
    pub fn with_location(mut self, template: impl Into<String>) -> Self {
        self.location = Some(template.into());
        self
    }

    /// Uses another serializer: `JsonSerializer`, or `Zstd::new(BincodeSerializer)`.
    pub fn with_serializer<S2: Serializer>(self, serializer: S2) -> ObjectStoreResult<S2> {
        ObjectStoreResult {
            shared: self.shared,
            prefix: self.prefix,
            name: self.name,
            root: self.root,
            location: self.location,
            serializer,
            lease: self.lease,
            part_size: self.part_size,
            single_put_max: self.single_put_max,
            secrets: self.secrets,
        }
    }

    /// The lease of the lock objects this result takes (30 s by default, at least
    /// 100 ms): a holder renews it every third of it while the body runs, and a waiter
    /// takes a lock over once it has seen it unchanged for longer than the lease. Take
    /// it well above the store's slowest write.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// The size of an upload's parts (8 MiB by default, at least 5 MiB, as S3 requires
    /// of every part but the last).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(5 << 20);
        self
    }

    /// The largest stored object uploaded in one `PUT` (100 MiB by default, at least one
    /// part): up to this size a value is held encoded in memory beside itself, as one
    /// request is the fastest way up for most stores; a larger one streams as a
    /// multipart upload while it is serialized, holding a few parts at a time. Lower it
    /// where memory is tight.
    pub fn with_single_put_max(mut self, bytes: usize) -> Self {
        self.single_put_max = bytes;
        self
    }

    /// Sets one option of the store's builder, by its `object_store` configuration key
    /// (`"aws_endpoint"`, `"aws_allow_http"`, `"azure_storage_account_key"`,
    /// `"google_service_account"`, …), over what the environment sets. Only for results
    /// made from a URL; an unknown key is reported at first use. A value whose key
    /// names a credential never appears in a message or in `Debug` output.
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        if redact::is_secret_name(&key) {
            self.secrets.push(value.clone());
        }
        self.edit_origin(|origin| match origin {
            Origin::Url { options, .. } => {
                options.push((key, value));
                Ok(())
            }
            Origin::Given(_) => Err(format!(
                "`with_option(\"{key}\", …)` applies to results made from a URL; configure \
                 the store given to `ObjectStoreResult::new` on its builder"
            )),
        })
    }

    /// Sets `object_store`'s retry settings (by default at most 4 retries within 30 s,
    /// with exponential backoff: shorter than `object_store`'s own 10 in 3 minutes, so
    /// that an unreachable store is a prompt miss).
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    pub fn with_retry(self, retry: object_store::RetryConfig) -> Self {
        self.edit_origin(|origin| match origin {
            Origin::Url { retry: r, .. } => {
                *r = Some(retry);
                Ok(())
            }
            Origin::Given(_) => Err("`with_retry` applies to results made from a URL; \
                 configure the store given to `ObjectStoreResult::new` on its builder"
                .into()),
        })
    }

    /// A fresh unbuilt store with `edit` applied to its origin (its error, if any,
    /// reported at first use).
    fn edit_origin(mut self, edit: impl FnOnce(&mut Origin) -> Result<(), String>) -> Self {
        let mut origin = self.shared.origin.clone();
        let built = OnceLock::new();
        if let Err(e) = edit(&mut origin) {
            let _ = built.set(Err(e));
        }
        self.shared = Arc::new(Shared {
            origin,
            built,
            verified: Verified::default(),
        });
        self
    }

    /// The serializer values are written with.
    pub fn serializer(&self) -> &S {
        &self.serializer
    }

    /// The store, built on first use.
    fn stores(&self) -> Result<&Stores, ResultError> {
        if let Err(message) = &self.prefix {
            return Err(self.remote("connect", self.root.clone(), message, FIX_ACCESS));
        }
        self.shared
            .built
            .get_or_init(|| match &self.shared.origin {
                Origin::Given(stores) => Ok(stores.clone()),
                Origin::Url {
                    cloud,
                    bucket,
                    options,
                    retry,
                } => {
                    // (`Copy` when no cloud feature is on.)
                    #[allow(clippy::clone_on_copy)]
                    let retry = retry.clone();
                    build(*cloud, bucket, options, retry)
                }
            })
            .as_ref()
            .map_err(|message| self.remote("connect", self.root.clone(), message, FIX_ACCESS))
    }

    /// A [`ResultError::Remote`], its message redacted (see [`Report::remote`]).
    fn remote(
        &self,
        operation: &'static str,
        object: String,
        message: &str,
        fix: &'static str,
    ) -> ResultError {
        self.report().remote(operation, object, message, fix)
    }

    /// The error for a failed store call on `object` (see [`Report::store_error`]).
    fn store_error(
        &self,
        operation: &'static str,
        object: &ObjectPath,
        e: &object_store::Error,
    ) -> ResultError {
        self.report().store_error(operation, object, e)
    }

    /// `object` as messages show it: `s3://bucket/prefix/…`.
    fn shown(&self, object: &ObjectPath) -> String {
        shown_object(&self.root, self.prefix_len(), object)
    }

    /// The number of the prefix's segments.
    fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, Vec::len)
    }

    /// What messages need, owned by a future that outlives this call.
    fn report(&self) -> Report {
        Report {
            name: self.name.clone(),
            root: self.root.clone(),
            skip: self.prefix_len(),
            secrets: self.secrets.clone(),
        }
    }

    /// `segments` under the prefix.
    fn object<'a>(
        &self,
        segments: impl IntoIterator<Item = &'a str>,
    ) -> Result<ObjectPath, ResultError> {
        let prefix = self
            .prefix
            .as_ref()
            .map_err(|message| self.remote("connect", self.root.clone(), message, FIX_ACCESS))?;
        let segments: Vec<String> = prefix
            .iter()
            .cloned()
            .chain(segments.into_iter().map(str::to_owned))
            .collect();
        // Keys are the local layout's file names, byte for byte (so a result folder can
        // be uploaded as it is); only a segment `object_store` cannot carry raw (a
        // control character) is percent-encoded.
        Ok(ObjectPath::parse(segments.join("/")).unwrap_or_else(|_| {
            segments
                .iter()
                .map(|s| PathPart::from(s.as_str()))
                .collect()
        }))
    }

    /// The object of `location`, refusing the backend's own folders.
    fn result_object(&self, location: &Location) -> Result<ObjectPath, ResultError> {
        let first = location.as_str().split('/').next().unwrap_or("");
        if first == local::LOCKS || first == local::RECORDS {
            return Err(ResultError::Location(LocationError {
                location: location.as_str().to_owned(),
                reason: "it is inside a folder the result keeps for itself \
                         (`.locks`, `.taskcache-records`)",
            }));
        }
        self.object(location.as_str().split('/'))
    }

    fn lock_object(&self, location: &Location) -> Result<ObjectPath, ResultError> {
        let name = hex(&Sha256::digest(location.as_str().as_bytes())[..16]);
        self.object([local::LOCKS, &format!("{name}.lock")])
    }

    fn record_folder(&self, key: &str) -> Result<ObjectPath, ResultError> {
        self.object([local::RECORDS, &local::encode_key(key)])
    }

    fn record_object(&self, key: &str, id: &str) -> Result<ObjectPath, ResultError> {
        let name = format!("{}.rec", local::encode_id(id));
        self.object([local::RECORDS, &local::encode_key(key), &name])
    }

    /// The record object at `path`, verified; `None` when there is none.
    fn start_get_record(
        &self,
        path: Result<ObjectPath, ResultError>,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, ResultError>> {
        let start = || {
            let path = path?;
            let store = Arc::clone(&self.stores()?.store);
            let at = path.clone();
            let got = self.start("read", &path, async move {
                let got = match store.get_opts(&at, Default::default()).await {
                    Ok(got) => got,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                if got.meta.size > local::MAX_RECORD {
                    return Ok(Some(Err(got.meta.size)));
                }
                got.bytes().await.map(|b| Some(Ok(b)))
            });
            let shown = PathBuf::from(self.shown(&path));
            Ok(boxed(async move {
                match got.await? {
                    None => Ok(None),
                    Some(Err(len)) => Err(ResultError::Corrupt {
                        path: shown,
                        reason: format!(
                            "{len} bytes, larger than any cache record ({})",
                            local::MAX_RECORD
                        ),
                    }),
                    Some(Ok(bytes)) => {
                        format::decode_blob(&bytes, local::RECORD_KIND, &shown).map(Some)
                    }
                }
            }))
        };
        start().unwrap_or_else(failed)
    }

    /// Stores the record `id` under `key`.
    fn start_put_record(
        &self,
        key: &str,
        id: &str,
        bytes: &[u8],
    ) -> BoxFuture<'static, Result<(), ResultError>> {
        let start = || {
            let path = self.record_object(key, id)?;
            let store = Arc::clone(&self.stores()?.store);
            let payload = PutPayload::from(format::encode_blob(bytes, local::RECORD_KIND));
            let at = path.clone();
            Ok(self.start("write", &path, async move {
                store.put(&at, payload).await.map(|_| ())
            }))
        };
        start().unwrap_or_else(failed)
    }

    /// The ids of the records under `key`, sorted.
    fn start_list_records(
        &self,
        key: &str,
    ) -> BoxFuture<'static, Result<Vec<String>, ResultError>> {
        let start = || {
            let store = Arc::clone(&self.stores()?.store);
            let folder = self.record_folder(key)?;
            let at = folder.clone();
            let names = self.start("list", &folder, async move {
                let mut listed = store.list(Some(&at));
                let mut names = Vec::new();
                while let Some(meta) = listed.next().await {
                    let meta = meta?;
                    // Only the folder's own objects, not deeper ones.
                    if meta.location.prefix_match(&at).map(|rest| rest.count()) == Some(1) {
                        if let Some(name) = meta.location.filename() {
                            names.push(name.to_owned());
                        }
                    }
                }
                Ok(names)
            });
            Ok(boxed(async move {
                let mut ids: Vec<String> = names
                    .await?
                    .iter()
                    .filter_map(|n| n.strip_suffix(".rec").and_then(local::decode_id))
                    .collect();
                ids.sort();
                Ok(ids)
            }))
        };
        start().unwrap_or_else(failed)
    }

    /// Takes the lock of `location` (see `lock`): the lock, which an async caller can
    /// release with an await.
    fn start_lock(
        &self,
        location: &Location,
    ) -> BoxFuture<'static, Result<LocationLock, ResultError>> {
        let start = || {
            let store = Arc::clone(&self.stores()?.store);
            let path = self.lock_object(location)?;
            let handle = StoreHandle {
                store,
                path: path.clone(),
            };
            let hint = format!("{} `{location}`", self.name);
            let taking = bridge::start(lock::take(handle, self.lease, hint, self.secrets.clone()));
            let (report, shown) = (self.report(), self.shown(&path));
            Ok(boxed(async move {
                let taken = match taking {
                    Ok(joined) => joined.await.and_then(|r| r),
                    Err(m) => Err(m),
                };
                let held = taken.map_err(|m| {
                    let fix = if m.contains("conditional")
                        || m.contains("not implemented")
                        || m.contains("NotImplemented")
                    {
                        "the store must support conditional writes (If-None-Match and If-Match) \
                         for locks shared by machines"
                    } else {
                        FIX_NETWORK
                    };
                    report.remote("lock", shown, &m, fix)
                })?;
                Ok(LocationLock::releasable(held))
            }))
        };
        start().unwrap_or_else(failed)
    }

    /// Downloads and verifies the value of type `ty` at `location` (see
    /// `AsyncResultBackend::fetch`).
    fn start_fetch(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
        ty: ValueType,
    ) -> BoxFuture<'static, Result<format::Stored, ResultError>> {
        let start = || {
            let store = Arc::clone(&self.stores()?.store);
            let path = self.result_object(location)?;
            let shown = PathBuf::from(self.shown(&path));
            let expected = format::Expected::new(&self.serializer, ty);
            let (location, pinned, report) = (location.clone(), pinned.copied(), self.report());
            let at = path.clone();
            let shared = Arc::clone(&self.shared);
            let fetching = async move {
                let got = match store.get_opts(&at, Default::default()).await {
                    Ok(got) => got,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(ResultError::NotFound { location })
                    }
                    Err(e) => return Err(report.store_error("read", &at, &e)),
                };
                // The header is checked as soon as it is in, so a refused object's
                // payload is never fetched (the stream is dropped); the payload is hashed
                // piece by piece as it comes.
                let mut incoming = format::Incoming::new(got.meta.size, expected, &shown, pinned)?;
                let (e_tag, size) = (got.meta.e_tag.clone(), got.meta.size);
                if Verified::wants(size) {
                    match shared.verified.get(&at, e_tag.as_deref(), size) {
                        Some((digest, crc)) => incoming.trust(digest, crc),
                        None => incoming.with_crc(),
                    }
                }
                let mut stream = got.into_stream();
                while incoming.wants() > 0 {
                    match stream.next().await {
                        Some(Ok(piece)) => incoming.push(&piece)?,
                        Some(Err(e)) => return Err(report.store_error("read", &at, &e)),
                        None => break,
                    }
                }
                let stored = incoming.finish()?;
                shared
                    .verified
                    .remember(&at, e_tag, size, stored.verified());
                Ok(stored)
            };
            // A download nobody waits for any more is stopped.
            Ok(self.spawn_io("read", &path, fetching, true))
        };
        start().unwrap_or_else(failed)
    }

    /// The metadata of every object under `folder` (everything, for `None`).
    fn list_under(
        &self,
        folder: Option<ObjectPath>,
    ) -> Result<Vec<object_store::ObjectMeta>, ResultError> {
        let store = Arc::clone(&self.stores()?.store);
        let shown = folder.clone().unwrap_or_default();
        self.run("list", &shown, async move {
            let mut listed = store.list(folder.as_ref());
            let mut metas = Vec::new();
            while let Some(meta) = listed.next().await {
                metas.push(meta?);
            }
            Ok(metas)
        })
    }

    /// The segments of `object` under the prefix.
    fn segments_under_prefix(&self, object: &ObjectPath) -> Vec<String> {
        let skip = self.prefix.as_ref().map_or(0, Vec::len);
        object
            .parts()
            .skip(skip)
            .map(|p| p.as_ref().to_owned())
            .collect()
    }

    /// The prefix's folder, `None` for the whole store.
    fn prefix_folder(&self) -> Result<Option<ObjectPath>, ResultError> {
        let empty = self.prefix.as_ref().is_ok_and(Vec::is_empty);
        if empty {
            Ok(None)
        } else {
            self.object(std::iter::empty()).map(Some)
        }
    }

    /// Deletes `path`; nothing there is not an error.
    fn delete(&self, path: &ObjectPath) -> Result<(), ResultError> {
        wait(self.start_delete(path))
    }

    /// [`delete`](Self::delete), as a future.
    fn start_delete(&self, path: &ObjectPath) -> BoxFuture<'static, Result<(), ResultError>> {
        let store = match self.stores() {
            Ok(stores) => Arc::clone(&stores.store),
            Err(e) => return failed(e),
        };
        let at = path.clone();
        self.start("remove", path, async move {
            match store.delete(&at).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        })
    }

    /// The object of a listed record, refusing names that leave the records' folder.
    fn record_entry_object(&self, entry: &RecordEntry) -> Result<ObjectPath, ResultError> {
        let (key, file) = local::record_name_parts(&entry.name).ok_or_else(|| {
            ResultError::Location(LocationError {
                location: entry.name.clone(),
                reason: "a record's name is `<encoded key>/<encoded id>.rec`",
            })
        })?;
        self.object([local::RECORDS, key, file])
    }

    /// Runs `future` on the I/O runtime and waits for it (see `bridge`).
    fn run<F, T>(
        &self,
        operation: &'static str,
        object: &ObjectPath,
        future: F,
    ) -> Result<T, ResultError>
    where
        F: Future<Output = Result<T, object_store::Error>> + Send + 'static,
        T: Send + 'static,
    {
        wait(self.start(operation, object, future))
    }

    /// Starts `future`, a store call on `object`, on the I/O runtime: its output, the
    /// store's errors made [`ResultError`]s, as a future that any executor can await
    /// without blocking (see `bridge::start`).
    fn start<F, T>(
        &self,
        operation: &'static str,
        object: &ObjectPath,
        future: F,
    ) -> BoxFuture<'static, Result<T, ResultError>>
    where
        F: Future<Output = Result<T, object_store::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let (report, at) = (self.report(), object.clone());
        let mapped = async move {
            future
                .await
                .map_err(|e| report.store_error(operation, &at, &e))
        };
        self.spawn_io(operation, object, mapped, false)
    }

    /// Starts `future` on the I/O runtime and returns its output as a future that any
    /// executor can await; a task that cannot start, or that panics, is the remote error
    /// `operation` on `object` gives. With `abort_on_drop`, the task stops when the
    /// future is dropped before its end; else it runs on (a write or a lock completes).
    fn spawn_io<F, T>(
        &self,
        operation: &'static str,
        object: &ObjectPath,
        future: F,
        abort_on_drop: bool,
    ) -> BoxFuture<'static, Result<T, ResultError>>
    where
        F: Future<Output = Result<T, ResultError>> + Send + 'static,
        T: Send + 'static,
    {
        let (report, shown) = (self.report(), self.shown(object));
        match bridge::start(future) {
            Ok(joined) => {
                let joined = if abort_on_drop {
                    joined.abort_on_drop()
                } else {
                    joined
                };
                boxed(async move {
                    joined
                        .await
                        .map_err(|m| report.remote(operation, shown, &m, FIX_NETWORK))?
                })
            }
            Err(m) => failed(report.remote(operation, shown, &m, FIX_NETWORK)),
        }
    }
}

/// Waits on this thread for a future of the I/O runtime (see `bridge::blocking`).
fn wait<T>(future: impl Future<Output = T>) -> T {
    bridge::blocking(|| bridge::park_on(future))
}

/// `future`, boxed.
fn boxed<T>(future: impl Future<Output = T> + Send + 'static) -> BoxFuture<'static, T> {
    Box::pin(future)
}

/// A future that fails at once with `e`.
fn failed<T: Send + 'static>(e: ResultError) -> BoxFuture<'static, Result<T, ResultError>> {
    Box::pin(std::future::ready(Err(e)))
}

/// A [`ResultError::Remote`] of the result named `name`, its message redacted.
fn remote_error(
    name: &str,
    secrets: &[String],
    operation: &'static str,
    object: String,
    message: &str,
    fix: &'static str,
) -> ResultError {
    ResultError::Remote(Box::new(RemoteError {
        store: name.to_owned(),
        operation,
        object,
        message: redact::redact(message, secrets),
        fix,
    }))
}

/// What to do about the store error `e` of `operation`.
fn fix_for(operation: &'static str, e: &object_store::Error) -> &'static str {
    match e {
        // Nothing to write into: the bucket or container does not exist.
        object_store::Error::NotFound { .. } if operation != "read" => FIX_ACCESS,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }
        | object_store::Error::UnknownConfigurationKey { .. } => FIX_ACCESS,
        _ => FIX_NETWORK,
    }
}

/// `object` as messages show it: under `root`, without the `skip` segments of the
/// prefix.
fn shown_object(root: &str, skip: usize, object: &ObjectPath) -> String {
    let rest: Vec<String> = object
        .parts()
        .skip(skip)
        .map(|p| p.as_ref().to_owned())
        .collect();
    format!("{root}/{}", rest.join("/"))
}

/// What messages about a result's objects need, owned: for the futures that outlive
/// the call that started them.
struct Report {
    name: String,
    root: String,
    /// The number of the prefix's segments.
    skip: usize,
    secrets: Vec<String>,
}

impl Report {
    /// A [`ResultError::Remote`], its message redacted.
    fn remote(
        &self,
        operation: &'static str,
        object: String,
        message: &str,
        fix: &'static str,
    ) -> ResultError {
        remote_error(&self.name, &self.secrets, operation, object, message, fix)
    }

    /// The error for a failed store call on `object`.
    fn store_error(
        &self,
        operation: &'static str,
        object: &ObjectPath,
        e: &object_store::Error,
    ) -> ResultError {
        self.remote(
            operation,
            self.shown(object),
            &e.to_string(),
            fix_for(operation, e),
        )
    }

    fn shown(&self, object: &ObjectPath) -> String {
        shown_object(&self.root, self.skip, object)
    }
}

impl<S: Serializer> ObjectStoreResult<S> {
    /// Starts downloading the object of `location` at `path`, and waits for its length
    /// (called inside `bridge::blocking`).
    fn start_download(
        &self,
        store: Arc<dyn ObjectStore>,
        path: &ObjectPath,
        location: &Location,
    ) -> Result<(Download, u64), ResultError> {
        let mut download = download(store, path.clone())
            .map_err(|m| self.remote("read", self.shown(path), &m, FIX_NETWORK))?;
        let len = match bridge::park_on(download.chunks.recv()) {
            Some(Chunk::Len(len)) => len,
            Some(Chunk::Failed(object_store::Error::NotFound { .. })) => {
                return Err(ResultError::NotFound {
                    location: location.clone(),
                })
            }
            Some(Chunk::Failed(e)) => return Err(self.store_error("read", path, &e)),
            Some(Chunk::Bytes(_)) | None => {
                return Err(self.remote(
                    "read",
                    self.shown(path),
                    "the download ended before it began",
                    FIX_NETWORK,
                ))
            }
        };
        Ok((download, len))
    }
}

/// Builds the store a URL names.
#[allow(unused_variables)] // without a cloud feature nothing is built
fn build(
    cloud: Cloud,
    bucket: &str,
    options: &[(String, String)],
    retry: Retry,
) -> Result<Stores, String> {
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    let retry = retry.unwrap_or_else(|| object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    });
    match cloud {
        #[cfg(feature = "aws")]
        Cloud::S3 => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            // UNSIGNED-PAYLOAD unless the user says otherwise: every object carries its
            // own SHA-256, verified on every read, and TLS protects it in transit, so
            // SigV4's payload hash would only hash every byte a second time (about 50 ms
            // of CPU per 64 MiB). The request itself is still signed.
            let builder = AmazonS3Builder::from_env()
                .with_url(bucket)
                .with_retry(retry)
                .with_unsigned_payload(true);
            let builder = configure(builder, options, |b, k: AmazonS3ConfigKey, v| {
                b.with_config(k, v)
            })?;
            stores(builder.build())
        }
        #[cfg(feature = "gcp")]
        Cloud::Gcs => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let builder = GoogleCloudStorageBuilder::from_env()
                .with_url(bucket)
                .with_retry(retry);
            let builder = configure(builder, options, |b, k: GoogleConfigKey, v| {
                b.with_config(k, v)
            })?;
            stores(builder.build())
        }
        #[cfg(feature = "azure")]
        Cloud::Azure => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let builder = MicrosoftAzureBuilder::from_env()
                .with_url(bucket)
                .with_retry(retry);
            let builder = configure(builder, options, |b, k: AzureConfigKey, v| {
                b.with_config(k, v)
            })?;
            stores(builder.build())
        }
        #[allow(unreachable_patterns)]
        _ => Err(format!(
            "taskcache was built without the cargo feature for {cloud:?} storage"
        )),
    }
}

/// Applies the `with_option` pairs to a store's builder, each key parsed as the store's
/// configuration key type.
#[allow(dead_code)] // used by the cloud stores, each behind its feature
fn configure<B, K>(
    mut builder: B,
    options: &[(String, String)],
    set: impl Fn(B, K, &str) -> B,
) -> Result<B, String>
where
    K: std::str::FromStr,
    K::Err: fmt::Display,
{
    for (key, value) in options {
        let key: K = key.parse().map_err(|e| format!("{e}"))?;
        builder = set(builder, key, value);
    }
    Ok(builder)
}

/// A built cloud store, with its multipart API.
#[allow(dead_code)] // used by the cloud stores, each behind its feature
fn stores<T: ObjectStore + MultipartStore>(
    built: object_store::Result<T>,
) -> Result<Stores, String> {
    let store = Arc::new(built.map_err(|e| e.to_string())?);
    Ok(Stores {
        store: Arc::clone(&store) as Arc<dyn ObjectStore>,
        multipart: Some(store),
    })
}

impl<S> fmt::Debug for ObjectStoreResult<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Option keys only: their values may be credentials.
        let keys: Vec<&str> = match &self.shared.origin {
            Origin::Url { options, .. } => options.iter().map(|(k, _)| k.as_str()).collect(),
            Origin::Given(_) => Vec::new(),
        };
        f.debug_struct("ObjectStoreResult")
            .field("store", &self.name)
            .field("location", &self.location)
            .field("options", &keys)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// What a download sends from the I/O runtime to the reading thread.
enum Chunk {
    /// The object's length, first.
    Len(u64),
    /// The next pieces, in order.
    Bytes(Vec<Bytes>),
    Failed(object_store::Error),
}

/// A download, read on the calling thread as the chunks arrive.
struct Download {
    chunks: tokio::sync::mpsc::Receiver<Chunk>,
    /// The pieces of the batch being read, the next one last.
    pieces: Vec<Bytes>,
    current: Bytes,
    failed: Option<object_store::Error>,
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Download {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.is_empty() {
            if let Some(next) = self.pieces.pop() {
                self.current = next;
                continue;
            }
            match bridge::park_on(self.chunks.recv()) {
                Some(Chunk::Bytes(mut batch)) => {
                    batch.reverse();
                    self.pieces = batch;
                }
                Some(Chunk::Failed(e)) => {
                    let shown = io::Error::other(e.to_string());
                    self.failed = Some(e);
                    return Err(shown);
                }
                Some(Chunk::Len(_)) | None => return Ok(&[]),
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, n: usize) {
        let _ = self.current.split_to(n);
    }
}

/// Starts downloading `path`: the length first, then the chunks.
fn download(store: Arc<dyn ObjectStore>, path: ObjectPath) -> Result<Download, String> {
    let (send, chunks) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    bridge::spawn(async move {
        let got = match store.get_opts(&path, Default::default()).await {
            Ok(got) => got,
            Err(e) => {
                let _ = send.send(Chunk::Failed(e)).await;
                return;
            }
        };
        if send.send(Chunk::Len(got.meta.size)).await.is_err() {
            return;
        }
        let mut stream = got.into_stream();
        // The network hands over small pieces (tens of KiB); they are passed on in
        // batches, so that the reading thread is woken once per batch, not per piece.
        let mut batch = Vec::new();
        let mut batched = 0;
        loop {
            let next = stream.next().await;
            let end = match next {
                Some(Ok(b)) => {
                    batched += b.len();
                    batch.push(b);
                    false
                }
                Some(Err(e)) => {
                    let _ = send.send(Chunk::Failed(e)).await;
                    return;
                }
                None => true,
            };
            if (end || batched >= BATCH) && !batch.is_empty() {
                batched = 0;
                // The reader stopped (a refused header): drop the rest of the download.
                if send
                    .send(Chunk::Bytes(std::mem::take(&mut batch)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if end {
                return;
            }
        }
    })?;
    Ok(Download {
        chunks,
        pieces: Vec::new(),
        current: Bytes::new(),
        failed: None,
    })
}

/// The serializer's output, cut into parts uploaded while it is still being written.
/// Up to `single_put_max` bytes are held for one `PUT`; past that the upload streams,
/// and its first part is held back: it is sent last, behind the header.
struct Upload<'a> {
    stores: &'a Stores,
    path: ObjectPath,
    part_size: usize,
    single_put_max: usize,
    /// Everything written, while it may still go up in one `PUT`, behind room for the
    /// header (written into it at the end: the object goes up as one piece).
    whole: Vec<u8>,
    /// Whether the upload is a multipart upload.
    streaming: bool,
    /// Once streaming: the first part, sent last.
    first: Option<Bytes>,
    /// Once streaming: the part being filled.
    current: Vec<u8>,
    multipart: Option<object_store::MultipartId>,
    next_part: usize,
    in_flight: std::collections::VecDeque<(
        usize,
        tokio::sync::oneshot::Receiver<object_store::Result<PartId>>,
    )>,
    done: Vec<(usize, PartId)>,
    failed: Option<object_store::Error>,
}

impl Write for Upload<'_> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        if !self.streaming {
            // Without a multipart API everything goes into one `PUT`.
            let room = match self.stores.multipart {
                Some(_) => self
                    .single_put_max
                    .saturating_sub(self.whole.len() - format::HEADER_LEN),
                None => usize::MAX,
            };
            let take = room.min(buf.len());
            self.whole.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if buf.is_empty() {
                return Ok(n);
            }
            self.start_streaming()?;
        }
        while !buf.is_empty() {
            if self.current.capacity() == 0 {
                self.current.reserve_exact(self.part_size);
            }
            let take = (self.part_size - self.current.len()).min(buf.len());
            self.current.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.current.len() == self.part_size {
                let part = Bytes::from(std::mem::take(&mut self.current));
                self.emit(part)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload<'_> {
    fn fail(&mut self, e: object_store::Error) -> io::Error {
        let shown = io::Error::other(e.to_string());
        self.failed.get_or_insert(e);
        shown
    }

    /// The value is larger than one `PUT` may hold: what is held so far is cut into
    /// parts, and the rest follows part by part.
    fn start_streaming(&mut self) -> io::Result<()> {
        self.streaming = true;
        let whole = Bytes::from(std::mem::take(&mut self.whole));
        let mut at = format::HEADER_LEN;
        while whole.len() - at >= self.part_size {
            // The first part is copied out, so that the held bytes are freed as soon
            // as their parts are up, not kept until the end with it.
            let part = whole.slice(at..at + self.part_size);
            let part = if self.first.is_none() {
                Bytes::copy_from_slice(&part)
            } else {
                part
            };
            self.emit(part)?;
            at += self.part_size;
        }
        self.current = Vec::with_capacity(self.part_size);
        self.current.extend_from_slice(&whole[at..]);
        Ok(())
    }

    /// A full part: held back if it is the first, else uploaded.
    fn emit(&mut self, part: Bytes) -> io::Result<()> {
        if self.first.is_none() {
            self.first = Some(part);
            Ok(())
        } else {
            self.send_part(part)
        }
    }

    /// Uploads `data` as the next part, waiting for older parts beyond the limit.
    fn send_part(&mut self, data: Bytes) -> io::Result<()> {
        let multipart = Arc::clone(self.stores.multipart.as_ref().expect("streaming"));
        if self.multipart.is_none() {
            let (m, path) = (Arc::clone(&multipart), self.path.clone());
            let id = bridge::run(async move { m.create_multipart(&path).await })
                .map_err(io::Error::other)?
                .map_err(|e| self.fail(e))?;
            self.multipart = Some(id);
        }
        let id = self.multipart.clone().expect("created above");
        let data = PutPayload::from(data);
        let (index, path) = (self.next_part, self.path.clone());
        self.next_part += 1;
        let (send, receive) = tokio::sync::oneshot::channel();
        bridge::spawn(async move {
            let _ = send.send(multipart.put_part(&path, &id, index, data).await);
        })
        .map_err(io::Error::other)?;
        self.in_flight.push_back((index, receive));
        while self.in_flight.len() > PARTS_IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> io::Result<()> {
        let Some((index, receive)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match bridge::park_on(receive) {
            Ok(Ok(part)) => {
                self.done.push((index, part));
                Ok(())
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(io::Error::other("the upload of a part was dropped")),
        }
    }

    /// Sends what is left, then the header with the first part, and completes the
    /// upload. On failure an unfinished multipart upload is aborted.
    fn finish(mut self, header: [u8; format::HEADER_LEN]) -> Result<(), object_store::Error> {
        let outcome = self.complete(header);
        if outcome.is_err() {
            self.abandon();
        }
        outcome
    }

    /// Aborts a multipart upload that will not be completed.
    fn abandon(mut self) {
        while !self.in_flight.is_empty() {
            let _ = self.wait_oldest();
        }
        if let (Some(id), Some(m)) = (self.multipart.take(), self.stores.multipart.clone()) {
            let path = self.path.clone();
            let _ = bridge::spawn(async move {
                let _ = m.abort_multipart(&path, &id).await;
            });
        }
    }

    fn complete(&mut self, header: [u8; format::HEADER_LEN]) -> Result<(), object_store::Error> {
        let generic = |e: String| object_store::Error::Generic {
            store: "taskcache",
            source: e.into(),
        };
        let head = Bytes::copy_from_slice(&header);
        if !self.streaming {
            let mut whole = std::mem::take(&mut self.whole);
            whole[..format::HEADER_LEN].copy_from_slice(&header);
            let store = Arc::clone(&self.stores.store);
            let path = self.path.clone();
            let payload = PutPayload::from(whole);
            let options = PutOptions {
                mode: PutMode::Overwrite,
                ..PutOptions::default()
            };
            return bridge::run(async move { store.put_opts(&path, payload, options).await })
                .map_err(generic)?
                .map(|_| ());
        }
        // A value streams only when it is larger than a part, so the first part is
        // full and there is always a part after it.
        let first = self
            .first
            .take()
            .ok_or_else(|| generic("a streamed upload without its first part".into()))?;
        if !self.current.is_empty() || self.multipart.is_none() {
            let part = Bytes::from(std::mem::take(&mut self.current));
            self.send_part(part)
                .map_err(|e| self.failed.take().unwrap_or_else(|| generic(e.to_string())))?;
        }
        let id = self
            .multipart
            .clone()
            .expect("created by the first part sent");
        while !self.in_flight.is_empty() {
            self.wait_oldest()
                .map_err(|e| self.failed.take().unwrap_or_else(|| generic(e.to_string())))?;
        }
        let multipart = Arc::clone(self.stores.multipart.as_ref().expect("streaming"));
        let path = self.path.clone();
        let mut done = std::mem::take(&mut self.done);
        bridge::run(async move {
            let payload: PutPayload = [head, first].into_iter().collect();
            let part = multipart.put_part(&path, &id, 0, payload).await?;
            done.push((0, part));
            done.sort_by_key(|(i, _)| *i);
            let parts = done.into_iter().map(|(_, p)| p).collect();
            multipart
                .complete_multipart(&path, &id, parts)
                .await
                .map(|_| ())
        })
        .map_err(generic)??;
        self.multipart = None;
        Ok(())
    }
}

impl<S: Serializer> ResultBackend for ObjectStoreResult<S> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn is_persistent(&self) -> bool {
        true
    }

    fn location_template(&self) -> Option<&str> {
        self.location.as_deref()
    }

    fn default_location(&self, task_name: &str) -> Location {
        local::unique_location(task_name)
    }

    fn exists(&self, location: &Location) -> Result<bool, ResultError> {
        let store = Arc::clone(&self.stores()?.store);
        let path = self.result_object(location)?;
        let at = path.clone();
        self.run("look up", &path, async move {
            match store.head(&at).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn read_value(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
        slot: &mut dyn Slot,
    ) -> Result<(), ResultError> {
        // The async path's fetch, waited for, then decoded here.
        let fetching = self.start_fetch(location, pinned, slot.ty());
        bridge::blocking(|| bridge::park_on(fetching)?.decode(&self.serializer, slot))
    }

    fn write_value(
        &self,
        value: Value<'_>,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError> {
        let stores = self.stores()?;
        let path = self.result_object(location)?;
        let shown = PathBuf::from(self.shown(&path));
        bridge::blocking(|| {
            let mut upload = Upload {
                stores,
                path: path.clone(),
                part_size: self.part_size,
                // A value whose size is known ahead (a `Vec<u8>`) and too large for one
                // `PUT` streams from its first byte, never held whole a second time.
                single_put_max: match value.bytes() {
                    Some(b) if b.len() >= self.single_put_max.max(self.part_size) => 0,
                    _ => self.single_put_max.max(self.part_size),
                },
                // The whole object, when its size is known and it goes up in one piece.
                whole: {
                    let mut whole = match value.bytes() {
                        Some(b) if b.len() < self.single_put_max.max(self.part_size) => {
                            Vec::with_capacity(format::HEADER_LEN + 9 + b.len())
                        }
                        _ => Vec::new(),
                    };
                    whole.resize(format::HEADER_LEN, 0);
                    whole
                },
                streaming: false,
                first: None,
                current: Vec::new(),
                multipart: None,
                next_part: 1,
                in_flight: Default::default(),
                done: Vec::new(),
                failed: None,
            };
            let header =
                match format::encode_payload(value, &self.serializer, &mut upload, &shown, |_| {
                    Ok(())
                }) {
                    Ok(h) => h,
                    Err(e) => {
                        let failed = upload.failed.take();
                        // Parts already sent are discarded with the upload.
                        upload.abandon();
                        return Err(match failed {
                            Some(f) => self.store_error("write", &path, &f),
                            None => e,
                        });
                    }
                };
            upload
                .finish(header.to_bytes())
                .map_err(|e| self.store_error("write", &path, &e))?;
            Ok(PayloadDigest(header.digest))
        })
    }

    fn lock(&self, location: &Location) -> Result<LocationLock, ResultError> {
        wait(self.start_lock(location))
    }

    fn put_record(&self, key: &str, id: &str, bytes: &[u8]) -> Result<(), ResultError> {
        wait(self.start_put_record(key, id, bytes))
    }

    fn get_record(&self, key: &str, id: &str) -> Result<Option<Vec<u8>>, ResultError> {
        wait(self.start_get_record(self.record_object(key, id)))
    }

    fn list_records(&self, key: &str) -> Result<Vec<String>, ResultError> {
        wait(self.start_list_records(key))
    }

    fn remove_record(&self, key: &str, id: &str) -> Result<(), ResultError> {
        self.delete(&self.record_object(key, id)?)
    }

    fn as_async(&self) -> Option<&dyn AsyncResultBackend> {
        Some(self)
    }

    fn list_entries(&self) -> Result<Vec<ResultEntry>, ResultError> {
        let metas = self.list_under(self.prefix_folder()?)?;
        let mut entries = Vec::with_capacity(metas.len());
        for meta in metas {
            let segments = self.segments_under_prefix(&meta.location);
            match segments.first().map(String::as_str) {
                None | Some(local::LOCKS | local::RECORDS) => continue,
                Some(_) => {}
            }
            // A key `Location` refuses was not written by taskcache.
            if let Ok(location) = Location::new(segments.join("/")) {
                entries.push(ResultEntry {
                    location,
                    size: meta.size,
                    modified: Some(meta.last_modified.into()),
                });
            }
        }
        Ok(entries)
    }

    fn read_header(&self, location: &Location) -> Result<Header, ResultError> {
        let store = Arc::clone(&self.stores()?.store);
        let path = self.result_object(location)?;
        let at = path.clone();
        let got = self.run("read", &path, async move {
            let meta = match store.head(&at).await {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            if meta.size < HEADER_LEN as u64 {
                return Ok(Some((meta.size, Bytes::new())));
            }
            let head = store.get_range(&at, 0..HEADER_LEN as u64).await?;
            Ok(Some((meta.size, head)))
        })?;
        let shown = PathBuf::from(self.shown(&path));
        let Some((size, head)) = got else {
            return Err(ResultError::NotFound {
                location: location.clone(),
            });
        };
        let head: &[u8; HEADER_LEN] = head[..].try_into().map_err(|_| ResultError::Corrupt {
            path: shown.clone(),
            reason: format!("{size} bytes, shorter than the {HEADER_LEN}-byte header"),
        })?;
        local::parse_header(head, size, &shown)
    }

    fn verify(&self, location: &Location) -> Result<Header, ResultError> {
        let store = Arc::clone(&self.stores()?.store);
        let path = self.result_object(location)?;
        let shown = PathBuf::from(self.shown(&path));
        bridge::blocking(|| {
            let (mut download, len) = self.start_download(store, &path, location)?;
            let verified = local::verify_stream(&mut download, len, &shown);
            match (verified, download.failed.take()) {
                (Err(_), Some(e)) => Err(self.store_error("read", &path, &e)),
                (verified, _) => verified,
            }
        })
    }

    fn remove(&self, location: &Location) -> Result<(), ResultError> {
        self.delete(&self.result_object(location)?)
    }

    fn list_all_records(&self) -> Result<Vec<RecordEntry>, ResultError> {
        let folder = self.object([local::RECORDS])?;
        let mut records = Vec::new();
        for meta in self.list_under(Some(folder))? {
            // `.taskcache-records/<encoded key>/<encoded id>.rec`.
            if let [_, key_dir, file] = &self.segments_under_prefix(&meta.location)[..] {
                records.extend(local::record_entry(
                    key_dir,
                    file,
                    meta.size,
                    Some(meta.last_modified.into()),
                ));
            }
        }
        Ok(records)
    }

    fn read_record_entry(&self, entry: &RecordEntry) -> Result<Option<Vec<u8>>, ResultError> {
        wait(self.start_get_record(self.record_entry_object(entry)))
    }

    fn remove_record_entry(&self, entry: &RecordEntry) -> Result<(), ResultError> {
        self.delete(&self.record_entry_object(entry)?)
    }
}

/// Results in Amazon S3 (or any S3-compatible store), as Prefect's `S3Result`
/// (cargo feature `aws`). `S3Result::new` returns an [`ObjectStoreResult`].
///
/// Credentials, region and endpoint come from the `AWS_*` environment variables that
/// `object_store` reads (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_ENDPOINT`, …) and from [`ObjectStoreResult::with_option`]
/// (`"aws_endpoint"`, `"aws_allow_http"`, …).
///
/// ```no_run
/// use taskcache::prelude::*;
/// use taskcache::results::S3Result;
///
/// #[task(checkpoint, target = "{task_name}/{date:%Y-%m-%d}.bin",
///        result = S3Result::new("s3://team-bucket/taskcache"))]
/// fn daily_total(day: u32) -> u64 {
///     u64::from(day) * 2
/// }
/// ```
#[cfg(feature = "aws")]
#[derive(Debug)]
pub struct S3Result;

#[cfg(feature = "aws")]
impl S3Result {
    /// Results under `s3://bucket/prefix`; the store is built at first use (a bad URL
    /// or a missing credential is then an error on the task's state).
    #[allow(clippy::new_ret_no_self)] // a constructor of `ObjectStoreResult`s
    pub fn new(url: &str) -> ObjectStoreResult {
        ObjectStoreResult::from_url(Cloud::S3, "S3Result", "s3://", url)
    }
}

/// Results in Google Cloud Storage, as Prefect's `GCSResult` (cargo feature `gcp`).
/// `GcsResult::new` returns an [`ObjectStoreResult`].
///
/// Credentials come from the `GOOGLE_*` environment variables that `object_store` reads
/// (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS`, …) and from
/// [`ObjectStoreResult::with_option`].
#[cfg(feature = "gcp")]
#[derive(Debug)]
pub struct GcsResult;

#[cfg(feature = "gcp")]
impl GcsResult {
    /// Results under `gs://bucket/prefix`; the store is built at first use.
    #[allow(clippy::new_ret_no_self)] // a constructor of `ObjectStoreResult`s
    pub fn new(url: &str) -> ObjectStoreResult {
        ObjectStoreResult::from_url(Cloud::Gcs, "GcsResult", "gs://", url)
    }
}

/// Results in Azure Blob Storage (cargo feature `azure`). `AzureResult::new` returns an
/// [`ObjectStoreResult`].
///
/// The account and its credentials come from the `AZURE_*` environment variables that
/// `object_store` reads (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, …)
/// and from [`ObjectStoreResult::with_option`].
#[cfg(feature = "azure")]
#[derive(Debug)]
pub struct AzureResult;

#[cfg(feature = "azure")]
impl AzureResult {
    /// Results under `az://container/prefix`; the store is built at first use.
    #[allow(clippy::new_ret_no_self)] // a constructor of `ObjectStoreResult`s
    pub fn new(url: &str) -> ObjectStoreResult {
        ObjectStoreResult::from_url(Cloud::Azure, "AzureResult", "az://", url)
    }
}
