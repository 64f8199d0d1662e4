//! The application `trellis dev` runs the developed component in, and how a new build replaces
//! the running one.
//!
//! The application is the `--manifest` given, or one made up for the component (the component,
//! and the built-in HTTP server linked to it when it exports `wasi:http/incoming-handler`).
//! Each build is copied to a file of its own (`builds/NAME-N.wasm`: the host reads the file
//! after the build tool may have started writing the next one, and an update needs a new
//! reference), and the application is deployed again with only that component's image changed,
//! as version `…-dev.N`, so that the deployer agrees with what runs.
//!
//! The code itself is swapped by a `component.update` to the host, sent with the annotations
//! the deployer gives the new version: the host swaps code in place (calls in flight finish on
//! the old code, new ones get the new code, the HTTP route keeps answering). Left to the
//! deployer alone, the new image would change the component's scaler annotation, which the
//! host carries out as a stop and a start before the update: requests would fail in between.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use trellis_deployer::client::WadmClient;
use trellis_deployer::spec::{AppSpec, SCALER, sanitize};
use trellis_deployer::wire::UpdateComponentCommand;

use crate::platform::Platform;

/// How long a swap may take to show in the lattice's events.
const SWAP_WAIT: Duration = Duration::from_secs(60);

/// Where the HTTP server listens when no manifest says.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8000";

/// The application around the developed component, and the build it runs.
pub struct DevApp {
    client: WadmClient,
    nats: async_nats::Client,
    lattice: String,
    host_id: String,
    /// The manifest, file references absolute; the developed component's image is replaced
    /// for each deployment.
    document: Value,
    /// The developed component's index in `spec.components`, and its lattice ID.
    index: usize,
    pub component_id: String,
    pub name: String,
    version: String,
    builds: PathBuf,
    revision: u32,
    /// The digest of the code running now, and its reference.
    running: Option<[u8; 32]>,
    running_ref: String,
}

/// What happened to a build.
pub enum Swap {
    /// The new code serves.
    Swapped,
    /// The build made the same component as the one running.
    Unchanged,
}

