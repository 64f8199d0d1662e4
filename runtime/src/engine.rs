//! The shared wasmtime engine: configuration, the epoch ticker, and the compiled-component cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::budget::Pacing;

/// How the engine is built. The defaults suit a 2-core, 24 GiB machine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `None` allocates instances on demand (slower instantiation, no up-front reservation).
    pub pooling: Option<PoolingLimits>,
    /// How often the epoch advances: the granularity of deadlines and of guest yields.
    pub epoch_tick: Duration,
    /// Compile fuel metering in, so that budgets may carry fuel (costs ~20% on call-heavy code).
    pub fuel_metering: bool,
    /// How calls that keep a core busy are slowed down.
    pub pacing: Pacing,
    /// Compile and run the component model's async ABI (WASI 0.3 components). Off, wasmtime
    /// keeps no task state per store and its fused adapters skip task bookkeeping on every
    /// cross-component call: WASI 0.2 components, all wasmCloud 1.x runs, need none of it.
    pub component_model_async: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            pooling: Some(PoolingLimits::default()),
            epoch_tick: Duration::from_millis(10),
            fuel_metering: false,
            pacing: Pacing::default(),
            component_model_async: false,
        }
    }
}

/// Enough for the stack and data of a typical Rust or TinyGo component (1 MiB stack).
pub const DEFAULT_KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// Pool sizes for the pooling instance allocator.
#[derive(Clone, Debug)]
pub struct PoolingLimits {
    /// Concurrent component instances across the engine (one per in-flight invocation).
    pub component_instances: u32,
    /// Concurrent core instances; a Rust `wasm32-wasip2` component uses about four.
    pub core_instances: u32,
    /// Concurrent linear memories and tables.
    pub memories: u32,
    pub tables: u32,
    /// The largest linear memory any instance may grow to; budgets may only lower it.
    pub max_memory_bytes: usize,
    /// Bytes at the start of each pooled linear memory and table that stay mapped when an
    /// instance ends, reset in place for the next one instead of handed back to the kernel.
    /// The next instance then takes no page faults there, and the process no TLB shootdowns;
    /// where the kernel has `PAGEMAP_SCAN` (Linux 6.7+) only the pages the instance wrote are
    /// reset. 0 hands every page back (wasmtime's default).
    pub keep_resident_bytes: usize,
}

impl Default for PoolingLimits {
    fn default() -> Self {
        Self {
            component_instances: 1000,
            core_instances: 4000,
            memories: 2000,
            tables: 4000,
            max_memory_bytes: 1 << 30,
            keep_resident_bytes: DEFAULT_KEEP_RESIDENT_BYTES,
        }
    }
}

/// A wasmtime engine with an epoch ticker and a cache of compiled components by content digest.
/// Cloning shares both.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    config: Arc<EngineConfig>,
    compiled: Arc<Mutex<HashMap<[u8; 32], Component>>>,
    /// Compilations answered from the cache, and those that compiled.
    cache_hits: Arc<AtomicU64>,
    cache_misses: Arc<AtomicU64>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> anyhow::Result<Self> {
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_component_model(true);
        wasm.epoch_interruption(true);
        wasm.consume_fuel(config.fuel_metering);
        wasm.concurrency_support(config.component_model_async);
        wasm.wasm_component_model_async(config.component_model_async);
        let on_demand = wasm.clone();
        if let Some(limits) = &config.pooling {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(limits.component_instances)
                .total_core_instances(limits.core_instances)
                .total_memories(limits.memories)
                .total_tables(limits.tables)
                .total_stacks(limits.component_instances)
                .max_memory_size(limits.max_memory_bytes)
                .linear_memory_keep_resident(limits.keep_resident_bytes)
                .table_keep_resident(limits.keep_resident_bytes)
                .pagemap_scan(Enabled::Auto);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        // A pool reserves its address space up front; where that is refused (a ulimit -v, a
        // small 32-bit space), run on demand as wasmCloud does: budgets still cap memory.
        let inner = match wasmtime::Engine::new(&wasm) {
            Ok(engine) => engine,
            Err(error) if config.pooling.is_some() => {
                tracing::warn!(
                    "pooling instance allocator unavailable ({error:#}); allocating on demand"
                );
                wasmtime::Engine::new(&on_demand)
                    .map_err(anyhow::Error::from)
                    .context("configuring the wasmtime engine")?
            }
            Err(error) => {
                return Err(anyhow::Error::from(error).context("configuring the wasmtime engine"));
            }
        };
        spawn_epoch_ticker(&inner, config.epoch_tick);
        Ok(Self {
            inner,
            config: Arc::new(config),
            compiled: Default::default(),
            cache_hits: Default::default(),
            cache_misses: Default::default(),
        })
    }

    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Compiles `bytes` once per distinct content; later calls with the same bytes are a lookup.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<(Component, [u8; 32])> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(component) = self.compiled.lock().unwrap().get(&digest) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((component.clone(), digest));
        }
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        // Compile outside the lock: compilation takes milliseconds to seconds.
        let component = off_the_async_worker(|| Component::new(&self.inner, bytes))?;
        self.compiled
            .lock()
            .unwrap()
            .insert(digest, component.clone());
        Ok((component, digest))
    }

    /// Compilations answered from the cache, and those that had to compile, since it started.
    pub fn compile_cache_hits(&self) -> (u64, u64) {
        (
            self.cache_hits.load(Ordering::Relaxed),
            self.cache_misses.load(Ordering::Relaxed),
        )
    }

    /// How many distinct components are compiled and cached.
    pub fn cached_components(&self) -> usize {
        self.compiled.lock().unwrap().len()
    }
}

/// Advances the epoch until the engine is dropped. A thread, not a tokio task, so that ticks keep
/// coming while guests hog the runtime's worker threads.
fn spawn_epoch_ticker(engine: &wasmtime::Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("trellis-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// Runs CPU-bound `work` so that, on a multi-threaded tokio runtime, the worker's other tasks
/// (heartbeats, lease renewals, calls in flight) move to another thread instead of waiting for
/// it. Compilation is called from async code that holds the runtime's state, so it cannot simply
/// be spawned onto the blocking pool.
fn off_the_async_worker<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
