//! The wadm API: `wadm.api.{lattice}.model.{put,get,list,versions,del,deploy,undeploy,status,
//! history}[.{name}]`, answered with wadm's reply shapes (`{"result": …}`), on queue group
//! `wadm_server`. Manifests go to the [`ManifestStore`]; deploys and undeploys go on to the
//! reconciler.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::manifest::{self, Source, VERSION_ANNOTATION};
use crate::spec::AppSpec;
use crate::status::{Status, StatusInfo, StatusType};
use crate::store::{ManifestStore, StoreError, StoredApp};
use crate::worker::{Msg, Statuses};

pub fn prefix(lattice: &str) -> String {
    format!("wadm.api.{lattice}.model")
}

/// Serves the API for one lattice.
pub struct Api {
    pub store: ManifestStore,
    pub statuses: Statuses,
    pub worker: mpsc::Sender<Msg>,
    pub nats: async_nats::Client,
    pub lattice: String,
}

fn error(message: impl Into<String>) -> Value {
    json!({"result": "error", "message": message.into()})
}

/// wadm's words for an application it does not have.
fn not_found(name: &str) -> String {
    format!("Application with the name {name} not found")
}

fn store_error(e: StoreError) -> Value {
    error(e.to_string())
}

/// `{"version": "…"}` from a request body, if any.
fn requested_version(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(payload)
        .ok()?
        .get("version")?
        .as_str()
        .map(str::to_string)
}

/// A new version string: a ULID (48-bit milliseconds, 80 random bits, Crockford base32).
pub fn new_version() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u128;
    let value = (millis << 80) | (fastrand::u128(..) & ((1u128 << 80) - 1));
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

