//! Lattice events: CloudEvents 1.0 JSON published on `wasmbus.evt.{lattice}.{name}` with the
//! host ID as `source`.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Publishes this host's events. Cloning shares the connection.
#[derive(Clone)]
pub struct Events {
    nats: async_nats::Client,
    lattice: String,
    source: String,
}

impl Events {
    pub fn new(nats: async_nats::Client, lattice: &str, host_id: &str) -> Self {
        Self {
            nats,
            lattice: lattice.to_string(),
            source: host_id.to_string(),
        }
    }

    /// Publishes event `name` with `data`. Failures are logged: an event that cannot be sent
    /// must not fail the operation it reports.
    pub async fn publish(&self, name: &str, data: impl Serialize) {
        let body = match serde_json::to_value(data) {
            Ok(data) => cloud_event(name, &self.source, data),
            Err(error) => {
                tracing::error!(event = name, "event data does not serialize: {error}");
                return;
            }
        };
        let subject = format!("wasmbus.evt.{}.{name}", self.lattice);
        if let Err(error) = self.nats.publish(subject, body.to_string().into()).await {
            tracing::warn!(event = name, "publishing event: {error}");
        }
    }
}

/// The CloudEvents 1.0 envelope of one event.
fn cloud_event(name: &str, source: &str, data: Value) -> Value {
    let time = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string());
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": format!("com.wasmcloud.lattice.{name}"),
        "source": source,
        "datacontenttype": "application/json",
        "time": time,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_fields() {
        let event = cloud_event("config_set", "NHOST", json!({"config_name": "c"}));
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "com.wasmcloud.lattice.config_set");
        assert_eq!(event["source"], "NHOST");
        assert_eq!(event["data"]["config_name"], "c");
        let time = event["time"].as_str().unwrap();
        assert!(OffsetDateTime::parse(time, &Rfc3339).is_ok(), "{time}");
    }
}
