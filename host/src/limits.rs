//! What components may use: the host-wide limits (the `wasmcloud` 1.x binary's flags and
//! defaults, plus fuel) and each component's own, which can only lower them.
//!
//! A component's own limits come from two places, the later overriding the earlier:
//! - named config keys `trellis.limits.<key>` (hidden from `wasi:config`): the only form a wadm
//!   manifest can carry, since wadm passes named config through but never sends limits;
//! - `component_limits` in `component.scale` (control interface 3.x).
//!
//! Keys: `max_memory_limit` (bytes per linear memory), `max_execution_time` (seconds, as
//! wasmCloud), `max_execution_time_ms` (Trellis), `max_fuel` (instructions; needs a host started
//! with `--max-fuel`). wasmCloud silently drops keys and values it cannot parse; Trellis refuses
//! them, naming the key, so a typo never leaves a component unbounded.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_runtime::{Budget, DEFAULT_KEEP_RESIDENT_BYTES, EngineConfig, Pacing, PoolingLimits};

/// The named config key prefix that carries a component's limits.
pub const CONFIG_PREFIX: &str = "trellis.limits.";

const MEMORY: &str = "max_memory_limit";
const EXECUTION_TIME: &str = "max_execution_time";
const EXECUTION_TIME_MS: &str = "max_execution_time_ms";
const FUEL: &str = "max_fuel";

/// Host-wide limits, with the meanings of the `wasmcloud` 1.x flags of the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLimits {
    /// Wall time of one call (`--max-execution-time-ms`).
    pub max_execution_time: Duration,
    /// Bytes per linear memory (`--max-linear-memory-bytes`).
    pub max_linear_memory_bytes: usize,
    /// The largest component artifact this host starts (`--max-component-size-bytes`).
    pub max_component_size_bytes: u64,
    /// Live component instances across the host, one per call in flight (`--max-components`).
    pub max_components: u32,
    /// Fuel per call; `Some` compiles fuel metering in (`--max-fuel`).
    pub max_fuel: Option<u64>,
    /// The share of a core a call keeps after 100 ms of computing (`--busy-call-cpu-percent`).
    pub busy_call_cpu_percent: u32,
    /// Bytes of each pooled memory and table kept mapped between instances
    /// (`--pool-keep-resident-bytes`).
    pub pool_keep_resident_bytes: usize,
}

impl Default for HostLimits {
    /// wasmCloud 1.x's defaults, except `max_components`: wasmCloud pools 10 000 instances up
    /// front; 1000 keeps the reservation in line with a small machine.
    fn default() -> Self {
        Self {
            max_execution_time: Duration::from_secs(600),
            max_linear_memory_bytes: 256 << 20,
            max_component_size_bytes: 50 << 20,
            max_components: 1000,
            max_fuel: None,
            busy_call_cpu_percent: Pacing::default().cpu_percent,
            pool_keep_resident_bytes: DEFAULT_KEEP_RESIDENT_BYTES,
        }
    }
}

impl HostLimits {
    /// The engine these limits need: a pool sized by `max_components` whose memories stop at
    /// `max_linear_memory_bytes`, and fuel metering only when fuel is limited.
    pub fn engine_config(&self) -> EngineConfig {
        let instances = self.max_components.max(1);
        EngineConfig {
            pooling: Some(PoolingLimits {
                component_instances: instances,
                core_instances: instances.saturating_mul(4),
                memories: instances.saturating_mul(2),
                tables: instances.saturating_mul(4),
                max_memory_bytes: self.max_linear_memory_bytes,
                keep_resident_bytes: self.pool_keep_resident_bytes,
            }),
            fuel_metering: self.max_fuel.is_some(),
            pacing: Pacing {
                cpu_percent: self.busy_call_cpu_percent,
                ..Pacing::default()
            },
            ..EngineConfig::default()
        }
    }

    /// What a call may spend when its component sets no limits of its own.
    pub fn budget(&self) -> Budget {
        Budget {
            wall_time: Some(self.max_execution_time),
            fuel: self.max_fuel,
            memory_bytes: Some(self.max_linear_memory_bytes),
        }
    }

    /// The budget of a component with `limits`, which must have passed [`Self::check`].
    pub fn budget_for(&self, limits: &ComponentLimits) -> Budget {
        self.budget().overridden_by(&Budget {
            wall_time: limits.execution_time,
            fuel: limits.fuel,
            memory_bytes: limits.memory_bytes,
        })
    }

    /// Refuses component limits this host cannot honour.
    pub fn check(&self, limits: &ComponentLimits) -> Result<(), LimitError> {
        if let Some(bytes) = limits.memory_bytes
            && bytes > self.max_linear_memory_bytes
        {
            return Err(LimitError::AboveHost {
                key: MEMORY,
                value: bytes.to_string(),
                host: format!(
                    "{} (--max-linear-memory-bytes)",
                    self.max_linear_memory_bytes
                ),
            });
        }
        if limits.fuel.is_some() && self.max_fuel.is_none() {
            return Err(LimitError::FuelOff);
        }
        Ok(())
    }
}

/// One component's own limits; `None` leaves the host's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComponentLimits {
    pub memory_bytes: Option<usize>,
    pub execution_time: Option<Duration>,
    pub fuel: Option<u64>,
}