impl Api {
    /// Answers one request.
    pub async fn respond(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Value {
        let Some(rest) = subject.strip_prefix(&format!("{}.", prefix(&self.lattice))) else {
            return error(format!("Unsupported subject: {subject}"));
        };
        let mut tokens = rest.split('.');
        let (op, name) = (tokens.next().unwrap_or_default(), tokens.next());
        if tokens.next().is_some() {
            return error(format!("Invalid subject: {subject}"));
        }
        match (op, name) {
            ("put", None) => self.put(headers, payload).await,
            ("get", Some(name)) => self.get(name, payload).await,
            ("get", None) => match self.summaries().await {
                Ok(models) => {
                    json!({"result": "success", "message": "Successfully fetched list of applications", "models": models})
                }
                Err(e) => store_error(e),
            },
            ("list", None) => match self.summaries().await {
                Ok(models) => Value::Array(models),
                Err(e) => store_error(e),
            },
            ("versions", Some(name)) => self.versions(name).await,
            ("del", Some(name)) => self.delete(name, payload).await,
            ("deploy", Some(name)) => self.deploy(name, payload).await,
            ("undeploy", Some(name)) => self.undeploy(name).await,
            ("status", Some(name)) => {
                let status = self.status(name);
                let message = format!("Successfully fetched status for application {name}");
                json!({"result": "ok", "message": message, "status": status})
            }
            ("history", Some(_)) => error(
                "Model deployment history is not currently supported. It may be added in a \
                 future version",
            ),
            _ => error(format!("Unsupported subject: {subject}")),
        }
    }

    fn status(&self, name: &str) -> Status {
        let statuses = self.statuses.read().unwrap_or_else(|e| e.into_inner());
        statuses.get(name).cloned().unwrap_or_default()
    }

    async fn put(&self, headers: Option<&HeaderMap>, payload: &[u8]) -> Value {
        let content_type = headers
            .and_then(|h| h.get("Content-Type"))
            .map(|v| v.as_str().to_string());
        let document = match content_type.as_deref() {
            Some("application/json") => serde_json::from_slice(payload)
                .map_err(|e| format!("Unable to parse manifest: {e}")),
            None | Some("application/yaml") => {
                manifest::document(payload).map_err(|e| format!("Unable to parse manifest: {e}"))
            }
            Some(other) => Err(format!("Unsupported content type: {other}")),
        };
        let mut document = match document {
            Ok(d) => d,
            Err(message) => return error(message),
        };
        let parsed = match manifest::from_document(document.clone()) {
            Ok(p) => p,
            Err(rejection) => return error(rejection.to_string()),
        };
        let name = parsed.manifest.name.clone();
        let version = match parsed.manifest.version() {
            Some(v) => v.to_string(),
            None => {
                let v = new_version();
                document["metadata"]["annotations"][VERSION_ANNOTATION] = Value::String(v.clone());
                v
            }
        };
        let result = self
            .store
            .update_app(&name, |stored: &mut StoredApp| {
                if stored.get(&version).is_some() {
                    return Some(Err(format!("Manifest version {version} already exists")));
                }
                let previous = stored
                    .latest()
                    .map(|(v, _)| v.to_string())
                    .unwrap_or_default();
                let first = stored.manifests.0.is_empty();
                stored.manifests.0.push((version.clone(), document.clone()));
                Some(Ok((first, previous, stored.manifests.0.len())))
            })
            .await;
        match result {
            Ok(Some(Ok((first, previous, total)))) => {
                let result = if first { "created" } else { "newversion" };
                let message = format!("Successfully put manifest {name} {previous}");
                put_reply(result, total, &version, message.trim_end(), &name)
            }
            Ok(Some(Err(message))) => error(message),
            Ok(None) => error("nothing stored"),
            Err(e) => store_error(e),
        }
    }

    async fn get(&self, name: &str, payload: &[u8]) -> Value {
        let stored = match self.store.app(name).await {
            Ok(Some(s)) => s,
            Ok(None) => return json!({"result": "notfound", "message": not_found(name)}),
            Err(e) => return store_error(e),
        };
        let version = requested_version(payload);
        let (manifest, fetched) = match &version {
            Some(v) => (
                stored.get(v).cloned(),
                format!("Successfully fetched application {name} {v}"),
            ),
            None => (
                stored.latest().map(|(_, m)| m.clone()),
                format!("Successfully fetched application {name}"),
            ),
        };
        match manifest {
            Some(m) => json!({"result": "success", "message": fetched, "manifest": m}),
            None => {
                let v = version.unwrap_or_default();
                json!({"result": "notfound", "message": format!("Application {name} with version {v} doesn't exist")})
            }
        }
    }

    async fn summaries(&self) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        for name in self.store.names().await? {
            let Some(stored) = self.store.app(&name).await? else {
                continue;
            };
            let Some((version, latest)) = stored.latest() else {
                continue;
            };
            let description = latest["metadata"]["annotations"]["description"].as_str();
            let status = self
                .statuses
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
            // What wadm lists for an app it has published no status of, deployed or not.
            let detailed = status.unwrap_or_else(|| Status {
                status: StatusInfo::new(
                    StatusType::Waiting,
                    "Waiting for status: Lattice contains no hosts, deployment not started.",
                ),
                ..Status::default()
            });
            let legacy = match detailed.status.status_type {
                StatusType::Waiting => StatusType::Undeployed,
                other => other,
            };
            out.push(json!({
                "name": name,
                "version": version,
                "description": description,
                "deployed_version": stored.deployed_version,
                "detailed_status": detailed,
                "status": legacy,
                "status_message": detailed.status.message,
            }));
        }
        Ok(out)
    }

    async fn versions(&self, name: &str) -> Value {
        match self.store.app(name).await {
            Ok(Some(stored)) => {
                let versions: Vec<Value> = stored
                    .manifests
                    .0
                    .iter()
                    .map(|(v, _)| json!({"version": v, "deployed": stored.deployed_version.as_deref() == Some(v)}))
                    .collect();
                json!({"result": "success", "message": format!("Successfully fetched versions for application {name}"), "versions": versions})
            }
            Ok(None) => {
                json!({"result": "notfound", "message": not_found(name), "versions": []})
            }
            Err(e) => store_error(e),
        }
    }

