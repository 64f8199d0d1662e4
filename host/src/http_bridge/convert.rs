//! Values that cross between `wrpc:http` (the generated bindings) and `http` / wasmtime-wasi-http:
//! header fields, methods, schemes and error codes.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use wasmtime_wasi_http::p2::bindings::http::types as wasi;

use crate::wrpc_http::wasi::http::types as wire;
use crate::wrpc_http::wrpc::http::types::{Fields, Method};

/// A header name or value that `http` refuses.
#[derive(Debug, thiserror::Error)]
#[error("invalid header field `{0}`")]
pub struct InvalidField(pub String);

pub fn headers_from_fields(fields: Fields) -> Result<HeaderMap, InvalidField> {
    let mut headers = HeaderMap::new();
    for (name, values) in fields {
        let header = HeaderName::try_from(name.as_str()).map_err(|_| InvalidField(name.clone()))?;
        for value in values {
            let value =
                HeaderValue::from_maybe_shared(value).map_err(|_| InvalidField(name.clone()))?;
            headers.append(header.clone(), value);
        }
    }
    Ok(headers)
}

/// One entry per name, its values in order.
pub fn fields_from_headers(headers: &HeaderMap) -> Fields {
    headers
        .keys()
        .map(|name| {
            let values = headers
                .get_all(name)
                .iter()
                .map(|value| Bytes::copy_from_slice(value.as_bytes()))
                .collect();
            (name.as_str().to_string(), values)
        })
        .collect()
}

pub fn method_to_http(method: &Method) -> Result<http::Method, http::method::InvalidMethod> {
    Ok(match method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(other) => http::Method::from_bytes(other.as_bytes())?,
    })
}

pub fn method_from_http(method: &http::Method) -> Method {
    match *method {
        http::Method::GET => Method::Get,
        http::Method::HEAD => Method::Head,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        http::Method::CONNECT => Method::Connect,
        http::Method::OPTIONS => Method::Options,
        http::Method::TRACE => Method::Trace,
        http::Method::PATCH => Method::Patch,
        _ => Method::Other(method.as_str().to_string()),
    }
}

fn field_size_to_wasi(payload: wire::FieldSizePayload) -> wasi::FieldSizePayload {
    wasi::FieldSizePayload {
        field_name: payload.field_name,
        field_size: payload.field_size,
    }
}

fn field_size_to_wire(payload: wasi::FieldSizePayload) -> wire::FieldSizePayload {
    wire::FieldSizePayload {
        field_name: payload.field_name,
        field_size: payload.field_size,
    }
}

/// [`error_code_from_wire`] and [`error_code_to_wire`]: both sides are `wasi:http/types.error-code`
/// (0.2.0 on the wire, wasmtime's 0.2.x in-process), case by case: unit cases, cases whose payload
/// is the same type on both sides, and field-size cases (a record on each side).
macro_rules! same_error_code {
    (unit: $($unit:ident),*; same: $($same:ident),*; field_size: $($size:ident),*; optional_field_size: $($opt:ident),*) => {
        pub fn error_code_from_wire(code: wire::ErrorCode) -> wasi::ErrorCode {
            match code {
                $(wire::ErrorCode::$unit => wasi::ErrorCode::$unit,)*
                $(wire::ErrorCode::$same(payload) => wasi::ErrorCode::$same(payload),)*
                $(wire::ErrorCode::$size(payload) => wasi::ErrorCode::$size(field_size_to_wasi(payload)),)*
                $(wire::ErrorCode::$opt(payload) => wasi::ErrorCode::$opt(payload.map(field_size_to_wasi)),)*
                wire::ErrorCode::DnsError(payload) => wasi::ErrorCode::DnsError(wasi::DnsErrorPayload {
                    rcode: payload.rcode,
                    info_code: payload.info_code,
                }),
                wire::ErrorCode::TlsAlertReceived(payload) => {
                    wasi::ErrorCode::TlsAlertReceived(wasi::TlsAlertReceivedPayload {
                        alert_id: payload.alert_id,
                        alert_message: payload.alert_message,
                    })
                }
            }
        }

        pub fn error_code_to_wire(code: wasi::ErrorCode) -> wire::ErrorCode {
            match code {
                $(wasi::ErrorCode::$unit => wire::ErrorCode::$unit,)*
                $(wasi::ErrorCode::$same(payload) => wire::ErrorCode::$same(payload),)*
                $(wasi::ErrorCode::$size(payload) => wire::ErrorCode::$size(field_size_to_wire(payload)),)*
                $(wasi::ErrorCode::$opt(payload) => wire::ErrorCode::$opt(payload.map(field_size_to_wire)),)*
                wasi::ErrorCode::DnsError(payload) => wire::ErrorCode::DnsError(wire::DnsErrorPayload {
                    rcode: payload.rcode,
                    info_code: payload.info_code,
                }),
                wasi::ErrorCode::TlsAlertReceived(payload) => {
                    wire::ErrorCode::TlsAlertReceived(wire::TlsAlertReceivedPayload {
                        alert_id: payload.alert_id,
                        alert_message: payload.alert_message,
                    })
                }
            }
        }
    };
}

