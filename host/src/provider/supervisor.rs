//! One task per external provider: resolves its executable, runs it, checks its health,
//! delivers link and config changes, restarts it with capped exponential backoff when it exits
//! or stops answering, and shuts it down when asked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::archive::{self, Executable};
use super::credentials;
use super::host_data::{
    self, HostData, HostDataParts, InterfaceLinkDefinition, LinkKey, merged_config, provider_links,
};
use super::process::ProviderProcess;
use super::{ExternalProviders, ProviderInfo};
use crate::secrets::{self, Entity};
use crate::state::HostState;
use trellis_deployer::wire::DEFAULT_LINK_NAME;

/// How often a started process is asked for its health until it first answers.
const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Why a provider process is no longer running.
enum Ended {
    /// Stopped on request; the supervisor ends.
    Stopped,
    /// Exited, stopped answering, or could not be respawned: restart it.
    Failed(String),
}

/// What woke the supervisor of a running process.
enum Wake {
    Exited(std::io::Result<std::process::ExitStatus>),
    Stop,
    Check,
    Links,
    Config,
}

/// A health check's outcome.
enum Health {
    Answer(bool),
    /// Answered, but not with `{"healthy": …}`: no event, state kept.
    Unparsable,
    NoAnswer,
}

pub struct Supervisor {
    state: Arc<HostState>,
    id: String,
    info: ProviderInfo,
    stop: watch::Receiver<bool>,
    /// The provider's XKey, kept across restarts so that its link subject stays the same.
    xkey: nkeys::XKey,
    /// Links as last delivered to the running process, by key.
    delivered: BTreeMap<LinkKey, InterfaceLinkDefinition>,
    /// Config as last delivered.
    config: BTreeMap<String, String>,
    /// The claims (JWT) of the provider archive, once read: who asks for its secrets.
    jwt: Option<String>,
}