    async fn delete(&self, name: &str, payload: &[u8]) -> Value {
        let version = requested_version(payload);
        let mut existed = false;
        let removed = self
            .store
            .update_app(name, |stored: &mut StoredApp| {
                let before = stored.manifests.0.len();
                existed = before > 0;
                let deployed = stored.deployed_version.clone();
                let undeploy = match &version {
                    Some(v) => deployed.as_ref() == Some(v),
                    None => deployed.is_some(),
                };
                // Before the version goes: the cleanup needs its manifest.
                if undeploy {
                    stored.undeploy();
                }
                match &version {
                    Some(v) => stored.manifests.0.retain(|(k, _)| k != v),
                    None => stored.manifests.0.clear(),
                }
                if stored.manifests.0.len() == before {
                    return None;
                }
                let left = stored.manifests.0.len();
                Some((undeploy.then(|| stored.undeploying.clone()).flatten(), left))
            })
            .await;
        // The reply says what wadm's says; `undeploy` there also means "all of it is gone".
        match removed {
            Ok(Some((undeploying, left))) => {
                let was_deployed = undeploying.is_some();
                if let Some(last) = undeploying {
                    self.send(Msg::Undeploy {
                        name: name.to_string(),
                        last: spec_of(&last.version, &last.manifest).map(Box::new),
                    })
                    .await;
                }
                let (message, undeploy) = match &version {
                    None => (format!("Successfully deleted application {name}"), true),
                    Some(_) if left == 0 => (
                        format!("Successfully deleted last version of application {name}"),
                        true,
                    ),
                    Some(v) => (
                        format!("Successfully deleted version {v} of application {name}"),
                        was_deployed,
                    ),
                };
                json!({"result": "deleted", "message": message, "undeploy": undeploy})
            }
            Ok(None) => {
                let message = match &version {
                    Some(v) if existed => format!("Application version {v} doesn't exist"),
                    _ => format!("Application {name} doesn't exist or was already deleted"),
                };
                json!({"result": "noop", "message": message, "undeploy": false})
            }
            Err(e) => json!({"result": "error", "message": e.to_string(), "undeploy": false}),
        }
    }

    async fn deployed_spec(&self, name: &str) -> Option<AppSpec> {
        let stored = self.store.app(name).await.ok()??;
        let (version, document) = stored.deployed()?;
        spec_of(version, document)
    }

