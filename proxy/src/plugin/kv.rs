//! The tenant-scoped key-value store plugins may use (capability `kv`): bounded in total bytes
//! and key size, so a plugin cannot grow the proxy's memory.

use parking_lot::Mutex;
use std::collections::HashMap;

pub struct KvStore {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Vec<u8>>,
    bytes: usize,
}

pub const MAX_KEY: usize = 256;

impl KvStore {
    pub fn new(max_bytes: usize) -> Self {
        KvStore {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.inner.lock().map.get(key).cloned()
    }

    pub fn set(&self, key: String, value: Vec<u8>) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(format!("key must be 1-{MAX_KEY} bytes"));
        }
        let mut inner = self.inner.lock();
        let old = inner.map.get(&key).map_or(0, |v| key.len() + v.len());
        let new = key.len() + value.len();
        if inner.bytes - old + new > self.max_bytes {
            return Err(format!("tenant store full ({} bytes)", self.max_bytes));
        }
        inner.bytes = inner.bytes - old + new;
        inner.map.insert(key, value);
        Ok(())
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_bytes_and_key_size() {
        let kv = KvStore::new(20);
        assert_eq!(kv.set("a".into(), vec![0; 10]), Ok(()));
        assert_eq!(kv.bytes(), 11);
        assert!(kv.set("b".into(), vec![0; 10]).is_err());
        assert_eq!(
            kv.set("a".into(), vec![1; 19]),
            Ok(()),
            "replacing counts the old value out"
        );
        assert_eq!(kv.get("a"), Some(vec![1; 19]));
        assert!(kv.set(String::new(), vec![]).is_err());
        assert!(kv.set("k".repeat(MAX_KEY + 1), vec![]).is_err());
    }
}
