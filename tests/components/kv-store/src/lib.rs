//! `wasi:keyvalue` (store, atomics, batch) served by a component rather than by the host: the
//! provider side of the `kv` guest. With a directory mounted at `/data`, each bucket is a
//! directory and each key a file (named by the key's hex, so any key is a valid name);
//! otherwise the buckets live in this instance's memory.
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use exports::wasi::keyvalue::store::{self, Error, KeyResponse};
use exports::wasi::keyvalue::{atomics, batch};

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/keyvalue-provider", generate_all });

const VOLUME: &str = "/data";
const PAGE: usize = 100;

thread_local! {
    static MEMORY: RefCell<BTreeMap<String, BTreeMap<String, Vec<u8>>>> = RefCell::default();
}

struct Provider;

/// An opened bucket: its name, and its directory when keys live on the volume.
pub struct Bucket {
    name: String,
    dir: Option<PathBuf>,
}

fn other(error: impl std::fmt::Display) -> Error {
    Error::Other(error.to_string())
}

fn hex(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(name: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl Bucket {
    fn file(&self, dir: &Path, key: &str) -> PathBuf {
        dir.join(hex(key))
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        match &self.dir {
            Some(dir) => match fs::read(self.file(dir, key)) {
                Ok(value) => Ok(Some(value)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(other(e)),
            },
            None => Ok(MEMORY.with_borrow(|m| m.get(&self.name)?.get(key).cloned())),
        }
    }

    fn write(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        match &self.dir {
            Some(dir) => {
                // Written aside then renamed, so a reader never sees half a value.
                let aside = dir.join(format!(".{}", hex(key)));
                fs::write(&aside, value).map_err(other)?;
                fs::rename(&aside, self.file(dir, key)).map_err(other)
            }
            None => {
                MEMORY.with_borrow_mut(|m| {
                    m.entry(self.name.clone())
                        .or_default()
                        .insert(key.to_string(), value.to_vec())
                });
                Ok(())
            }
        }
    }

    fn remove(&self, key: &str) -> Result<(), Error> {
        match &self.dir {
            Some(dir) => match fs::remove_file(self.file(dir, key)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(other(e)),
                _ => Ok(()),
            },
            None => {
                MEMORY.with_borrow_mut(|m| m.get_mut(&self.name).map(|b| b.remove(key)));
                Ok(())
            }
        }
    }

    fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys: Vec<String> = match &self.dir {
            Some(dir) => fs::read_dir(dir)
                .map_err(other)?
                .filter_map(|entry| unhex(entry.ok()?.file_name().to_str()?))
                .collect(),
            None => MEMORY.with_borrow(|m| {
                m.get(&self.name)
                    .map(|b| b.keys().cloned().collect())
                    .unwrap_or_default()
            }),
        };
        keys.sort();
        Ok(keys)
    }
}

impl store::Guest for Provider {
    type Bucket = Bucket;

    fn open(identifier: String) -> Result<store::Bucket, Error> {
        let dir = if Path::new(VOLUME).is_dir() {
            let dir = Path::new(VOLUME).join(hex(&identifier));
            fs::create_dir_all(&dir).map_err(other)?;
            Some(dir)
        } else {
            None
        };
        Ok(store::Bucket::new(Bucket {
            name: identifier,
            dir,
        }))
    }
}

impl store::GuestBucket for Bucket {
    fn get(&self, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.read(&key)
    }

    fn set(&self, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.write(&key, &value)
    }

    fn delete(&self, key: String) -> Result<(), Error> {
        self.remove(&key)
    }

    fn exists(&self, key: String) -> Result<bool, Error> {
        Ok(self.read(&key)?.is_some())
    }

    fn list_keys(&self, cursor: Option<u64>) -> Result<KeyResponse, Error> {
        let keys = self.keys()?;
        let start = cursor.unwrap_or(0) as usize;
        let page: Vec<String> = keys.iter().skip(start).take(PAGE).cloned().collect();
        let next = start + page.len();
        Ok(KeyResponse {
            cursor: (next < keys.len()).then_some(next as u64),
            keys: page,
        })
    }
}

impl atomics::Guest for Provider {
    fn increment(bucket: store::BucketBorrow<'_>, key: String, delta: u64) -> Result<u64, Error> {
        let bucket: &Bucket = bucket.get();
        let now = match bucket.read(&key)? {
            Some(value) => {
                let text = String::from_utf8(value).map_err(other)?;
                text.trim().parse::<u64>().map_err(other)?
            }
            None => 0,
        };
        let next = now.checked_add(delta).ok_or_else(|| other("overflow"))?;
        bucket.write(&key, next.to_string().as_bytes())?;
        Ok(next)
    }
}

impl batch::Guest for Provider {
    fn get_many(
        bucket: store::BucketBorrow<'_>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Error> {
        let bucket: &Bucket = bucket.get();
        keys.into_iter()
            .map(|key| Ok(bucket.read(&key)?.map(|value| (key, value))))
            .collect()
    }

    fn set_many(
        bucket: store::BucketBorrow<'_>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        let bucket: &Bucket = bucket.get();
        key_values
            .iter()
            .try_for_each(|(key, value)| bucket.write(key, value))
    }

    fn delete_many(bucket: store::BucketBorrow<'_>, keys: Vec<String>) -> Result<(), Error> {
        let bucket: &Bucket = bucket.get();
        keys.iter().try_for_each(|key| bucket.remove(key))
    }
}

export!(Provider);
