//! `trellis ctl top`: what every component of the lattice is doing, sampled from the hosts'
//! `wasmbus.ctl.v1.{lattice}.trellis.stats` answers (see `trellis_host::metrics`) over one
//! interval: calls per second, the interval's median and 99th percentile call time (from the
//! duration histograms), and the totals since each component started.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use async_nats_039 as nats;
use futures::StreamExt as _;
use serde::Serialize;
use trellis_deployer::cli::Output;
use trellis_host::metrics::{ComponentStats, HostStats};
use wasmcloud_control_interface::CtlResponse;

use super::client::{Ctl, CtlError, print_json};
use crate::cli::table;

/// How long the hosts' answers are gathered.
const GATHER: Duration = Duration::from_millis(500);

/// One component on one host over one interval.
#[derive(Debug, Serialize)]
struct Row {
    host_id: String,
    host_name: String,
    component_id: String,
    /// Every call it ended since it started, and how many failed (`budget`: stopped by its
    /// limits).
    calls: u64,
    errors: u64,
    budget_stops: u64,
    calls_per_second: f64,
    /// Of the interval's calls; `None` when there were none.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    instances_in_use: u32,
    max_instances: u32,
}

pub(super) async fn top(ctl: &Ctl, interval: Duration) -> Result<(), CtlError> {
    let live = ctl.output == Output::Table && std::io::stdout().is_terminal();
    let mut before = sample(ctl).await?;
    loop {
        tokio::time::sleep(interval.saturating_sub(GATHER)).await;
        let after = sample(ctl).await?;
        let rows = rows(&before.1, &after.1, after.0 - before.0);
        match ctl.output {
            Output::Json => return print_json(&rows),
            Output::Table if !live => {
                print!("{}", render(&rows));
                return Ok(());
            }
            Output::Table => print!("\x1b[2J\x1b[H{}", render(&rows)),
        }
        before = after;
    }
}

/// Every host's statistics, by host, and when they were asked for.
async fn sample(ctl: &Ctl) -> Result<(Instant, Vec<HostStats>), CtlError> {
    let nc = ctl.client.nats_client();
    let asked = Instant::now();
    let gathered = gather(
        &nc,
        &format!("wasmbus.ctl.v1.{}.trellis.stats", ctl.lattice),
    )
    .await;
    let answers = gathered.map_err(|reason| CtlError::Client {
        what: "top",
        reason,
    })?;
    if answers.is_empty() {
        return Err(CtlError::NoHost {
            lattice: ctl.lattice.clone(),
            url: ctl.url.clone(),
        });
    }
    Ok((asked, answers))
}

/// Publishes one request and keeps every answer that arrives within [`GATHER`].
async fn gather(nc: &nats::Client, subject: &str) -> Result<Vec<HostStats>, String> {
    let inbox = nc.new_inbox();
    let mut replies = nc
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    nc.publish_with_reply(subject.to_string(), inbox, "".into())
        .await
        .map_err(|e| e.to_string())?;
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + GATHER;
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        if let Ok(response) = serde_json::from_slice::<CtlResponse<HostStats>>(&reply.payload)
            && let Some(stats) = response.into_data()
        {
            answers.push(stats);
        }
    }
    Ok(answers)
}

/// The rows of the components in `after`, with rates and percentiles over `elapsed`.
fn rows(before: &[HostStats], after: &[HostStats], elapsed: Duration) -> Vec<Row> {
    let earlier: BTreeMap<(&str, &str), &ComponentStats> = before
        .iter()
        .flat_map(|host| {
            host.components
                .iter()
                .map(move |c| ((host.host_id.as_str(), c.id.as_str()), c))
        })
        .collect();
    let mut rows = Vec::new();
    for host in after {
        for component in &host.components {
            let previous = earlier.get(&(host.host_id.as_str(), component.id.as_str()));
            // A component restarted in between counts from zero.
            let previous = previous.filter(|p| p.calls() <= component.calls());
            let delta: Vec<u64> = component
                .duration_buckets
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    n - previous.map_or(0, |p| {
                        p.duration_buckets.get(i).copied().unwrap_or(0).min(*n)
                    })
                })
                .collect();
            let interval_calls = component.calls() - previous.map_or(0, |p| p.calls());
            rows.push(Row {
                host_id: host.host_id.clone(),
                host_name: host.friendly_name.clone(),
                component_id: component.id.clone(),
                calls: component.calls(),
                errors: component.failed.values().sum(),
                budget_stops: component.failed.get("budget").copied().unwrap_or(0),
                calls_per_second: interval_calls as f64 / elapsed.as_secs_f64().max(1e-3),
                p50_ms: percentile(&component.duration_bounds, &delta, 0.50),
                p99_ms: percentile(&component.duration_bounds, &delta, 0.99),
                instances_in_use: component.in_use,
                max_instances: component.max_instances,
            });
        }
    }
    rows.sort_by(|a, b| (&a.host_name, &a.component_id).cmp(&(&b.host_name, &b.component_id)));
    rows
}

/// The `q` quantile of a histogram (`counts` per bucket of upper `bounds`, then the rest), in
/// milliseconds, interpolated within its bucket as Prometheus's `histogram_quantile` does.
fn percentile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, count) in counts.iter().enumerate() {
        let next = seen + *count as f64;
        if next >= rank && *count > 0 {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let Some(upper) = bounds.get(i) else {
                return Some(lower * 1000.0);
            };
            return Some((lower + (upper - lower) * (rank - seen) / *count as f64) * 1000.0);
        }
        seen = next;
    }
    bounds.last().map(|b| b * 1000.0)
}

fn render(rows: &[Row]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.host_name.clone(),
                row.component_id.clone(),
                format!("{:.1}", row.calls_per_second),
                ms(row.p50_ms),
                ms(row.p99_ms),
                row.calls.to_string(),
                row.errors.to_string(),
                row.budget_stops.to_string(),
                format!("{}/{}", row.instances_in_use, row.max_instances),
            ]
        })
        .collect();
    table::render(
        &[
            "HOST",
            "COMPONENT",
            "CALLS/S",
            "P50 MS",
            "P99 MS",
            "CALLS",
            "ERRORS",
            "BUDGET",
            "INSTANCES",
        ],
        &lines,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_within_their_bucket() {
        let bounds = [0.001, 0.01, 0.1];
        // 10 calls ≤ 1 ms, 10 in (1, 10] ms.
        let counts = [10, 10, 0, 0];
        assert_eq!(percentile(&bounds, &counts, 0.5), Some(1.0));
        let p99 = percentile(&bounds, &counts, 0.99).unwrap();
        assert!((p99 - 9.82).abs() < 0.01, "{p99}");
        assert_eq!(percentile(&bounds, &[0, 0, 0, 0], 0.5), None);
        // Above every bound: the last bound.
        assert_eq!(percentile(&bounds, &[0, 0, 0, 3], 0.5), Some(100.0));
    }
}