impl DevApp {
    /// Prepares the application: from `manifest` (its component `component`, or the one whose
    /// image is `wasm`, or its only component) or made up for `name`. `serves_http` says whether
    /// the made-up one gets an HTTP server on `address`. Builds are kept under `session`.
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        platform: &Platform,
        manifest: Option<&Path>,
        component: Option<&str>,
        name: &str,
        wasm: &Path,
        serves_http: bool,
        address: &str,
        session: &Path,
    ) -> anyhow::Result<Self> {
        let cwd = std::env::current_dir().context("finding the current directory")?;
        let document = match manifest {
            Some(path) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let mut document = trellis_deployer::manifest::document(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                // Relative `file://./…` images resolve from the current directory, as for
                // `trellis app deploy`.
                trellis_deployer::cli::absolutize_file_refs(&mut document, &cwd);
                document
            }
            None => made_up(name, serves_http, address),
        };
        let index = developed(&document, component, wasm)?;
        let parsed = trellis_deployer::manifest::from_document(document.clone())
            .map_err(|e| anyhow::anyhow!("the manifest: {e}"))?;
        let component_name = document["spec"]["components"][index]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let component_id = parsed
            .manifest
            .component(&component_name)
            .map(|c| trellis_deployer::spec::component_id(&parsed.manifest.name, c))
            .context("the developed component is not in the manifest")?;
        let version = parsed.manifest.version().unwrap_or("v0.0.0").to_string();
        let builds = session.join("builds");
        std::fs::create_dir_all(&builds)
            .with_context(|| format!("creating {}", builds.display()))?;
        let nats = platform.nats("trellis dev").await?;
        Ok(Self {
            client: WadmClient::new(nats.clone(), &platform.lattice),
            nats,
            lattice: platform.lattice.clone(),
            host_id: platform.host_id().to_string(),
            document,
            index,
            component_id,
            name: parsed.manifest.name.clone(),
            version,
            builds,
            revision: 0,
            running: None,
            running_ref: String::new(),
        })
    }

    /// Deploys the application with the first build and waits for it to be deployed; returns
    /// the addresses its HTTP servers listen on.
    pub async fn deploy_first(&mut self, wasm: &Path) -> anyhow::Result<Vec<String>> {
        let (bytes, digest) = read(wasm)?;
        let (reference, _) = self.snapshot(&bytes)?;
        self.deploy(&reference).await?;
        crate::up::wait_deployed(&self.client, &self.name).await?;
        self.running = Some(digest);
        self.running_ref = reference;
        let manifest = serde_json::to_string(&self.document)?;
        Ok(crate::up::http_addresses(&manifest))
    }

    /// Puts a new build in place of the running one (see the module documentation). When the
    /// host cannot run it, the application is deployed again with the build that runs, so that
    /// the deployer does not keep trying.
    pub async fn swap(&mut self, wasm: &Path) -> anyhow::Result<Swap> {
        let (bytes, digest) = read(wasm)?;
        if self.running == Some(digest) {
            return Ok(Swap::Unchanged);
        }
        let (reference, version) = self.snapshot(&bytes)?;
        match self.update(&reference, &version).await {
            Ok(()) => {
                self.running = Some(digest);
                self.running_ref = reference;
                Ok(Swap::Swapped)
            }
            Err(error) => {
                let previous = self.running_ref.clone();
                self.revision += 1;
                self.set_image(&previous);
                if let Err(again) = self.deploy(&previous).await {
                    tracing::warn!("deploying the running build again: {again:#}");
                }
                Err(error)
            }
        }
    }

    /// Deploys the document (with `reference` as `version`) and has the host swap the code.
    async fn update(&self, reference: &str, version: &str) -> anyhow::Result<()> {
        let subject = |name: &str| format!("wasmbus.evt.{}.{name}", self.lattice);
        let mut scaled = self.nats.subscribe(subject("component_scaled")).await?;
        let mut failed = self
            .nats
            .subscribe(subject("component_scale_failed"))
            .await?;
        let annotations = self.annotations(version).await?;
        self.deploy(reference).await?;
        let command = UpdateComponentCommand {
            component_id: self.component_id.clone(),
            annotations: Some(annotations),
            new_component_ref: reference.to_string(),
        };
        let request = format!(
            "wasmbus.ctl.v1.{}.component.update.{}",
            self.lattice, self.host_id
        );
        let reply = self
            .nats
            .request(request, serde_json::to_vec(&command)?.into())
            .await
            .context("asking the host to update the component")?;
        let reply: Value = serde_json::from_slice(&reply.payload)?;
        if reply["success"] != true {
            anyhow::bail!("the host refused the update: {}", reply["message"]);
        }
        let ours = |payload: &[u8]| {
            let event: Value = serde_json::from_slice(payload).unwrap_or_default();
            let data = &event["data"];
            (data["component_id"] == self.component_id.as_str() && data["image_ref"] == reference)
                .then(|| data.clone())
        };
        let outcome = async {
            loop {
                tokio::select! {
                    Some(message) = scaled.next() => {
                        if ours(&message.payload).is_some() {
                            return Ok(());
                        }
                    }
                    Some(message) = failed.next() => {
                        if let Some(data) = ours(&message.payload) {
                            anyhow::bail!("{}", data["error"].as_str().unwrap_or("the update failed"));
                        }
                    }
                    else => anyhow::bail!("the lattice's events stopped"),
                }
            }
        };
        tokio::time::timeout(SWAP_WAIT, outcome)
            .await
            .with_context(|| format!("the host did not swap the component within {SWAP_WAIT:?}"))?
    }

    /// Undeploys and deletes the application (when `dev` joined a lattice that outlives it).
    pub async fn remove(&self) {
        let _ = self.client.undeploy(&self.name).await;
        let _ = self.client.delete(&self.name, None).await;
    }

    /// Copies a build to a file of its own and puts it in the document; its reference and the
    /// version the document is deployed as.
    fn snapshot(&mut self, bytes: &[u8]) -> anyhow::Result<(String, String)> {
        self.revision += 1;
        let path = self.builds.join(format!(
            "{}-{}.wasm",
            sanitize(&self.component_id),
            self.revision
        ));
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        let reference = format!("file://{}", path.display());
        let version = self.set_image(&reference);
        Ok((reference, version))
    }

    /// Puts `reference` in the document as this revision's version; returns the version.
    fn set_image(&mut self, reference: &str) -> String {
        let version = format!("{}-dev.{}", self.version, self.revision);
        self.document["spec"]["components"][self.index]["properties"]["image"] =
            Value::String(reference.to_string());
        self.document["metadata"]["annotations"]["version"] = Value::String(version.clone());
        version
    }

    /// Stores and deploys the document as it is now.
    async fn deploy(&self, reference: &str) -> anyhow::Result<()> {
        let file = self.builds.join(format!("manifest-{}.json", self.revision));
        std::fs::write(&file, serde_json::to_vec_pretty(&self.document)?)?;
        trellis_deployer::cli::deploy_file(&self.client, &file, &self.builds, true)
            .await
            .with_context(|| format!("deploying {} with {reference}", self.name))?;
        Ok(())
    }

    /// The annotations the deployer gives the component in `version` of the document: those it
    /// has now, with the scaler of the new image.
    async fn annotations(&self, version: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let parsed = trellis_deployer::manifest::from_document(self.document.clone())
            .map_err(|e| anyhow::anyhow!("the manifest: {e}"))?;
        let spec = AppSpec::new(&parsed.manifest, version);
        let scaler = spec
            .workloads
            .iter()
            .find(|w| w.id == self.component_id)
            .map(|w| w.scaler_id.clone())
            .context("the developed component has no scaler")?;
        let ctl = trellis_deployer::lattice::Ctl::new(
            self.nats.clone(),
            &self.lattice,
            Duration::from_secs(5),
        );
        let inventory = ctl
            .inventory(&self.host_id)
            .await
            .map_err(|e| anyhow::anyhow!("reading the host's inventory: {e}"))?;
        let mut annotations = inventory
            .component(&self.component_id)
            .map(|c| c.annotations.clone())
            .with_context(|| format!("`{}` no longer runs on this host", self.component_id))?;
        annotations.insert(SCALER.to_string(), scaler);
        Ok(annotations)
    }
}

