//! `trellis ctl call COMPONENT FUNCTION ARGS…`: calls an exported function of a running
//! component over wRPC, as another component or a provider would.
//!
//! The component's code is found through its `image_ref` in a host's inventory (a `file://`
//! path, or an OCI reference pulled through the host's cache) and compiled, never run, to learn
//! the function's WIT types; the arguments are read against them (WAVE or JSON), encoded with
//! the runtime's own wRPC value codec and sent on `{lattice}.{component}.wrpc.0.0.1.…`, and the
//! results are decoded and printed the same way.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use trellis_deployer::cli::Output;
use trellis_host::oci::{self, ArtifactKind, OciSettings};
use trellis_runtime::value;
use wasmtime::component::ResourceTable;
use wasmtime::{AsContextMut as _, Store};
use wrpc_transport::Invoke as _;

use super::client::{Ctl, CtlError, To, print_json};
use super::values::{self, Notation};
use crate::cli::exports::{Exports, Function, describe, has_resource};

/// What `ctl call` was asked.
pub(super) struct CallRequest {
    pub component_id: String,
    pub function: String,
    pub args: Vec<String>,
    pub json_args: bool,
    pub allowed_insecure: Vec<String>,
    pub timeout: Duration,
}

fn failed(message: impl Into<String>) -> CtlError {
    CtlError::Call(message.into())
}

pub(super) async fn call(ctl: &Ctl, request: CallRequest) -> Result<(), CtlError> {
    let id = request.component_id.as_str();
    let image_ref = image_ref(ctl, id).await?;
    let bytes = code(&image_ref, request.allowed_insecure).await?;
    let exports = tokio::task::spawn_blocking(move || Exports::of(&bytes))
        .await
        .map_err(|e| failed(format!("inspecting `{image_ref}`: {e}")))?
        .map_err(|e| failed(format!("inspecting `{image_ref}` of `{id}`: {e:#}")))?;
    let function = exports
        .find(&request.function)
        .map_err(|e| failed(format!("component `{id}`: {e}")))?;
    if function
        .params
        .iter()
        .map(|(_, ty)| ty)
        .chain(&function.results)
        .any(has_resource)
    {
        return Err(failed(format!(
            "`{}` passes resources, which do not cross wRPC",
            function.signature()
        )));
    }
    let notation = if request.json_args {
        Notation::Json
    } else {
        Notation::Wave
    };
    let args = arguments(function, &request.args, notation)?;

    let mut store = Store::new(&exports.engine, ResourceTable::new());
    let mut params = BytesMut::new();
    for (arg, (_, ty)) in args.iter().zip(&function.params) {
        value::encode(&mut store.as_context_mut(), arg, ty, &mut params)
            .map_err(|e| failed(format!("encoding the arguments: {e}")))?;
    }
    let results = invoke(ctl, id, function, params, request.timeout).await?;
    let results = value::decode_all(&mut store.as_context_mut(), &results, &function.results)
        .map_err(|e| {
            failed(format!(
                "`{id}` answered `{}` with no valid results ({e}); did the call trap? (its \
                 host's log says)",
                function.path()
            ))
        })?;
    print(ctl, &results)
}

/// The arguments, one per parameter, read as their types; errors name the parameter.
fn arguments(
    function: &Function,
    args: &[String],
    notation: Notation,
) -> Result<Vec<wasmtime::component::Val>, CtlError> {
    if args.len() != function.params.len() {
        let count = |n: usize| match n {
            1 => "1 argument".to_string(),
            n => format!("{n} arguments"),
        };
        return Err(failed(format!(
            "`{}` takes {}, got {}: {}",
            function.name,
            count(function.params.len()),
            args.len(),
            function.signature()
        )));
    }
    args.iter()
        .zip(&function.params)
        .enumerate()
        .map(|(i, (arg, (name, ty)))| {
            values::parse(arg, ty, notation).map_err(|e| {
                failed(format!(
                    "argument {} (`{name}`: {}) of `{}`: {e}",
                    i + 1,
                    describe(ty),
                    function.name
                ))
            })
        })
        .collect()
}

