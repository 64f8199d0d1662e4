//! Why a pull or push failed, in the words an operator acts on: oci-client's errors (registry
//! envelopes, HTTP statuses, transport failures) sorted into the kinds of [`OciError`], each
//! with the detail the registry gave.

use std::path::PathBuf;

use oci_client::Reference;
use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope, OciErrorCode};

/// Why an artifact could not be pulled or pushed. Each names the reference.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("`{reference}` is not a valid OCI reference: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error(
        "`{0}` uses the `latest` tag (implied when no tag is given), which this host refuses: \
         pin a version or a digest, or start the host with --allow-latest"
    )]
    Latest(String),
    #[error("`{reference}`: not found in the registry ({detail})")]
    NotFound { reference: String, detail: String },
    #[error("`{reference}`: registry {registry} is unreachable ({detail}){hint}")]
    Unreachable {
        reference: String,
        registry: String,
        detail: String,
        /// How to reach a plain-HTTP registry, when that may be the cause.
        hint: String,
    },
    #[error("`{reference}`: the registry refused access ({detail}); check the credentials")]
    Unauthorized { reference: String, detail: String },
    #[error(
        "`{reference}`: layer {expected} does not match its digest (the content hashes to {actual})"
    )]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("`{reference}`: {detail}")]
    Unusable { reference: String, detail: String },
    #[error("`{reference}`: the registry answered with an error: {detail}")]
    Registry { reference: String, detail: String },
    #[error("OCI cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Suggests `--allowed-insecure` for an unreachable registry that is spoken to over HTTPS: a
/// plain-HTTP registry (the usual local one) looks unreachable then.
pub(super) fn with_insecure_hint(error: OciError, allowed_insecure: &[String]) -> OciError {
    match error {
        OciError::Unreachable {
            reference,
            registry,
            detail,
            hint,
        } if hint.is_empty() && !allowed_insecure.contains(&registry) => OciError::Unreachable {
            hint: format!(
                "; for a plain-HTTP registry, use --allowed-insecure {registry} (or --insecure \
                 with trellis push)"
            ),
            reference,
            registry,
            detail,
        },
        other => other,
    }
}

pub(super) fn is_digest_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<DigestError>().is_some())
}

/// Turns an oci-client error into the one-line reason operators act on.
pub(super) fn classify(raw: &str, reference: &Reference, error: OciDistributionError) -> OciError {
    let reference_text = raw.to_string();
    match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            let detail = envelope_text(&envelope);
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                OciError::NotFound {
                    reference: reference_text,
                    detail,
                }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                OciError::Unauthorized {
                    reference: reference_text,
                    detail,
                }
            } else {
                OciError::Registry {
                    reference: reference_text,
                    detail,
                }
            }
        }
        OciDistributionError::ImageManifestNotFoundError(detail) => OciError::NotFound {
            reference: reference_text,
            detail,
        },
        OciDistributionError::ServerError {
            code: 404, message, ..
        } => OciError::NotFound {
            reference: reference_text,
            detail: server_text(404, &message),
        },
        OciDistributionError::ServerError {
            code: code @ (401 | 403),
            message,
            ..
        } => OciError::Unauthorized {
            reference: reference_text,
            detail: server_text(code, &message),
        },
        OciDistributionError::AuthenticationFailure(message) => OciError::Unauthorized {
            reference: reference_text,
            detail: message.trim().to_string(),
        },
        OciDistributionError::UnauthorizedError { url } => OciError::Unauthorized {
            reference: reference_text,
            detail: format!("401 from {url}"),
        },
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            OciError::DigestMismatch {
                reference: reference_text,
                expected,
                actual,
            }
        }
        OciDistributionError::RequestError(error)
            if error.is_connect() || error.is_timeout() || error.is_request() =>
        {
            OciError::Unreachable {
                reference: reference_text,
                registry: reference.registry().to_string(),
                detail: error_chain(&error),
                hint: String::new(),
            }
        }
        other => OciError::Registry {
            reference: reference_text,
            detail: error_chain(&other),
        },
    }
}

fn envelope_text(envelope: &OciEnvelope) -> String {
    envelope
        .errors
        .iter()
        .map(|e| format!("{:?}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An HTTP error body on one line: its OCI error envelope's messages, or the text itself.
fn server_text(code: u16, body: &str) -> String {
    match serde_json::from_str::<OciEnvelope>(body) {
        Ok(envelope) if !envelope.errors.is_empty() => {
            format!("HTTP {code}, {}", envelope_text(&envelope))
        }
        _ if body.trim().is_empty() => format!("HTTP {code}"),
        _ => format!("HTTP {code}, {}", body.trim()),
    }
}

/// An error and its sources on one line (reqwest hides the useful part in the sources).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
