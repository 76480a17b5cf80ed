//! The gRPC (OIP) client for gRPC backends: one lazily connected HTTP/2 channel per replica, and
//! the one place that turns a backend's `Status` into a gateway error.

use std::time::Duration;

use http::HeaderMap;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, ErrorKind, Result};
use crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient;

pub type Client = GrpcInferenceServiceClient<Channel>;

/// A client for `url` (`http://host:port`); it connects on first use and reconnects by itself.
pub fn client(url: &str, max_message_bytes: usize, connect_timeout: Duration) -> Result<Client> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::bad_request(format!("invalid gRPC backend url {url:?}: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(30));
    Ok(GrpcInferenceServiceClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes))
}

/// Wraps a message with the forwarded headers as metadata and the deadline as `grpc-timeout`.
pub fn request<T>(message: T, headers: &HeaderMap, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    copy_headers(headers, request.metadata_mut());
    request.set_timeout(timeout);
    request
}

fn copy_headers(headers: &HeaderMap, metadata: &mut MetadataMap) {
    for (name, value) in headers {
        let key = MetadataKey::from_bytes(name.as_str().as_bytes());
        let value = MetadataValue::try_from(value.as_bytes());
        if let (Ok(key), Ok(value)) = (key, value) {
            metadata.insert(key, value);
        }
    }
}

/// A backend's gRPC status as a gateway error; its code and message are kept.
pub fn status_error(url: &str, status: &tonic::Status) -> Error {
    let kind = ErrorKind::from_grpc_code(status.code());
    let message = status.message();
    // A status the transport made (it carries the I/O error behind it), not one the backend
    // sent: say which backend, and why (tonic's own text is just "tcp connect error").
    let transport = std::error::Error::source(status).is_some();
    match status.code() {
        tonic::Code::Unavailable
            if transport || message.contains("transport") || message.is_empty() =>
        {
            let cause = root_cause(status)
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            Error::upstream(
                kind,
                format!("backend {url} is unreachable: {message}{cause}"),
            )
        }
        _ => Error::upstream(kind, message.to_owned()),
    }
}

/// The innermost error behind `error`, if any (an OS error such as "Connection refused").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = error.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}
