//! The in-memory blobstore backend: containers of objects in ordered maps.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;

use super::{BlobError, Meta, seconds};

struct MemContainer {
    created_at: u64,
    objects: BTreeMap<String, (Bytes, u64)>,
}

#[derive(Default)]
pub(super) struct MemoryStore(Mutex<BTreeMap<String, MemContainer>>);

fn now() -> u64 {
    seconds(SystemTime::now())
}

fn no_container(name: &str) -> BlobError {
    BlobError::NoSuchContainer(name.to_string())
}

fn no_object(container: &str, object: &str) -> BlobError {
    BlobError::NoSuchObject {
        container: container.to_string(),
        object: object.to_string(),
    }
}

impl MemoryStore {
    pub fn create_container(&self, name: &str) -> Result<(), BlobError> {
        let mut containers = self.0.lock().unwrap();
        if containers.contains_key(name) {
            return Err(BlobError::ContainerExists(name.to_string()));
        }
        containers.insert(
            name.to_string(),
            MemContainer {
                created_at: now(),
                objects: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub fn delete_container(&self, name: &str) -> Result<(), BlobError> {
        self.0
            .lock()
            .unwrap()
            .remove(name)
            .map(drop)
            .ok_or_else(|| no_container(name))
    }

    pub fn container_info(&self, name: &str) -> Result<Meta, BlobError> {
        let containers = self.0.lock().unwrap();
        let container = containers.get(name).ok_or_else(|| no_container(name))?;
        Ok(Meta {
            created_at: container.created_at,
            size: container.objects.len() as u64,
        })
    }

    pub fn write(&self, container: &str, object: &str, data: Bytes) -> Result<(), BlobError> {
        let mut containers = self.0.lock().unwrap();
        let c = containers
            .get_mut(container)
            .ok_or_else(|| no_container(container))?;
        c.objects.insert(object.to_string(), (data, now()));
        Ok(())
    }

    pub fn read(&self, container: &str, object: &str) -> Result<Bytes, BlobError> {
        let containers = self.0.lock().unwrap();
        let c = containers
            .get(container)
            .ok_or_else(|| no_container(container))?;
        c.objects
            .get(object)
            .map(|(data, _)| data.clone())
            .ok_or_else(|| no_object(container, object))
    }

    pub fn object_info(&self, container: &str, object: &str) -> Result<Meta, BlobError> {
        let containers = self.0.lock().unwrap();
        let c = containers
            .get(container)
            .ok_or_else(|| no_container(container))?;
        let (data, created_at) = c
            .objects
            .get(object)
            .ok_or_else(|| no_object(container, object))?;
        Ok(Meta {
            created_at: *created_at,
            size: data.len() as u64,
        })
    }

    pub fn delete_object(&self, container: &str, object: &str) -> Result<(), BlobError> {
        let mut containers = self.0.lock().unwrap();
        let c = containers
            .get_mut(container)
            .ok_or_else(|| no_container(container))?;
        c.objects.remove(object);
        Ok(())
    }

    pub fn list(&self, container: &str) -> Result<Vec<String>, BlobError> {
        let containers = self.0.lock().unwrap();
        let c = containers
            .get(container)
            .ok_or_else(|| no_container(container))?;
        Ok(c.objects.keys().cloned().collect())
    }
}
