//! The byte-level `ResultBackend` methods the command is built on, the same for
//! `LocalResult`, `MemoryResult` and `ObjectStoreResult`: list results (not records),
//! read headers, verify, remove, list and remove records (also under a long key).

use std::sync::Arc;
use taskcache::results::object_store::memory::InMemory;
use taskcache::results::object_store::path::Path as ObjectPath;
use taskcache::results::object_store::ObjectStoreExt;
use taskcache::results::{
    format::fingerprint, LocalResult, Location, MemoryResult, ObjectStoreResult, ResultBackend,
    ResultBackendExt, ResultError,
};

fn at(location: &str) -> Location {
    Location::new(location).unwrap()
}

/// Replaces the stored bytes of a result with a damaged copy, the backend's own way.
type Damage<'a> = &'a dyn Fn(&Location);

fn check(backend: &dyn ResultBackend, damage: Damage<'_>) {
    let numbers = at("reports/numbers.bin");
    let text = at("text.bin");
    let digest = backend.write(&vec![1u64, 2, 3], &numbers).unwrap();
    backend.write(&"hello".to_string(), &text).unwrap();
    let long_key = "k".repeat(300);
    backend
        .put_record("short-key", "id-1", b"record one")
        .unwrap();
    backend
        .put_record(&long_key, "id 2", b"record two")
        .unwrap();

    let mut entries = backend.list_entries().unwrap();
    entries.sort_by(|a, b| a.location.cmp(&b.location));
    let locations: Vec<&str> = entries.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(
        locations,
        ["reports/numbers.bin", "text.bin"],
        "{backend:?}"
    );
    assert!(entries.iter().all(|e| e.size > 60));

    let header = backend.read_header(&numbers).unwrap();
    assert_eq!(header.fingerprint, fingerprint::<Vec<u64>>());
    assert_eq!(header.serializer, 1);
    assert_eq!(header.digest, digest.0);
    assert_eq!(header.len + 60, entries[0].size);
    assert_eq!(backend.verify(&numbers).unwrap(), header);
    assert!(matches!(
        backend.verify(&at("nothing.bin")),
        Err(ResultError::NotFound { .. })
    ));
    assert!(matches!(
        backend.read_header(&at("nothing.bin")),
        Err(ResultError::NotFound { .. })
    ));

    damage(&text);
    let damaged = backend.verify(&text).unwrap_err();
    assert!(
        matches!(damaged, ResultError::Corrupt { .. }),
        "{backend:?}: {damaged}"
    );
    backend.remove(&text).unwrap();
    backend.remove(&text).unwrap(); // nothing there is fine
    assert_eq!(backend.list_entries().unwrap().len(), 1);

    let mut records = backend.list_all_records().unwrap();
    records.sort_by(|a, b| b.id.cmp(&a.id)); // "id-1", then "id 2"
    assert_eq!(records.len(), 2, "{backend:?}: {records:?}");
    assert_eq!(records[0].key.as_deref(), Some("short-key"));
    assert_eq!(records[0].id, "id-1");
    assert_eq!(records[1].id, "id 2");
    assert_eq!(
        backend.read_record_entry(&records[0]).unwrap().as_deref(),
        Some(&b"record one"[..])
    );
    // A long key is not in the name (`None` for the files of a store), yet the record
    // can be read and removed from its entry.
    assert!(records[1].key.is_none() || records[1].key.as_deref() == Some(long_key.as_str()));
    assert_eq!(
        backend.read_record_entry(&records[1]).unwrap().as_deref(),
        Some(&b"record two"[..])
    );
    backend.remove_record_entry(&records[1]).unwrap();
    backend.remove_record_entry(&records[1]).unwrap();
    assert_eq!(backend.list_all_records().unwrap().len(), 1);
    assert_eq!(backend.get_record(&long_key, "id 2").unwrap(), None);

    // A record name that would leave the records is refused.
    let mut escaping = records[0].clone();
    escaping.key = None;
    escaping.name = "../../etc/passwd".into();
    assert!(backend.read_record_entry(&escaping).is_err());
    assert!(backend.remove_record_entry(&escaping).is_err());
}

#[test]
fn local_result() {
    let tmp = tempfile::tempdir().unwrap();
    let local = LocalResult::new(tmp.path());
    let dir = tmp.path().to_owned();
    check(&local, &|location| {
        let path = location.under(&dir);
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, bytes).unwrap();
    });
    // Nothing listed in a directory not written yet.
    let empty = LocalResult::new(tmp.path().join("not-yet"));
    assert!(empty.list_entries().unwrap().is_empty());
    assert!(empty.list_all_records().unwrap().is_empty());
}

#[test]
fn memory_result() {
    let memory = MemoryResult::new();
    let handle = memory.clone();
    check(&memory, &|location| {
        let mut bytes = handle.bytes(location).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        handle.set_bytes(location, bytes);
    });
}

#[test]
fn object_store_result() {
    let store = Arc::new(InMemory::new());
    let result = ObjectStoreResult::new_multipart(Arc::clone(&store), "team/cache");
    // Something beside the prefix is not listed.
    let runtime =
        tokio_free_block_on(store.put(&ObjectPath::from("other/x.bin"), vec![1u8].into()));
    runtime.unwrap();
    let raw = Arc::clone(&store);
    check(&result, &move |location| {
        let path = ObjectPath::from(format!("team/cache/{location}"));
        let bytes = tokio_free_block_on(async { raw.get(&path).await?.bytes().await }).unwrap();
        let mut bytes = bytes.to_vec();
        *bytes.last_mut().unwrap() ^= 1;
        tokio_free_block_on(raw.put(&path, bytes.into())).unwrap();
    });
}

/// Drives an `InMemory` store's future, which never waits on I/O, to completion.
fn tokio_free_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}
