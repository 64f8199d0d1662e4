//! Reads the secrets its host granted it through `wasmcloud:secrets/store` and `reveal`.
use exports::trellis::providers::secret_probe::Guest;
use wasmcloud::secrets::{reveal, store};

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/secrets-guest", generate_all });

struct SecretReader;

impl Guest for SecretReader {
    fn reveal(key: String) -> Result<String, String> {
        let secret = store::get(&key).map_err(|error| format!("{error:?}"))?;
        Ok(match reveal::reveal(&secret) {
            store::SecretValue::String(value) => value,
            store::SecretValue::Bytes(bytes) => format!("bytes:{}", bytes.len()),
        })
    }
}

export!(SecretReader);
