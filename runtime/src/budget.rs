//! Per-invocation budgets: a wall-clock deadline (epochs), optional fuel, and a memory ceiling.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

use crate::ctx::InvocationCtx;
use crate::engine::EngineConfig;

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
    /// Linear memory the instance's memories hold (they never shrink): its peak so far.
    pub(crate) held: usize,
}

impl ResourceLimiter for MemoryCeiling {
    fn memory_growing(
        &mut self,
        current: usize,
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
            _ => {
                self.held += desired.saturating_sub(current);
                Ok(true)
            }
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

/// What a call used by its end: the fuel it burned (when the engine meters fuel) and the
/// linear memory its instance held.
pub(crate) fn used(
    store: &Store<InvocationCtx>,
    budget: &Budget,
    engine: &EngineConfig,
) -> (Option<u64>, usize) {
    let fuel = engine.fuel_metering.then(|| {
        let given = budget.fuel.unwrap_or(u64::MAX);
        given.saturating_sub(store.get_fuel().unwrap_or(given))
    });
    (fuel, store.data().memory.held)
}

/// Applies `budget` to a fresh store of `engine`.
pub(crate) fn apply(store: &mut Store<InvocationCtx>, budget: &Budget, engine: &EngineConfig) {
    store.data_mut().memory.limit = budget.memory_bytes;
    store.limiter(|ctx| &mut ctx.memory);
    if engine.fuel_metering {
        // Unlimited unless asked; yield now and then so fuel-metered loops stay cooperative.
        let fuel = budget.fuel.unwrap_or(u64::MAX);
        store.set_fuel(fuel).expect("fuel metering is enabled");
        store
            .fuel_async_yield_interval(Some(1_000_000))
            .expect("fuel metering is enabled");
    }
    cooperate(store, budget.wall_time, engine);
}

/// How a call that keeps a core busy is slowed, so that it leaves room for the calls beside it
/// (on a 2-core host, one endless loop would otherwise take half the machine until its limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// Wasm execution a call gets at full speed, counted in the epoch ticks it runs through.
    pub full_speed: Duration,
    /// After that, the share of one core the call may use, in percent (100: never slowed).
    pub cpu_percent: u32,
}

impl Default for Pacing {
    /// A request handler rarely computes for 100 ms; one that does keeps going at a tenth of
    /// a core. Each slice it runs holds a worker thread for up to an epoch tick, so the share
    /// must be small for the tasks queued behind it on that worker not to wait.
    fn default() -> Self {
        Self {
            full_speed: Duration::from_millis(100),
            cpu_percent: 10,
        }
    }
}

impl Pacing {
    /// The pause after each tick of execution once past full speed (`None`: no pause).
    fn pause(&self, tick: Duration) -> Option<Duration> {
        let percent = self.cpu_percent.clamp(1, 100);
        (percent < 100).then(|| tick * (100 - percent) / percent)
    }
}

/// Makes a store yield to tokio on every epoch tick, so one component cannot starve the rest,
/// slows it down once it has run at full speed for a while ([`Pacing`]), and traps once
/// `wall_time` has passed. Every store needs this: the engine interrupts on epochs.
pub(crate) fn cooperate<T: 'static>(
    store: &mut Store<T>,
    wall_time: Option<Duration>,
    engine: &EngineConfig,
) {
    let started = Instant::now();
    let tick = engine.epoch_tick;
    let full_speed_ticks = engine.pacing.full_speed.as_nanos() / tick.as_nanos().max(1);
    let pause = engine.pacing.pause(tick);
    let mut ticks_run: u128 = 0;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if let Some(limit) = wall_time
            && started.elapsed() >= limit
        {
            return Err(wasmtime::Error::new(BudgetExceeded::DeadlineExceeded(
                limit,
            )));
        }
        ticks_run += 1;
        match pause {
            Some(pause) if ticks_run > full_speed_ticks => Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::time::sleep(pause)),
            )),
            _ => Ok(UpdateDeadline::Yield(1)),
        }
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