/// The build's component and its digest.
fn read(wasm: &Path) -> anyhow::Result<(Vec<u8>, [u8; 32])> {
    let bytes = std::fs::read(wasm).with_context(|| {
        format!(
            "the build wrote no {} (--wasm names the file it writes)",
            wasm.display()
        )
    })?;
    let digest = Sha256::digest(&bytes).into();
    Ok((bytes, digest))
}

/// The application made up for a component without a manifest.
fn made_up(name: &str, serves_http: bool, address: &str) -> Value {
    // The application, the component and its ID share one name: `my-demo` for `My.Demo`.
    let app = sanitize(name)
        .replace('_', "-")
        .trim_matches('-')
        .to_string();
    let app = if app.is_empty() {
        "component".to_string()
    } else {
        app
    };
    let component = json!({
        "name": app,
        "type": "component",
        "properties": { "image": "file:///dev/null", "id": app },
        "traits": [{ "type": "spreadscaler", "properties": { "instances": 16 } }],
    });
    let mut components = vec![component];
    if serves_http {
        components.push(json!({
            "name": "httpserver",
            "type": "capability",
            "properties": { "image": "wasmcloud+builtin://http-server" },
            "traits": [{
                "type": "link",
                "properties": {
                    "target": { "name": app },
                    "namespace": "wasi",
                    "package": "http",
                    "interfaces": ["incoming-handler"],
                    "source": { "config": [{ "name": "listen", "properties": { "address": address } }] },
                },
            }],
        }));
    }
    json!({
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {
            "name": app,
            "annotations": { "version": "v0.0.0", "description": format!("trellis dev: {name}") },
        },
        "spec": { "components": components },
    })
}

/// The index of the developed component in the manifest: the one named, else the one whose
/// image is the build's output, else the only component.
fn developed(document: &Value, named: Option<&str>, wasm: &Path) -> anyhow::Result<usize> {
    let components: Vec<(usize, &Value)> = document["spec"]["components"]
        .as_array()
        .context("the manifest has no spec.components")?
        .iter()
        .enumerate()
        .filter(|(_, c)| c["type"] == "component")
        .collect();
    let name = |c: &Value| c["name"].as_str().unwrap_or_default().to_string();
    if let Some(named) = named {
        return components
            .iter()
            .find(|(_, c)| c["name"] == named)
            .map(|(i, _)| *i)
            .with_context(|| {
                format!(
                    "the manifest has no component `{named}` (it has {})",
                    components
                        .iter()
                        .map(|(_, c)| name(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
    }
    let built = format!("file://{}", wasm.display());
    if let Some((i, _)) = components
        .iter()
        .find(|(_, c)| c["properties"]["image"] == built.as_str())
    {
        return Ok(*i);
    }
    match components.as_slice() {
        [(i, _)] => Ok(*i),
        [] => anyhow::bail!("the manifest has no component"),
        many => anyhow::bail!(
            "the manifest has several components and none has the image {built}: name the one \
             to develop with --component ({})",
            many.iter()
                .map(|(_, c)| name(c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_made_up_application_is_a_valid_manifest() {
        assert_eq!(made_up(".tmp_X1", false, "")["metadata"]["name"], "tmp-x1");
        let document = made_up("my-demo", true, "127.0.0.1:8000");
        let parsed = trellis_deployer::manifest::from_document(document.clone()).unwrap();
        assert_eq!(parsed.manifest.name, "my-demo");
        let index = developed(&document, None, Path::new("/x.wasm")).unwrap();
        assert_eq!(index, 0);
        let component = parsed.manifest.component("my-demo").unwrap();
        assert_eq!(
            trellis_deployer::spec::component_id(&parsed.manifest.name, component),
            "my-demo"
        );
        assert_eq!(
            crate::up::http_addresses(&document.to_string()),
            ["127.0.0.1:8000"]
        );
    }
}