    async fn deploy(&self, name: &str, payload: &[u8]) -> Value {
        let reply = |result: &str, message: String, version: Option<&str>| json!({"result": result, "message": message, "name": name, "version": version});
        let stored = match self.store.app(name).await {
            Ok(Some(s)) => s,
            Ok(None) => return reply("notfound", not_found(name), None),
            Err(e) => return reply("error", e.to_string(), None),
        };
        let version = match requested_version(payload).filter(|v| v != "latest") {
            Some(v) => v,
            None => match stored.latest() {
                Some((v, _)) => v.to_string(),
                None => return reply("notfound", not_found(name), None),
            },
        };
        let Some(document) = stored.get(&version) else {
            return reply(
                "error",
                format!(
                    "Application with the name '{name}' does not have a version '{version}' to deploy"
                ),
                Some(&version),
            );
        };
        let parsed = match manifest::from_document(document.clone()) {
            Ok(p) => p,
            Err(e) => return reply("error", e.to_string(), Some(&version)),
        };
        let spec = AppSpec::new(&parsed.manifest, &version);
        if let Err(message) = self.check_ids(name, &parsed.manifest).await {
            return reply("error", message, Some(&version));
        }
        if let Err(message) = self.check_shared(&parsed.manifest).await {
            return reply("error", message, Some(&version));
        }
        let written = self
            .store
            .update_app(name, |s: &mut StoredApp| {
                s.deployed_version = Some(version.clone());
                Some(())
            })
            .await;
        if let Err(e) = written {
            return reply("error", e.to_string(), Some(&version));
        }
        self.send(Msg::Deploy(Box::new(spec))).await;
        let event = json!({"specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(), "type": "com.wadm.manifest_published", "source": "wadm", "datacontenttype": "application/json", "data": document});
        let subject = format!("wadm.evt.{}.manifest_published", self.lattice);
        if let Err(e) = self.nats.publish(subject, event.to_string().into()).await {
            tracing::debug!("publishing manifest_published: {e}");
        }
        reply(
            "acknowledged",
            format!("Successfully deployed application {name} {version}"),
            Some(&version),
        )
    }

    /// Explicit IDs must not be used by another deployed app.
    async fn check_ids(&self, name: &str, m: &manifest::Manifest) -> Result<(), String> {
        let ids: Vec<&String> = m.components.iter().filter_map(|c| c.id.as_ref()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        for other in self.store.names().await.map_err(|e| e.to_string())? {
            if other == name {
                continue;
            }
            if let Some(spec) = self.deployed_spec(&other).await
                && let Some(id) = ids
                    .iter()
                    .find(|id| spec.workloads.iter().any(|w| &w.id == **id))
            {
                return Err(format!(
                    "Component identifier '{id}' is already deployed in a different application '{other}'."
                ));
            }
        }
        Ok(())
    }

    /// Shared references must point at components of deployed, shared applications.
    async fn check_shared(&self, m: &manifest::Manifest) -> Result<(), String> {
        let mut deployed = BTreeMap::new();
        for c in &m.components {
            if let Source::Application { name, .. } = &c.source
                && !deployed.contains_key(name)
                && let Some(stored) = self.store.app(name).await.map_err(|e| e.to_string())?
                && let Some((_, document)) = stored.deployed()
                && let Ok(parsed) = manifest::from_document(document.clone())
            {
                deployed.insert(name.clone(), parsed.manifest);
            }
        }
        let problems = manifest::validate::shared_references(m, &deployed);
        if problems.is_empty() {
            return Ok(());
        }
        let problems: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.reason))
            .collect();
        Err(format!(
            "Application contains shared components that are not deployed in other \
             applications: [{}]",
            problems.join("; ")
        ))
    }

    async fn undeploy(&self, name: &str) -> Value {
        match self.store.record(name).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return json!({"result": "notfound", "message": not_found(name), "name": name, "version": null});
            }
            Err(e) => return error(e.to_string()),
        }
        // The intent is stored first, so that whichever deployer is active finishes it.
        let written = self
            .store
            .update_app(name, |s: &mut StoredApp| {
                s.undeploy()?;
                s.undeploying.clone()
            })
            .await;
        let (last, message) = match written {
            Ok(Some(undeploying)) => (
                spec_of(&undeploying.version, &undeploying.manifest).map(Box::new),
                format!("Successfully undeployed application {name}"),
            ),
            // Sent on anyway, as wadm does: whatever a failed earlier undeploy left is removed.
            Ok(None) => (None, format!("Application {name} was already undeployed")),
            Err(e) => return error(e.to_string()),
        };
        self.send(Msg::Undeploy {
            name: name.to_string(),
            last,
        })
        .await;
        let event = json!({"specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(), "type": "com.wadm.manifest_unpublished", "source": "wadm", "datacontenttype": "application/json", "data": {"name": name}});
        let subject = format!("wadm.evt.{}.manifest_unpublished", self.lattice);
        if let Err(e) = self.nats.publish(subject, event.to_string().into()).await {
            tracing::debug!("publishing manifest_unpublished: {e}");
        }
        json!({"result": "acknowledged", "message": message, "name": name, "version": null})
    }

    async fn send(&self, msg: Msg) {
        if self.worker.send(msg).await.is_err() {
            tracing::error!("the reconciler has stopped");
        }
    }
}

fn put_reply(result: &str, total: usize, version: &str, message: &str, name: &str) -> Value {
    json!({
        "result": result,
        "total_versions": total,
        "current_version": version,
        "message": message,
        "name": name,
    })
}

/// The lattice spec of a stored manifest version.
fn spec_of(version: &str, document: &Value) -> Option<AppSpec> {
    let parsed = manifest::from_document(document.clone()).ok()?;
    Some(AppSpec::new(&parsed.manifest, version))
}

/// Apps whose undeploy was stored but whose cleanup was never confirmed (the deployer that
/// began it stopped or failed over), with the version to clean up.
pub async fn pending_undeploys(
    store: &ManifestStore,
) -> Result<Vec<(String, Option<AppSpec>)>, StoreError> {
    let mut out = Vec::new();
    for name in store.names().await? {
        if let Some(stored) = store.record(&name).await?
            && let Some(u) = stored.undeploying
        {
            out.push((name, spec_of(&u.version, &u.manifest)));
        }
    }
    Ok(out)
}

/// Loads every deployed app for the reconciler (after a restart).
pub async fn deployed_apps(store: &ManifestStore) -> Result<Vec<AppSpec>, StoreError> {
    let mut out = Vec::new();
    for name in store.names().await? {
        if let Some(stored) = store.app(&name).await?
            && let Some((version, document)) = stored.deployed()
        {
            match manifest::from_document(document.clone()) {
                Ok(parsed) => out.push(AppSpec::new(&parsed.manifest, version)),
                Err(e) => tracing::error!(app = name, "stored manifest no longer valid: {e}"),
            }
        }
    }
    Ok(out)
}
