//! Drives `wasi:keyvalue` (store, atomics, batch).
use exports::trellis::providers::kv_probe::Guest;
use wasi::keyvalue::{atomics, batch, store};

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/keyvalue-guest", generate_all });

struct Kv;

fn text(error: store::Error) -> String {
    match error {
        store::Error::NoSuchStore => "no-such-store".into(),
        store::Error::AccessDenied => "access-denied".into(),
        store::Error::Other(message) => format!("other: {message}"),
    }
}

impl Guest for Kv {
    fn increment(bucket: String, key: String, delta: u64) -> Result<u64, String> {
        let bucket = store::open(&bucket).map_err(text)?;
        atomics::increment(&bucket, &key, delta).map_err(text)
    }

    fn exercise(bucket: String) -> Result<Vec<String>, String> {
        let bucket = store::open(&bucket).map_err(text)?;
        let mut seen = Vec::new();
        bucket.set("a", b"one").map_err(text)?;
        bucket.set("b", b"two").map_err(text)?;
        let a = bucket.get("a").map_err(text)?;
        seen.push(format!("get a = {:?}", a.map(String::from_utf8)));
        seen.push(format!("exists b = {}", bucket.exists("b").map_err(text)?));
        bucket.delete("b").map_err(text)?;
        seen.push(format!("exists b = {}", bucket.exists("b").map_err(text)?));
        seen.push(format!("get b = {:?}", bucket.get("b").map_err(text)?));
        batch::set_many(
            &bucket,
            &[
                ("c".to_string(), b"three".to_vec()),
                ("d".to_string(), b"four".to_vec()),
            ],
        )
        .map_err(text)?;
        let many = batch::get_many(&bucket, &["c".into(), "x".into(), "d".into()]).map_err(text)?;
        let many: Vec<String> = many
            .into_iter()
            .map(|v| match v {
                Some((k, v)) => format!("{k}={}", String::from_utf8_lossy(&v)),
                None => "none".into(),
            })
            .collect();
        seen.push(format!("get-many = {}", many.join(",")));
        batch::delete_many(&bucket, &["c".into()]).map_err(text)?;
        let mut keys = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let page = bucket.list_keys(cursor).map_err(text)?;
            keys.extend(page.keys);
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
        keys.sort();
        seen.push(format!("keys = {}", keys.join(",")));
        Ok(seen)
    }
}

export!(Kv);