impl Supervisor {
    pub fn new(
        state: Arc<HostState>,
        id: &str,
        info: ProviderInfo,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            state,
            id: id.to_string(),
            info,
            stop,
            xkey: nkeys::XKey::new(),
            delivered: BTreeMap::new(),
            config: BTreeMap::new(),
            jwt: None,
        }
    }

    fn external(&self) -> &ExternalProviders {
        &self.state.external
    }

    pub async fn run(mut self) {
        if self.info.image_ref.starts_with("file://")
            && let Err(refused) = self.state.files.check(&self.info.image_ref)
        {
            return self.start_failed(refused.to_string()).await;
        }
        let cache = self.external().settings.cache_dir.join(&self.state.host_id);
        let executable = match archive::resolve(&self.info.image_ref, &cache, &self.state.oci).await
        {
            Ok(executable) => executable,
            Err(error) => return self.start_failed(error.to_string()).await,
        };
        if let Some(claims) = &executable.claims {
            self.external().set_claims(&self.id, claims.clone());
            // Claims are informational (claims.get, wadm): a failed write does not stop the start.
            if let Err(error) = self.state.claims.put(&claims.stored()).await {
                tracing::warn!(provider = %self.id, "storing the provider's claims: {error}");
            }
        }
        let settings = self.external().settings.clone();
        let mut backoff = settings.restart_backoff;
        let mut restarts = 0u32;
        let mut last_failure: Option<String> = None;
        loop {
            let ended = match self.spawn(&executable).await {
                Ok((process, instance_id)) => {
                    match &last_failure {
                        None => self.started(&executable, &instance_id).await,
                        Some(reason) => self.restarted(&instance_id, restarts, reason).await,
                    }
                    let (ended, was_healthy) = self.watch(process).await;
                    let health = matches!(ended, Ended::Failed(_)).then_some(false);
                    self.state.metrics.provider_health(&self.id, health);
                    if was_healthy {
                        backoff = settings.restart_backoff;
                    }
                    ended
                }
                Err(error) if last_failure.is_none() => return self.start_failed(error).await,
                Err(error) => Ended::Failed(error),
            };
            let Ended::Failed(reason) = ended else { return };
            tracing::warn!(provider = %self.id, "provider {reason}; restarting in {backoff:?}");
            let stopped = tokio::select! {
                () = tokio::time::sleep(backoff) => false,
                _ = self.stop.wait_for(|stop| *stop) => true,
            };
            if stopped {
                self.state.metrics.provider_health(&self.id, None);
                return;
            }
            backoff = (backoff * 2).min(settings.restart_backoff_max);
            restarts += 1;
            last_failure = Some(reason);
        }
    }

    /// Starts a process with the current links, config and secrets; returns it and its
    /// instance ID.
    async fn spawn(
        &mut self,
        executable: &Executable,
    ) -> Result<(ProviderProcess, String), String> {
        self.jwt = executable.claims.as_ref().map(|claims| claims.jwt.clone());
        let secrets = self
            .state
            .secrets
            .fetch(&self.info.config, &self.state.config, &self.entity())
            .await
            .map_err(|e| e.to_string())?;
        self.delivered = provider_links(&self.id, &self.state.links.links(), &self.state.config);
        let mut links = Vec::new();
        for link in self.delivered.values() {
            // A link whose secrets cannot be had is left out, as a later put of it would be.
            if let Some(link) = self.sealed(link).await {
                links.push(link);
            }
        }
        self.config = merged_config(&self.info.config, &self.state.config);
        let credentials =
            credentials::for_providers(&self.external().auth).map_err(|e| e.to_string())?;
        if credentials.seed_only() {
            tracing::warn!(provider = %self.id, "the host joined NATS with an nkey seed only; providers built with wasmcloud-provider-sdk 0.17 need a user JWT as well (--nats-creds) and may be refused by the server");
        }
        let host_data = HostData::new(HostDataParts {
            host_id: self.state.host_id.clone(),
            lattice: self.state.lattice.clone(),
            nats_url: self.state.nats_url.clone(),
            provider_id: self.id.clone(),
            links,
            config: self.config.clone(),
            secrets,
            host_xkey_public_key: self.external().host_xkey.public_key(),
            provider_xkey_seed: self.xkey.seed().map_err(|e| e.to_string())?,
            rpc_timeout_ms: self.external().rpc_timeout.as_millis() as u64,
            credentials,
            log_level: host_data::log_level(),
            otel_config: self.external().otel_config.clone(),
        });
        let line = host_data.encode().map_err(|e| e.to_string())?;
        let process = ProviderProcess::spawn(&executable.path, line, &self.id)
            .map_err(|e| format!("running {}: {e}", executable.path.display()))?;
        tracing::info!(provider = %self.id, pid = process.pid(), instance = %host_data.instance_id, links = self.delivered.len(), "provider process started");
        Ok((process, host_data.instance_id))
    }

    /// Runs until the process ends or a stop is requested; also reports whether it was
    /// healthy at some point.
    async fn watch(&mut self, mut process: ProviderProcess) -> (Ended, bool) {
        let settings = self.external().settings.clone();
        let mut links = self.state.links.subscribe();
        let mut config = self.state.config.subscribe();
        links.borrow_and_update();
        config.borrow_and_update();
        // Changes between the HostData snapshot and the subscriptions above.
        self.sync_links().await;
        self.sync_config().await;
        let spawned = Instant::now();
        let mut checks =
            tokio::time::interval_at(spawned + settings.health_interval, settings.health_interval);
        checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Until a new process first answers, it is probed often, so that it is reported healthy
        // as soon as it serves rather than one full health interval after its start.
        let mut startup_probes = tokio::time::interval(STARTUP_PROBE_INTERVAL);
        startup_probes.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut healthy = false;
        let mut was_healthy = false;
        let mut answered = false;
        let mut missed = 0u32;
        loop {
            let wake = tokio::select! {
                status = process.wait() => Wake::Exited(status),
                _ = self.stop.wait_for(|stop| *stop) => Wake::Stop,
                _ = checks.tick() => Wake::Check,
                _ = startup_probes.tick(),
                    if !answered && spawned.elapsed() < settings.startup_grace => Wake::Check,
                Ok(()) = links.changed() => Wake::Links,
                Ok(()) = config.changed() => Wake::Config,
            };
            match wake {
                Wake::Exited(status) => {
                    let reason = match status {
                        Ok(status) => format!("exited ({status})"),
                        Err(error) => format!("could not be waited for: {error}"),
                    };
                    process.kill().await;
                    return (Ended::Failed(reason), was_healthy);
                }
                Wake::Stop => {
                    self.shutdown(&mut process).await;
                    return (Ended::Stopped, was_healthy);
                }
                Wake::Check => match self.check_health(settings.health_timeout).await {
                    Health::NoAnswer => {
                        if answered || spawned.elapsed() >= settings.startup_grace {
                            missed += 1;
                        }
                        if missed >= settings.missed_health_checks.max(1) {
                            process.kill().await;
                            let reason =
                                format!("stopped answering health checks ({missed} missed)");
                            return (Ended::Failed(reason), was_healthy);
                        }
                    }
                    answer => {
                        if !answered {
                            // The one-time config update the reference host sends after a
                            // start. Sent right after the spawn it would reach no one (the SDK
                            // subscribes only once it has connected); the first health answer
                            // shows it is listening.
                            self.send_config().await;
                        }
                        (answered, missed) = (true, 0);
                        let Health::Answer(now) = answer else {
                            continue;
                        };
                        let event = match (healthy, now) {
                            (false, true) => "health_check_passed",
                            (true, false) => "health_check_failed",
                            _ => "health_check_status",
                        };
                        healthy = now;
                        was_healthy |= now;
                        self.state.metrics.provider_health(&self.id, Some(now));
                        let data = json!({ "host_id": self.state.host_id, "provider_id": self.id });
                        self.state.events.publish(event, data).await;
                    }
                },
                Wake::Links => self.sync_links().await,
                Wake::Config => {
                    self.sync_config().await;
                    // Links carry resolved config too.
                    self.sync_links().await;
                }
            }
        }
    }

    async fn check_health(&self, timeout: Duration) -> Health {
        #[derive(Deserialize)]
        struct Answer {
            healthy: bool,
        }
        let subject = format!("wasmbus.rpc.{}.{}.health", self.state.lattice, self.id);
        let request = self.external().nats.request(subject, Bytes::new());
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(reply)) => match serde_json::from_slice::<Answer>(&reply.payload) {
                Ok(answer) => Health::Answer(answer.healthy),
                Err(_) => Health::Unparsable,
            },
            _ => Health::NoAnswer,
        }
    }

    /// Sends links that are new or changed since the last delivery to the provider's XKey
    /// subject, and deletions of links that went away to its ID subject.
    async fn sync_links(&mut self) {
        let current = provider_links(&self.id, &self.state.links.links(), &self.state.config);
        let lattice = &self.state.lattice;
        let put = format!(
            "wasmbus.rpc.{lattice}.{}.linkdefs.put",
            self.xkey.public_key()
        );
        let del = format!("wasmbus.rpc.{lattice}.{}.linkdefs.del", self.id);
        let puts = current
            .iter()
            .filter(|(key, link)| self.delivered.get(*key) != Some(*link))
            .map(|(_, link)| (&put, link));
        let dels = self
            .delivered
            .iter()
            .filter(|(key, _)| !current.contains_key(*key))
            .map(|(_, link)| (&del, link));
        for (subject, link) in puts.chain(dels) {
            tracing::debug!(provider = %self.id, %subject, source = %link.source_id, target = %link.target, "delivering link change");
            if *subject == put {
                if let Some(link) = self.sealed(link).await {
                    self.publish(subject, &link).await;
                }
            } else {
                self.publish(subject, link).await;
            }
        }
        self.delivered = current;
    }

    /// Who asks the secrets backends for this provider's secrets.
    fn entity(&self) -> Entity<'_> {
        Entity {
            describe: format!("provider `{}`", self.id),
            jwt: Ok(self.jwt.as_deref()),
            application: self
                .info
                .annotations
                .get(secrets::APPSPEC)
                .map(String::as_str),
        }
    }

    /// `link` with each side's secrets fetched and sealed for this provider; `None` (and a
    /// warning naming the secret) when one cannot be fetched.
    async fn sealed(&self, link: &InterfaceLinkDefinition) -> Option<InterfaceLinkDefinition> {
        let (source, target) = &link.secret_names;
        if source.is_empty() && target.is_empty() {
            return Some(link.clone());
        }
        let sealed = async {
            let mut link = link.clone();
            link.source_secrets = self.seal(source).await?;
            link.target_secrets = self.seal(target).await?;
            anyhow::Ok(link)
        };
        match sealed.await {
            Ok(link) => Some(link),
            Err(error) => {
                tracing::warn!(provider = %self.id, source = %link.source_id, target = %link.target, "link not delivered: {error:#}");
                None
            }
        }
    }

    /// The secrets `names` refer to, as the JSON map sealed by the host's XKey for the
    /// provider's; `None` for no names.
    async fn seal(&self, names: &[String]) -> anyhow::Result<Option<Vec<u8>>> {
        if names.is_empty() {
            return Ok(None);
        }
        let state = &self.state;
        let secrets = state
            .secrets
            .fetch(names, &state.config, &self.entity())
            .await?;
        let mut json = serde_json::to_vec(&secrets)?;
        let sealed = self.external().host_xkey.seal(&json, &self.xkey);
        zeroize::Zeroize::zeroize(&mut json);
        Ok(Some(sealed.map_err(|e| {
            anyhow::anyhow!("sealing the secrets: {e}")
        })?))
    }

    /// Sends the provider's merged config when it changed.
    async fn sync_config(&mut self) {
        if merged_config(&self.info.config, &self.state.config) != self.config {
            self.send_config().await;
        }
    }

    /// Sends the provider's current merged config.
    async fn send_config(&mut self) {
        self.config = merged_config(&self.info.config, &self.state.config);
        let subject = format!(
            "wasmbus.rpc.{}.{}.config.update",
            self.state.lattice, self.id
        );
        self.publish(&subject, &self.config).await;
    }

    async fn publish(&self, subject: &str, body: &impl serde::Serialize) {
        let nats = &self.external().nats;
        let sent = match serde_json::to_vec(body) {
            Ok(body) => nats
                .publish(subject.to_string(), body.into())
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = sent {
            tracing::warn!(provider = %self.id, %subject, "sending to the provider: {error}");
        }
    }

    /// The reference shutdown request, a bounded wait for the exit, then a kill of whatever is
    /// left in the provider's process group.
    async fn shutdown(&self, process: &mut ProviderProcess) {
        let timeout = self.external().settings.shutdown_timeout;
        let subject = format!(
            "wasmbus.rpc.{}.{}.default.shutdown",
            self.state.lattice, self.id
        );
        let body = json!({ "host_id": self.state.host_id }).to_string();
        let request = self.external().nats.request(subject, body.into());
        if !matches!(tokio::time::timeout(timeout, request).await, Ok(Ok(_))) {
            tracing::warn!(provider = %self.id, "provider did not answer the shutdown request");
        }
        if tokio::time::timeout(timeout, process.wait()).await.is_err() {
            tracing::warn!(provider = %self.id, "provider did not exit within {timeout:?}; killing it");
        }
        process.kill().await;
        tracing::info!(provider = %self.id, "provider process stopped");
    }

    async fn started(&self, executable: &Executable, instance_id: &str) {
        let mut data = json!({
            "host_id": self.state.host_id,
            "image_ref": super::reported_ref(&self.info.image_ref),
            "provider_id": self.id,
            "annotations": self.info.annotations,
            "instance_id": self.id,
            "public_key": self.id,
            "link_name": DEFAULT_LINK_NAME,
        });
        if let Some(claims) = &executable.claims {
            data["claims"] = json!(claims);
        }
        tracing::info!(provider = %self.id, instance = instance_id, "provider started");
        self.state.events.publish("provider_started", data).await;
    }

    async fn restarted(&self, instance_id: &str, restarts: u32, reason: &str) {
        self.state.metrics.provider_restarted(&self.id);
        let data = json!({
            "host_id": self.state.host_id,
            "provider_id": self.id,
            "image_ref": super::reported_ref(&self.info.image_ref),
            "instance_id": instance_id,
            "restarts": restarts,
            "reason": reason,
        });
        self.state.events.publish("provider_restarted", data).await;
    }

    async fn start_failed(&self, error: String) {
        tracing::warn!(provider = %self.id, "provider failed to start: {error}");
        self.external().forget(&self.id);
        let data = json!({
            "provider_ref": self.info.image_ref,
            "provider_id": self.id,
            "host_id": self.state.host_id,
            "error": error,
            "link_name": DEFAULT_LINK_NAME,
        });
        self.state
            .events
            .publish("provider_start_failed", data)
            .await;
    }
}