/// A limit that cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "unknown limit `{0}`: use max_memory_limit (bytes), max_execution_time (seconds), \
         max_execution_time_ms or max_fuel"
    )]
    UnknownKey(String),
    #[error("limit `{key}` = `{value}` is not a positive whole number")]
    NotANumber { key: String, value: String },
    #[error("limit `{key}` = {value} is above this host's limit of {host}")]
    AboveHost {
        key: &'static str,
        value: String,
        host: String,
    },
    #[error("limit `max_fuel` needs a host started with --max-fuel (fuel metering is off)")]
    FuelOff,
}

impl ComponentLimits {
    /// Parses a `component_limits` map (or the config keys without their prefix).
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, LimitError> {
        let mut limits = Self::default();
        for (key, value) in entries {
            let number = || {
                value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| LimitError::NotANumber {
                        key: key.clone(),
                        value: value.clone(),
                    })
            };
            match key.as_str() {
                MEMORY => {
                    limits.memory_bytes = Some(usize::try_from(number()?).unwrap_or(usize::MAX))
                }
                EXECUTION_TIME => limits.execution_time = Some(Duration::from_secs(number()?)),
                EXECUTION_TIME_MS => limits.execution_time = Some(Duration::from_millis(number()?)),
                FUEL => limits.fuel = Some(number()?),
                _ => return Err(LimitError::UnknownKey(key.clone())),
            }
        }
        Ok(limits)
    }

    /// The limits a component's merged named config carries under [`CONFIG_PREFIX`].
    pub fn from_config(named: &BTreeMap<String, String>) -> Result<Self, LimitError> {
        let stripped: Vec<(String, String)> = named
            .iter()
            .filter_map(|(key, value)| {
                let key = key.strip_prefix(CONFIG_PREFIX)?;
                Some((key.to_string(), value.clone()))
            })
            .collect();
        Self::parse(stripped.iter().map(|(k, v)| (k, v)))
    }

    /// Fields set in `other`, if given, replace these.
    pub fn overridden_by(self, other: Option<&ComponentLimits>) -> ComponentLimits {
        let Some(other) = other else {
            return self;
        };
        ComponentLimits {
            memory_bytes: other.memory_bytes.or(self.memory_bytes),
            execution_time: other.execution_time.or(self.execution_time),
            fuel: other.fuel.or(self.fuel),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// As inventory reports them: wasmCloud's keys (`max_execution_time` in whole seconds,
    /// rounded up) plus Trellis's exact `max_execution_time_ms` and `max_fuel`.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if let Some(bytes) = self.memory_bytes {
            map.insert(MEMORY.into(), bytes.to_string());
        }
        if let Some(time) = self.execution_time {
            let millis = time.as_millis();
            map.insert(EXECUTION_TIME.into(), millis.div_ceil(1000).to_string());
            map.insert(EXECUTION_TIME_MS.into(), millis.to_string());
        }
        if let Some(fuel) = self.fuel {
            map.insert(FUEL.into(), fuel.to_string());
        }
        map
    }
}

/// Whether a named config key is a limit (and so not part of what `wasi:config` serves).
pub fn is_limit_key(key: &str) -> bool {
    key.starts_with(CONFIG_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn wasmcloud_keys_parse_in_their_units() {
        let limits = ComponentLimits::parse(&map(&[
            ("max_memory_limit", "67108864"),
            ("max_execution_time", "30"),
        ]))
        .unwrap();
        assert_eq!(limits.memory_bytes, Some(64 << 20));
        assert_eq!(limits.execution_time, Some(Duration::from_secs(30)));
        assert_eq!(
            limits.to_map(),
            map(&[
                ("max_memory_limit", "67108864"),
                ("max_execution_time", "30"),
                ("max_execution_time_ms", "30000"),
            ])
        );
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let unknown = ComponentLimits::parse(&map(&[("max_memory", "1")])).unwrap_err();
        assert!(unknown.to_string().contains("`max_memory`"), "{unknown}");
        let zero = ComponentLimits::parse(&map(&[("max_fuel", "0")])).unwrap_err();
        assert!(zero.to_string().contains("`max_fuel` = `0`"), "{zero}");
        let text = ComponentLimits::parse(&map(&[("max_execution_time", "ten")])).unwrap_err();
        assert!(text.to_string().contains("max_execution_time"), "{text}");
    }

    #[test]
    fn config_keys_carry_limits_and_the_rest_is_ignored() {
        let limits = ComponentLimits::from_config(&map(&[
            ("trellis.limits.max_execution_time_ms", "250"),
            ("greeting", "hello"),
        ]))
        .unwrap();
        assert_eq!(limits.execution_time, Some(Duration::from_millis(250)));
        assert!(is_limit_key("trellis.limits.max_fuel"));
        assert!(!is_limit_key("greeting"));
    }

    #[test]
    fn the_host_refuses_what_it_cannot_honour() {
        let host = HostLimits::default();
        let too_big = ComponentLimits {
            memory_bytes: Some(1 << 30),
            ..Default::default()
        };
        assert!(matches!(
            host.check(&too_big),
            Err(LimitError::AboveHost { .. })
        ));
        let fuel = ComponentLimits {
            fuel: Some(1000),
            ..Default::default()
        };
        assert_eq!(host.check(&fuel), Err(LimitError::FuelOff));
        let metered = HostLimits {
            max_fuel: Some(1 << 40),
            ..Default::default()
        };
        assert_eq!(metered.check(&fuel), Ok(()));
        assert_eq!(metered.budget_for(&fuel).fuel, Some(1000));
        assert_eq!(
            metered.budget_for(&fuel).wall_time,
            Some(Duration::from_secs(600))
        );
    }
}
