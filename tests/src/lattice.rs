//! Helpers for tests that drive hosts on a real lattice: the control-interface client and
//! bounded polling.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use async_nats_039 as nats;
use wasmcloud_control_interface::{Client, ClientBuilder};

use crate::nats::NatsServer;

/// The longest any test waits for the lattice to reach a state.
pub const LATTICE_WAIT: Duration = Duration::from_secs(30);

/// The real wasmcloud-control-interface client on its own async-nats 0.39 connection, and that
/// connection (for events and raw requests).
pub async fn ctl_client(server: &NatsServer, lattice: &str) -> (Client, nats::Client) {
    let nc = nats::connect(server.url())
        .await
        .expect("connecting to NATS");
    let client = ClientBuilder::new(nc.clone())
        .lattice(lattice)
        .timeout(Duration::from_secs(5))
        .auction_timeout(Duration::from_secs(2))
        .build();
    (client, nc)
}

/// Returns once the server has registered every subscription `nc` made before the call.
///
/// `flush` only writes the client's buffer out; a server handles one connection's commands in
/// order, so a message published on `nc` coming back to `nc` proves the earlier ones were
/// processed. Without it, a test's first counted message can race its subscription.
pub async fn registered(nc: &nats::Client) {
    let probe = nc.new_inbox();
    let mut echo = nc.subscribe(probe.clone()).await.unwrap();
    nc.publish(probe, "".into()).await.unwrap();
    tokio::time::timeout(LATTICE_WAIT, echo.next())
        .await
        .expect("the NATS server echoes a probe")
        .expect("probe subscription open");
}

/// Waits until `host_id`'s inventory lists `component_id` with `max_instances` (or, for 0, no
/// longer lists it): what a control client sees once the host serves the component's exports
/// on the lattice, which is later than the runtime having it.
pub async fn in_inventory(client: &Client, host_id: &str, component_id: &str, max_instances: u32) {
    eventually(
        &format!("{component_id} at {max_instances} in {host_id}'s inventory"),
        || async {
            let inventory = client.get_host_inventory(host_id).await.ok()?;
            let listed = inventory
                .data()?
                .components()
                .iter()
                .find(|component| component.id() == component_id)
                .map(|component| component.max_instances());
            (listed == (max_instances > 0).then_some(max_instances)).then_some(())
        },
    )
    .await
}

/// Polls `check` every 50 ms until it returns `Some`; fails the test after [`LATTICE_WAIT`].
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + LATTICE_WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts the messages published under `{lattice}.{target}.wrpc.>`: proof that calls to
/// `target` went over NATS (or, when it stays put, that they did not).
pub async fn count_wrpc_messages(
    nc: &nats::Client,
    lattice: &str,
    target: &str,
) -> Arc<AtomicUsize> {
    let mut messages = nc
        .subscribe(format!("{lattice}.{target}.wrpc.>"))
        .await
        .unwrap();
    registered(nc).await;
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while messages.next().await.is_some() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    count
}

/// The distinct subjects published under `{lattice}.{target}.wrpc.>`: which instances and
/// functions of `target` were called over NATS.
pub async fn record_wrpc_subjects(
    nc: &nats::Client,
    lattice: &str,
    target: &str,
) -> Arc<Mutex<BTreeSet<String>>> {
    let mut messages = nc
        .subscribe(format!("{lattice}.{target}.wrpc.>"))
        .await
        .unwrap();
    registered(nc).await;
    let subjects = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = subjects.clone();
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            seen.lock().unwrap().insert(message.subject.to_string());
        }
    });
    subjects
}

