//! The connected control-interface client every command goes through, and the one-line
//! [`CtlError`]s its failures become: the client's own errors neither say which host did not
//! answer nor what to try next.

use std::error::Error as StdError;
use std::time::Duration;

use async_nats_039 as nats;
use serde::Serialize;
use serde_json::json;
use trellis_deployer::cli::Output;
use trellis_deployer::connect::{NatsAuth, reconnect_delay};
use wasmcloud_control_interface::{Client, ClientBuilder, CtlResponse};

use super::args::Common;

/// Why a `ctl` command failed: one line, ending with a hint where one helps.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(
        "cannot connect to NATS at {url}: {reason}; is nats-server running there? (`trellis up` starts one; --nats-url or TRELLIS_NATS_URL picks another)"
    )]
    Connect { url: String, reason: String },
    #[error(
        "no host answered on lattice `{lattice}` at {url}; is a host running? (trellis host / trellis up)"
    )]
    NoHost { lattice: String, url: String },
    #[error(
        "host {host_id} did not answer on lattice `{lattice}` at {url}; is the ID right? (`trellis ctl hosts` lists the hosts)"
    )]
    UnknownHost {
        host_id: String,
        lattice: String,
        url: String,
    },
    #[error(
        "no reply to {what} within {ms} ms; is the host overloaded? (--timeout-ms waits longer)"
    )]
    Timeout { what: &'static str, ms: u64 },
    #[error("{what} failed: {reason}")]
    Client { what: &'static str, reason: String },
    #[error("{what} refused by the host: {reason}")]
    Refused { what: &'static str, reason: String },
    #[error(
        "no config named `{name}` on lattice `{lattice}`; `trellis ctl config put {name} KEY=VALUE` creates it"
    )]
    NoConfig { name: String, lattice: String },
    /// `ctl call`: a one-line reason, already worded.
    #[error("{0}")]
    Call(String),
    #[error("writing the output: {0}")]
    Output(#[from] serde_json::Error),
}

/// Who a request is addressed to, for naming the one that did not answer.
pub(super) enum To<'a> {
    AnyHost,
    Host(&'a str),
}

/// A connected control-interface client and what it needs to word its errors.
pub(super) struct Ctl {
    pub(super) client: Client,
    pub(super) url: String,
    pub(super) lattice: String,
    timeout: Duration,
    pub(super) output: Output,
}

impl Ctl {
    pub(super) async fn connect(common: &Common) -> Result<Self, CtlError> {
        let url = common.lattice.nats_url.clone();
        let timeout = Duration::from_millis(common.timeout_ms.max(1));
        let options = options(&common.lattice.auth(), timeout)
            .await
            .map_err(|reason| CtlError::Connect {
                url: url.clone(),
                reason,
            })?;
        let connect = options.connect(url.as_str());
        let nc = match tokio::time::timeout(timeout + Duration::from_secs(1), connect).await {
            Ok(Ok(nc)) => nc,
            Ok(Err(error)) => {
                return Err(CtlError::Connect {
                    url,
                    reason: error.to_string(),
                });
            }
            Err(_) => {
                return Err(CtlError::Connect {
                    url,
                    reason: format!("no connection within {} ms", timeout.as_millis()),
                });
            }
        };
        let client = ClientBuilder::new(nc)
            .lattice(common.lattice.lattice.clone())
            .timeout(timeout)
            .auction_timeout(timeout)
            .build();
        Ok(Self {
            client,
            url,
            lattice: common.lattice.lattice.clone(),
            timeout,
            output: common.output.output,
        })
    }

    /// Sends `command` to `wasmbus.ctl.v1.{lattice}.{operation}` and decodes the reply, for
    /// requests the client has no method for.
    pub(super) async fn request<T: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        command: &T,
    ) -> Result<CtlResponse<R>, Box<dyn StdError + Send + Sync>> {
        let subject = format!("wasmbus.ctl.v1.{}.{operation}", self.lattice);
        let payload = serde_json::to_vec(command)?;
        let nc = self.client.nats_client();
        let reply = tokio::time::timeout(self.timeout, nc.request(subject, payload.into()))
            .await
            .map_err(|_| "request timed out")??;
        Ok(serde_json::from_slice(&reply.payload)?)
    }

    /// Turns the client's boxed error into one that says who did not answer.
    pub(super) fn failed(
        &self,
        what: &'static str,
        to: To<'_>,
        error: Box<dyn StdError + Send + Sync>,
    ) -> CtlError {
        let reason = error.to_string();
        if reason.contains("no responders") {
            match to {
                To::AnyHost => CtlError::NoHost {
                    lattice: self.lattice.clone(),
                    url: self.url.clone(),
                },
                To::Host(host_id) => CtlError::UnknownHost {
                    host_id: host_id.to_string(),
                    lattice: self.lattice.clone(),
                    url: self.url.clone(),
                },
            }
        } else if reason.contains("timed out") {
            CtlError::Timeout {
                what,
                ms: self.timeout.as_millis() as u64,
            }
        } else {
            CtlError::Client { what, reason }
        }
    }

    /// The response of a request that succeeded on the wire, or why not.
    pub(super) fn answered<T>(
        &self,
        what: &'static str,
        to: To<'_>,
        result: Result<CtlResponse<T>, Box<dyn StdError + Send + Sync>>,
    ) -> Result<CtlResponse<T>, CtlError> {
        let response = result.map_err(|error| self.failed(what, to, error))?;
        if response.succeeded() {
            Ok(response)
        } else {
            Err(CtlError::Refused {
                what,
                reason: response.message().to_string(),
            })
        }
    }

    /// Prints an acknowledged command: `{"success": true, "message": …}` or `done` and the
    /// host's note.
    pub(super) fn acked(&self, response: &CtlResponse<()>, done: String) -> Result<(), CtlError> {
        match self.output {
            Output::Json => print_json(&json!({
                "success": true,
                "message": response.message(),
            })),
            Output::Table if response.message().is_empty() => {
                println!("{done}");
                Ok(())
            }
            Output::Table => {
                println!("{done} ({})", response.message());
                Ok(())
            }
        }
    }
}

pub(super) fn print_json(value: &impl Serialize) -> Result<(), CtlError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Connect options for the control-interface client's async-nats (0.39, older than the rest of
/// Trellis's): the same authentication and reconnect backoff as every Trellis client.
async fn options(auth: &NatsAuth, timeout: Duration) -> Result<nats::ConnectOptions, String> {
    let mut options = nats::ConnectOptions::new()
        .name("trellis ctl")
        .connection_timeout(timeout)
        .reconnect_delay_callback(reconnect_delay);
    if let Some(path) = &auth.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("reading credentials {}: {e}", path.display()))?;
    }
    if let Some(seed) = &auth.nkey_seed {
        options = options.nkey(seed.clone());
    }
    if let Some(ca) = &auth.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(options)
}