/// The reference the component runs from, from the first host that runs it.
async fn image_ref(ctl: &Ctl, id: &str) -> Result<String, CtlError> {
    let hosts = ctl
        .client
        .get_hosts()
        .await
        .map_err(|error| ctl.failed("call", To::AnyHost, error))?;
    let hosts: Vec<_> = hosts.iter().filter_map(|a| a.data().cloned()).collect();
    if hosts.is_empty() {
        return Err(CtlError::NoHost {
            lattice: ctl.lattice.clone(),
            url: ctl.url.clone(),
        });
    }
    for host in &hosts {
        let result = ctl.client.get_host_inventory(host.id()).await;
        let response = ctl.answered("inventory", To::Host(host.id()), result)?;
        if let Some(component) = response
            .data()
            .and_then(|inventory| inventory.components().iter().find(|c| c.id() == id))
        {
            return Ok(component.image_ref().to_string());
        }
    }
    Err(failed(format!(
        "no host on lattice `{}` runs a component `{id}` (`trellis ctl inventory HOST` lists \
         what a host runs)",
        ctl.lattice
    )))
}

/// The component's code: a local file, or pulled through the OCI cache hosts share.
async fn code(image_ref: &str, allowed_insecure: Vec<String>) -> Result<Vec<u8>, CtlError> {
    if let Some(path) = image_ref.strip_prefix("file://") {
        return tokio::fs::read(path)
            .await
            .map_err(|e| failed(format!("reading `{image_ref}`: {e}")));
    }
    let oci = oci::Oci::new(OciSettings {
        cache_dir: oci::default_cache_dir(),
        allowed_insecure,
        // The host already decided it may run this reference.
        allow_latest: true,
    });
    let artifact = oci
        .pull(image_ref, ArtifactKind::Component)
        .await
        .map_err(|e| failed(format!("pulling `{image_ref}`: {e}")))?;
    Ok(artifact.bytes.to_vec())
}

/// Sends the call and reads every result byte (the callee ends the stream).
async fn invoke(
    ctl: &Ctl,
    id: &str,
    function: &Function,
    params: BytesMut,
    timeout: Duration,
) -> Result<Vec<u8>, CtlError> {
    let nats = tokio::time::timeout(timeout, async_nats::connect(&ctl.url))
        .await
        .map_err(|_| CtlError::Connect {
            url: ctl.url.clone(),
            reason: format!("no connection within {} ms", timeout.as_millis()),
        })?
        .map_err(|e| CtlError::Connect {
            url: ctl.url.clone(),
            reason: e.to_string(),
        })?;
    let prefix = format!("{}.{id}", ctl.lattice);
    let exchange = async {
        let client = wrpc_transport_nats::Client::new(nats, prefix, None).await?;
        // No async values cross, so there are no result paths to subscribe.
        let no_async_results: [[Option<usize>; 0]; 0] = [];
        let (mut outgoing, mut incoming) = client
            .invoke(
                None,
                &function.instance,
                &function.name,
                params.freeze(),
                no_async_results,
            )
            .await?;
        outgoing.shutdown().await?;
        let mut results = Vec::new();
        incoming.read_to_end(&mut results).await?;
        anyhow::Ok(results)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(results)) => Ok(results),
        Ok(Err(error)) if format!("{error:#}").contains("no responders") => Err(failed(format!(
            "nothing on lattice `{}` serves `{}` for `{id}`",
            ctl.lattice,
            function.path()
        ))),
        Ok(Err(error)) => Err(failed(format!("calling `{}`: {error:#}", function.path()))),
        Err(_) => Err(CtlError::Timeout {
            what: "call",
            ms: timeout.as_millis() as u64,
        }),
    }
}

/// WAVE: one result a line. JSON: the result, `null` for none, an array for several.
fn print(ctl: &Ctl, results: &[wasmtime::component::Val]) -> Result<(), CtlError> {
    if ctl.output == Output::Json {
        let mut json: Vec<_> = results.iter().map(values::to_json).collect();
        return match json.len() {
            0 => print_json(&serde_json::Value::Null),
            1 => print_json(&json.remove(0)),
            _ => print_json(&json),
        };
    }
    for result in results {
        let text = values::print(result, Notation::Wave)
            .map_err(|e| failed(format!("printing the result: {e}")))?;
        println!("{text}");
    }
    Ok(())
}
