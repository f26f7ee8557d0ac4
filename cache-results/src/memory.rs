//! `MemoryResult`: results kept in process memory, in the same format as files.

use crate::format;
use crate::local::{encode_id, encode_key, parse_header, unique_location, verify_stream};
use crate::serializers::BincodeSerializer;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use taskcache_core::header::{Header, HEADER_LEN};
use taskcache_core::result::{
    Location, LocationLock, PayloadDigest, RecordEntry, ResultBackend, ResultEntry, ResultError,
    Slot, Value,
};

/// Keeps results in process memory: the test double of [`LocalResult`](crate::LocalResult),
/// and a backend for targets within one process (`is_persistent` is false).
///
/// Values are stored encoded with bincode, with the same header as files, so reading
/// one checks its type and checksum as `LocalResult` does. Clones are handles on the same
/// storage.
///
/// ```
/// use taskcache::results::{Location, MemoryResult, ResultBackendExt};
///
/// let memory = MemoryResult::new();
/// let at = Location::new("answer.bin").unwrap();
/// memory.write(&42u32, &at).unwrap();
/// assert_eq!(memory.clone().read::<u32>(&at).unwrap(), 42);
/// assert!(memory.read::<String>(&at).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryResult {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Encoded values; an `Arc` so that a read decodes outside the lock.
    values: Mutex<HashMap<Location, Arc<[u8]>>>,
    /// Records by key, then id.
    records: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
    locked: Mutex<HashSet<Location>>,
    unlocked: Condvar,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryResult {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of values stored.
    pub fn len(&self) -> usize {
        guard(&self.shared.values).len()
    }

    /// True when no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored bytes (header and payload) at `location`, as a file would hold them:
    /// for tests that inspect or damage them.
    pub fn bytes(&self, location: &Location) -> Option<Vec<u8>> {
        guard(&self.shared.values).get(location).map(|b| b.to_vec())
    }

    /// Replaces the stored bytes at `location`: for tests that damage a stored value.
    pub fn set_bytes(&self, location: &Location, bytes: Vec<u8>) {
        guard(&self.shared.values).insert(location.clone(), bytes.into());
    }
}

impl MemoryResult {
    /// The stored bytes at `location`, shared.
    fn stored(&self, location: &Location) -> Result<Arc<[u8]>, ResultError> {
        guard(&self.shared.values)
            .get(location)
            .cloned()
            .ok_or_else(|| ResultError::NotFound {
                location: location.clone(),
            })
    }
}

/// Releases a location locked in a `MemoryResult`.
struct Unlock {
    shared: Arc<Shared>,
    location: Location,
}

impl Drop for Unlock {
    fn drop(&mut self) {
        guard(&self.shared.locked).remove(&self.location);
        self.shared.unlocked.notify_all();
    }
}

/// How a location is named in messages.
fn memory_path(location: &Location) -> PathBuf {
    PathBuf::from(format!("memory:{location}"))
}

impl ResultBackend for MemoryResult {
    fn describe(&self) -> String {
        "MemoryResult".to_owned()
    }

    fn is_persistent(&self) -> bool {
        false
    }

    fn location_template(&self) -> Option<&str> {
        None
    }

    fn default_location(&self, task_name: &str) -> Location {
        unique_location(task_name)
    }

    fn exists(&self, location: &Location) -> Result<bool, ResultError> {
        Ok(guard(&self.shared.values).contains_key(location))
    }

    fn read_value(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
        slot: &mut dyn Slot,
    ) -> Result<(), ResultError> {
        let bytes = guard(&self.shared.values)
            .get(location)
            .cloned()
            .ok_or_else(|| ResultError::NotFound {
                location: location.clone(),
            })?;
        format::decode_bytes_into(
            &bytes,
            &BincodeSerializer,
            &memory_path(location),
            pinned,
            slot,
        )
    }

    fn write_value(
        &self,
        value: Value<'_>,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError> {
        let mut out = Cursor::new(Vec::new());
        let digest = format::encode_into(
            value,
            &BincodeSerializer,
            &mut out,
            &memory_path(location),
            |_| Ok(()),
        )?;
        guard(&self.shared.values).insert(location.clone(), out.into_inner().into());
        Ok(digest)
    }

    fn lock(&self, location: &Location) -> Result<LocationLock, ResultError> {
        let mut locked = guard(&self.shared.locked);
        while locked.contains(location) {
            locked = self
                .shared
                .unlocked
                .wait(locked)
                .unwrap_or_else(|e| e.into_inner());
        }
        locked.insert(location.clone());
        Ok(LocationLock::new(Unlock {
            shared: Arc::clone(&self.shared),
            location: location.clone(),
        }))
    }

    fn put_record(&self, key: &str, id: &str, bytes: &[u8]) -> Result<(), ResultError> {
        guard(&self.shared.records)
            .entry(key.to_owned())
            .or_default()
            .insert(id.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn get_record(&self, key: &str, id: &str) -> Result<Option<Vec<u8>>, ResultError> {
        Ok(guard(&self.shared.records)
            .get(key)
            .and_then(|ids| ids.get(id))
            .cloned())
    }

    fn list_records(&self, key: &str) -> Result<Vec<String>, ResultError> {
        Ok(guard(&self.shared.records)
            .get(key)
            .map(|ids| ids.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn remove_record(&self, key: &str, id: &str) -> Result<(), ResultError> {
        let mut records = guard(&self.shared.records);
        if let Some(ids) = records.get_mut(key) {
            ids.remove(id);
            if ids.is_empty() {
                records.remove(key);
            }
        }
        Ok(())
    }

    fn list_entries(&self) -> Result<Vec<ResultEntry>, ResultError> {
        Ok(guard(&self.shared.values)
            .iter()
            .map(|(location, bytes)| ResultEntry {
                location: location.clone(),
                size: bytes.len() as u64,
                modified: None,
            })
            .collect())
    }

    fn read_header(&self, location: &Location) -> Result<Header, ResultError> {
        let bytes = self.stored(location)?;
        let path = memory_path(location);
        let Some((head, _)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(ResultError::Corrupt {
                path,
                reason: format!(
                    "{} bytes, shorter than the {HEADER_LEN}-byte header",
                    bytes.len()
                ),
            });
        };
        parse_header(head, bytes.len() as u64, &path)
    }

    fn verify(&self, location: &Location) -> Result<Header, ResultError> {
        let bytes = self.stored(location)?;
        verify_stream(&mut &bytes[..], bytes.len() as u64, &memory_path(location))
    }

    fn remove(&self, location: &Location) -> Result<(), ResultError> {
        guard(&self.shared.values).remove(location);
        Ok(())
    }

    fn list_all_records(&self) -> Result<Vec<RecordEntry>, ResultError> {
        Ok(guard(&self.shared.records)
            .iter()
            .flat_map(|(key, ids)| {
                ids.iter().map(move |(id, bytes)| RecordEntry {
                    key: Some(key.clone()),
                    id: id.clone(),
                    name: format!("{}/{}.rec", encode_key(key), encode_id(id)),
                    size: bytes.len() as u64,
                    modified: None,
                })
            })
            .collect())
    }
}
