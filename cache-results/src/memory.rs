//! `MemoryResult`: results kept in process memory, in the same format as files.

use crate::format;
use crate::serializers::BincodeSerializer;
use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use taskcache_core::result::{Location, LocationLock, ResultBackend, ResultError};

/// Keeps results in process memory: for tests, and for targets within one process.
///
/// Values are stored encoded, with the same header as files, so reading them checks
/// their type as `LocalResult` does. Clones share the same storage.
///
/// ```
/// use taskcache_results::MemoryResult;
/// use taskcache_core::result::{Location, ResultBackend};
///
/// let memory = MemoryResult::new();
/// let at = Location::new("answer.bin").unwrap();
/// memory.write(&42u32, &at).unwrap();
/// assert_eq!(memory.read::<u32>(&at).unwrap(), 42);
/// assert!(memory.read::<String>(&at).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryResult {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    values: Mutex<HashMap<Location, Vec<u8>>>,
    records: Mutex<HashMap<(String, String), Vec<u8>>>,
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

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let name: String = task_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Location::new(format!("{name}/{}.bin", uuid::Uuid::new_v4().simple()))
            .expect("a sanitised name and a uuid make a valid location")
    }

    fn exists(&self, location: &Location) -> Result<bool, ResultError> {
        Ok(guard(&self.shared.values).contains_key(location))
    }

    fn read<T: serde::de::DeserializeOwned + 'static>(
        &self,
        location: &Location,
    ) -> Result<T, ResultError> {
        let values = guard(&self.shared.values);
        let bytes = values.get(location).ok_or_else(|| ResultError::NotFound {
            location: location.clone(),
        })?;
        format::read_from(
            &bytes[..],
            bytes.len() as u64,
            &BincodeSerializer,
            &memory_path(location),
        )
    }

    fn write<T: serde::Serialize + 'static>(
        &self,
        value: &T,
        location: &Location,
    ) -> Result<(), ResultError> {
        let mut out = Cursor::new(Vec::new());
        format::encode_into(
            value,
            &BincodeSerializer,
            &mut out,
            &memory_path(location),
            |_| Ok(()),
        )?;
        guard(&self.shared.values).insert(location.clone(), out.into_inner());
        Ok(())
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
        guard(&self.shared.records).insert((key.to_owned(), id.to_owned()), bytes.to_vec());
        Ok(())
    }

    fn get_record(&self, key: &str, id: &str) -> Result<Option<Vec<u8>>, ResultError> {
        Ok(guard(&self.shared.records)
            .get(&(key.to_owned(), id.to_owned()))
            .cloned())
    }

    fn list_records(&self, key: &str) -> Result<Vec<String>, ResultError> {
        let mut ids: Vec<String> = guard(&self.shared.records)
            .keys()
            .filter(|(k, _)| k == key)
            .map(|(_, id)| id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn remove_record(&self, key: &str, id: &str) -> Result<(), ResultError> {
        guard(&self.shared.records).remove(&(key.to_owned(), id.to_owned()));
        Ok(())
    }
}