/// What `recorded` (from [`record_wrpc_subjects`]) holds once it has every subject of
/// `expected`, or after [`LATTICE_WAIT`]: the recording subscription gets a call's message
/// independently of the callee, so it may still be on its way when the call has returned.
pub async fn subjects_when_seen(
    recorded: &Mutex<BTreeSet<String>>,
    expected: &BTreeSet<String>,
) -> BTreeSet<String> {
    let deadline = Instant::now() + LATTICE_WAIT;
    loop {
        let seen = recorded.lock().unwrap().clone();
        if seen.is_superset(expected) || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every lattice event seen since [`EventLog::record`], as (name, data), for tests that wait for
/// one event or count them.
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<(String, serde_json::Value)>>>);

impl EventLog {
    /// Subscribes to `lattice`'s events; the subscription is registered when this returns.
    pub async fn record(nc: &nats::Client, lattice: &str) -> Self {
        let mut messages = nc
            .subscribe(format!("wasmbus.evt.{lattice}.>"))
            .await
            .unwrap();
        registered(nc).await;
        let events = Self::default();
        let seen = events.0.clone();
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let name = message.subject.rsplit('.').next().unwrap_or("").to_string();
                let body: serde_json::Value =
                    serde_json::from_slice(&message.payload).unwrap_or_default();
                seen.lock().unwrap().push((name, body["data"].clone()));
            }
        });
        events
    }

    /// How many events called `name` arrived.
    pub fn count(&self, name: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .count()
    }

    /// Waits until there are more than `after` events called `name`; returns the newest.
    pub async fn wait(&self, name: &str, after: usize) -> serde_json::Value {
        eventually(&format!("event {name} #{}", after + 1), || async {
            let seen = self.0.lock().unwrap();
            let matching: Vec<&serde_json::Value> = seen
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, d)| d)
                .collect();
            (matching.len() > after).then(|| matching[matching.len() - 1].clone())
        })
        .await
    }

    /// Waits for the first of `names` about `id` (a component or provider ID) whose image is
    /// `image_ref`; returns its name and data.
    pub async fn outcome(
        &self,
        names: &[&str],
        id: &str,
        image_ref: &str,
    ) -> (String, serde_json::Value) {
        eventually(&format!("{names:?} for {id} ({image_ref})"), || async {
            self.0
                .lock()
                .unwrap()
                .iter()
                .find(|(name, data)| {
                    names.contains(&name.as_str())
                        && (data["component_id"] == id || data["provider_id"] == id)
                        && (data["image_ref"] == image_ref || data["provider_ref"] == image_ref)
                })
                .cloned()
        })
        .await
    }

    /// Forgets the events seen so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Waits until the importer `id` on `runtime` answers `front.add(2, 3)` (a link just put may
/// still be on its way to the host) and returns the answer.
pub async fn front_add(runtime: &trellis_runtime::Runtime, id: &str) -> Vec<trellis_runtime::Val> {
    let params = [trellis_runtime::Val::U32(2), trellis_runtime::Val::U32(3)];
    eventually(&format!("{id} answering add(2, 3)"), || async {
        let front = "trellis:example/front@0.1.0";
        runtime.invoke(id, front, "add", &params, None).await.ok()
    })
    .await
}

/// Puts named config `name` holding `pairs`; panics unless the host accepted it.
pub async fn put_config(client: &Client, name: &str, pairs: &[(&str, &str)]) {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ack = client.put_config(name, map).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

/// Starts the built-in HTTP server as provider `httpserver` on `host_id`, unless it runs there.
pub async fn start_http_server(client: &Client, host_id: &str) {
    let inventory = client.get_host_inventory(host_id).await.unwrap();
    let inventory = inventory.data().expect("an inventory");
    if inventory.providers().iter().any(|p| p.id() == "httpserver") {
        return;
    }
    let ack = client
        .start_provider(
            host_id,
            "wasmcloud+builtin://http-server",
            "httpserver",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

/// Links `httpserver` to `component`'s `wasi:http/incoming-handler` under link `name`, with the
/// named config `listen` (its `address`, `path`, …) on the server's side.
pub async fn put_http_server_link(client: &Client, component: &str, name: &str, listen: &str) {
    let link = wasmcloud_control_interface::Link::builder()
        .source_id("httpserver")
        .target(component)
        .name(name)
        .wit_namespace("wasi")
        .wit_package("http")
        .interfaces(vec!["incoming-handler".into()])
        .source_config(vec![listen.into()])
        .build()
        .unwrap();
    let ack = client.put_link(link).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

/// Scales test guest `guest` (`tests/components`) as component `id` to `count` instances on
/// `host_id` with named `config`, and waits until the inventory lists it so.
pub async fn run_component(
    client: &Client,
    host_id: &str,
    id: &str,
    guest: &str,
    count: u32,
    config: &[&str],
) {
    let ack = client
        .scale_component(
            host_id,
            &crate::component_ref(guest),
            id,
            count,
            None,
            config.iter().map(|c| c.to_string()).collect(),
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    in_inventory(client, host_id, id, count).await;
}
