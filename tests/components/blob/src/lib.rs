//! Drives `wasi:blobstore`: creates containers on demand, writes, reads, lists, deletes.
use exports::trellis::providers::blob_probe::Guest;
use wasi::blobstore::blobstore;
use wasi::blobstore::container::Container;
use wasi::blobstore::types::{IncomingValue, OutgoingValue};

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/blobstore-guest", generate_all });

struct Blob;

fn container(name: &str) -> Result<Container, String> {
    if blobstore::container_exists(name)? {
        blobstore::get_container(name)
    } else {
        blobstore::create_container(name)
    }
}

impl Guest for Blob {
    fn write(container_name: String, name: String, data: Vec<u8>) -> Result<(), String> {
        let container = container(&container_name)?;
        let value = OutgoingValue::new_outgoing_value();
        let body = value
            .outgoing_value_write_body()
            .map_err(|()| "no body stream".to_string())?;
        for chunk in data.chunks(4096) {
            body.blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing: {e:?}"))?;
        }
        drop(body);
        container.write_data(&name, &value)?;
        OutgoingValue::finish(value)
    }

    fn read(container_name: String, name: String) -> Result<Vec<u8>, String> {
        let container = container(&container_name)?;
        let size = container.object_info(&name)?.size;
        let value = container.get_data(&name, 0, size.saturating_sub(1))?;
        IncomingValue::incoming_value_consume_sync(value)
    }

    fn list_names(container_name: String) -> Result<Vec<String>, String> {
        let container = container(&container_name)?;
        let names = container.list_objects()?;
        let mut all = Vec::new();
        for _ in 0..1000 {
            let (batch, done) = names.read_stream_object_names(100)?;
            all.extend(batch);
            if done {
                break;
            }
        }
        Ok(all)
    }

    fn delete(container_name: String, name: String) -> Result<(), String> {
        container(&container_name)?.delete_object(&name)
    }
}

export!(Blob);
