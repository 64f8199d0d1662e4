//! Misbehaves on request (spins, hogs memory, traps) and probes what WASI lets it see.
use exports::trellis::example::probe::Guest;

wit_bindgen::generate!({ path: "../../../wit/example", world: "prober" });

struct Prober;

impl Guest for Prober {
    fn ok() -> u32 {
        42
    }
    fn nap(ms: u32) -> u32 {
        std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
        ms
    }
    fn spin() {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
    fn hog(mib: u32) -> u32 {
        let mut chunks = Vec::new();
        for _ in 0..mib {
            chunks.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
        chunks.len() as u32
    }
    fn trap() {
        panic!("prober asked to trap")
    }
    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    }
    fn write_file(path: String, contents: String) -> Result<(), String> {
        std::fs::write(&path, contents).map_err(|e| e.to_string())
    }
    fn get_env(name: String) -> Option<String> {
        std::env::var(&name).ok()
    }
}

export!(Prober);
