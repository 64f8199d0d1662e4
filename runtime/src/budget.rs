//! Per-invocation budgets: a wall-clock deadline (epochs), optional fuel, and a memory ceiling.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

use crate::ctx::InvocationCtx;

/// What one invocation may spend. `None` means "no limit of this kind".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Wall-clock time for the whole call, including time spent in host functions.
    pub wall_time: Option<Duration>,
    /// Wasm instructions, counted by wasmtime's fuel (needs `EngineConfig::fuel_metering`).
    pub fuel: Option<u64>,
    /// Linear memory per memory, in bytes.
    pub memory_bytes: Option<usize>,
}

impl Default for Budget {
    /// The reference wasmCloud host's defaults: 10 minutes, 256 MiB, no fuel limit.
    fn default() -> Self {
        Self {
            wall_time: Some(Duration::from_secs(600)),
            fuel: None,
            memory_bytes: Some(256 << 20),
        }
    }
}

impl Budget {
    /// Fields set in `overrides` replace this budget's.
    pub fn overridden_by(self, overrides: &Budget) -> Budget {
        Budget {
            wall_time: overrides.wall_time.or(self.wall_time),
            fuel: overrides.fuel.or(self.fuel),
            memory_bytes: overrides.memory_bytes.or(self.memory_bytes),
        }
    }
}

/// Why an invocation was stopped by its budget.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExceeded {
    #[error("deadline of {0:?} exceeded")]
    DeadlineExceeded(Duration),
    #[error("fuel budget of {0} exhausted")]
    OutOfFuel(u64),
    #[error("memory limit of {limit} bytes exceeded (asked for {requested})")]
    MemoryLimit { limit: usize, requested: usize },
}

/// A budget with fuel, for an engine that does not count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a fuel budget needs an engine with fuel metering on")]
pub struct FuelMeteringOff;

/// Enforces the memory ceiling and remembers that it was hit, so that the trap a guest raises
/// after a failed `memory.grow` is reported as [`BudgetExceeded::MemoryLimit`].
#[derive(Debug, Default)]
pub(crate) struct MemoryCeiling {
    limit: Option<usize>,
    pub(crate) hit: Option<BudgetExceeded>,
}

impl ResourceLimiter for MemoryCeiling {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.limit {
            Some(limit) if desired > limit => {
                let exceeded = BudgetExceeded::MemoryLimit {
                    limit,
                    requested: desired,
                };
                self.hit = Some(exceeded.clone());
                Err(wasmtime::Error::new(exceeded))
            }
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Applies `budget` to a fresh store.
pub(crate) fn apply(store: &mut Store<InvocationCtx>, budget: &Budget, fuel_metering: bool) {
    store.data_mut().memory.limit = budget.memory_bytes;
    store.limiter(|ctx| &mut ctx.memory);
    if fuel_metering {
        // Unlimited unless asked; yield now and then so fuel-metered loops stay cooperative.
        let fuel = budget.fuel.unwrap_or(u64::MAX);
        store.set_fuel(fuel).expect("fuel metering is enabled");
        store
            .fuel_async_yield_interval(Some(1_000_000))
            .expect("fuel metering is enabled");
    }
    cooperate(store, budget.wall_time);
}

/// Makes a store yield to tokio on every epoch tick, so one component cannot starve the rest,
/// and trap once `wall_time` has passed. Every store needs this: the engine interrupts on epochs.
pub(crate) fn cooperate<T: 'static>(store: &mut Store<T>, wall_time: Option<Duration>) {
    let started = Instant::now();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| match wall_time {
        Some(limit) if started.elapsed() >= limit => Err(wasmtime::Error::new(
            BudgetExceeded::DeadlineExceeded(limit),
        )),
        _ => Ok(UpdateDeadline::Yield(1)),
    });
}

/// Turns a trap into the budget error behind it, if a budget caused it.
pub(crate) fn classify(
    error: &wasmtime::Error,
    store_memory_hit: Option<&BudgetExceeded>,
    budget: &Budget,
) -> Option<BudgetExceeded> {
    if let Some(exceeded) = error.downcast_ref::<BudgetExceeded>() {
        return Some(exceeded.clone());
    }
    if let Some(wasmtime::Trap::OutOfFuel) = error.downcast_ref::<wasmtime::Trap>() {
        return Some(BudgetExceeded::OutOfFuel(budget.fuel.unwrap_or(u64::MAX)));
    }
    // A guest whose allocation failed usually aborts with its own trap afterwards.
    store_memory_hit.cloned()
}