same_error_code! {
    unit: DnsTimeout, DestinationNotFound, DestinationUnavailable, DestinationIpProhibited,
        DestinationIpUnroutable, ConnectionRefused, ConnectionTerminated, ConnectionTimeout,
        ConnectionReadTimeout, ConnectionWriteTimeout, ConnectionLimitReached, TlsProtocolError,
        TlsCertificateError, HttpRequestDenied, HttpRequestLengthRequired,
        HttpRequestMethodInvalid, HttpRequestUriInvalid, HttpRequestUriTooLong,
        HttpResponseIncomplete, HttpResponseTimeout, HttpUpgradeFailed, HttpProtocolError,
        LoopDetected, ConfigurationError;
    same: HttpRequestBodySize, HttpRequestHeaderSectionSize, HttpRequestTrailerSectionSize,
        HttpResponseHeaderSectionSize, HttpResponseBodySize, HttpResponseTrailerSectionSize,
        HttpResponseTransferCoding, HttpResponseContentCoding, InternalError;
    field_size: HttpRequestTrailerSize, HttpResponseHeaderSize, HttpResponseTrailerSize;
    optional_field_size: HttpRequestHeaderSize
}

/// wasmtime-wasi-http's error as the `error-code` a guest (or a wRPC peer) sees: its codes map
/// one to one; transport failures become the code wasmtime-wasi-http gives a guest for them.
pub fn http_error_to_code(error: wasmtime_wasi_http::Error) -> wasi::ErrorCode {
    use wasi::{DnsErrorPayload, FieldSizePayload, TlsAlertReceivedPayload};
    use wasmtime_wasi_http::Error;
    let field = |field_name, field_size| FieldSizePayload {
        field_name,
        field_size,
    };
    match error {
        Error::Hyper(error) => wasmtime_wasi_http::p2::hyper_response_error(error),
        Error::Connect(error) if error.kind() == std::io::ErrorKind::AddrNotAvailable => {
            wasi::ErrorCode::DnsError(DnsErrorPayload {
                rcode: Some("address not available".into()),
                info_code: Some(0),
            })
        }
        Error::Connect(_) => wasi::ErrorCode::ConnectionRefused,
        Error::Tls(_) => wasi::ErrorCode::TlsProtocolError,
        Error::InvalidDnsNameError(_) => wasi::ErrorCode::DnsError(DnsErrorPayload {
            rcode: Some("invalid dns name".into()),
            info_code: Some(0),
        }),
        Error::HttpRequestBodySize(size) => wasi::ErrorCode::HttpRequestBodySize(size),
        Error::DnsTimeout => wasi::ErrorCode::DnsTimeout,
        Error::DnsError { rcode, info_code } => {
            wasi::ErrorCode::DnsError(DnsErrorPayload { rcode, info_code })
        }
        Error::DestinationNotFound => wasi::ErrorCode::DestinationNotFound,
        Error::DestinationUnavailable => wasi::ErrorCode::DestinationUnavailable,
        Error::DestinationIpProhibited => wasi::ErrorCode::DestinationIpProhibited,
        Error::DestinationIpUnroutable => wasi::ErrorCode::DestinationIpUnroutable,
        Error::ConnectionRefused => wasi::ErrorCode::ConnectionRefused,
        Error::ConnectionTerminated => wasi::ErrorCode::ConnectionTerminated,
        Error::ConnectionTimeout => wasi::ErrorCode::ConnectionTimeout,
        Error::ConnectionReadTimeout => wasi::ErrorCode::ConnectionReadTimeout,
        Error::ConnectionWriteTimeout => wasi::ErrorCode::ConnectionWriteTimeout,
        Error::ConnectionLimitReached => wasi::ErrorCode::ConnectionLimitReached,
        Error::TlsProtocolError => wasi::ErrorCode::TlsProtocolError,
        Error::TlsCertificateError => wasi::ErrorCode::TlsCertificateError,
        Error::TlsAlertReceived {
            alert_id,
            alert_message,
        } => wasi::ErrorCode::TlsAlertReceived(TlsAlertReceivedPayload {
            alert_id,
            alert_message,
        }),
        Error::HttpRequestDenied => wasi::ErrorCode::HttpRequestDenied,
        Error::HttpRequestLengthRequired => wasi::ErrorCode::HttpRequestLengthRequired,
        Error::HttpRequestMethodInvalid => wasi::ErrorCode::HttpRequestMethodInvalid,
        Error::HttpRequestUriInvalid => wasi::ErrorCode::HttpRequestUriInvalid,
        Error::HttpRequestUriTooLong => wasi::ErrorCode::HttpRequestUriTooLong,
        Error::HttpRequestHeaderSectionSize(size) => {
            wasi::ErrorCode::HttpRequestHeaderSectionSize(size)
        }
        Error::HttpRequestHeaderSize {
            field_name,
            field_size,
        } => wasi::ErrorCode::HttpRequestHeaderSize(Some(field(field_name, field_size))),
        Error::HttpRequestTrailerSectionSize(size) => {
            wasi::ErrorCode::HttpRequestTrailerSectionSize(size)
        }
        Error::HttpRequestTrailerSize {
            field_name,
            field_size,
        } => wasi::ErrorCode::HttpRequestTrailerSize(field(field_name, field_size)),
        Error::HttpResponseIncomplete => wasi::ErrorCode::HttpResponseIncomplete,
        Error::HttpResponseHeaderSectionSize(size) => {
            wasi::ErrorCode::HttpResponseHeaderSectionSize(size)
        }
        Error::HttpResponseHeaderSize {
            field_name,
            field_size,
        } => wasi::ErrorCode::HttpResponseHeaderSize(field(field_name, field_size)),
        Error::HttpResponseBodySize(size) => wasi::ErrorCode::HttpResponseBodySize(size),
        Error::HttpResponseTrailerSectionSize(size) => {
            wasi::ErrorCode::HttpResponseTrailerSectionSize(size)
        }
        Error::HttpResponseTrailerSize {
            field_name,
            field_size,
        } => wasi::ErrorCode::HttpResponseTrailerSize(field(field_name, field_size)),
        Error::HttpResponseTransferCoding(coding) => {
            wasi::ErrorCode::HttpResponseTransferCoding(coding)
        }
        Error::HttpResponseContentCoding(coding) => {
            wasi::ErrorCode::HttpResponseContentCoding(coding)
        }
        Error::HttpResponseTimeout => wasi::ErrorCode::HttpResponseTimeout,
        Error::HttpUpgradeFailed => wasi::ErrorCode::HttpUpgradeFailed,
        Error::HttpProtocolError => wasi::ErrorCode::HttpProtocolError,
        Error::LoopDetected => wasi::ErrorCode::LoopDetected,
        Error::ConfigurationError => wasi::ErrorCode::ConfigurationError,
        Error::InternalError(message) => wasi::ErrorCode::InternalError(message),
        other => wasi::ErrorCode::InternalError(Some(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_repeated_values_in_order() {
        let fields: Fields = vec![
            ("x-a".into(), vec![Bytes::from("1"), Bytes::from("2")]),
            ("content-type".into(), vec![Bytes::from("text/plain")]),
        ];
        let headers = headers_from_fields(fields.clone()).unwrap();
        assert_eq!(headers.get_all("x-a").iter().count(), 2);
        assert_eq!(fields_from_headers(&headers), fields);
        assert!(headers_from_fields(vec![("bad name".into(), vec![])]).is_err());
    }

    #[test]
    fn methods_and_error_codes_round_trip() {
        for method in [
            http::Method::GET,
            http::Method::PATCH,
            "PURGE".parse().unwrap(),
        ] {
            assert_eq!(method_to_http(&method_from_http(&method)).unwrap(), method);
        }
        let code = wasi::ErrorCode::HttpRequestHeaderSize(Some(wasi::FieldSizePayload {
            field_name: Some("x".into()),
            field_size: Some(9),
        }));
        let back = error_code_from_wire(error_code_to_wire(code.clone()));
        assert_eq!(format!("{back:?}"), format!("{code:?}"));
    }
}
