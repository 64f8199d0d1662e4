//! Reads its config through `wasi:config/store` and the legacy `wasi:config/runtime`.
use exports::trellis::providers::config_probe::Guest;
use wasi::config::{runtime, store};

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/config-guest", generate_all });

struct Configurer;

impl Guest for Configurer {
    fn get(key: String) -> Option<String> {
        store::get(&key).expect("config store get")
    }
    fn get_all() -> Vec<(String, String)> {
        store::get_all().expect("config store get-all")
    }
    fn legacy_get(key: String) -> Option<String> {
        runtime::get(&key).expect("config runtime get")
    }
}

export!(Configurer);
