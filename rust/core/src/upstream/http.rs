//! The pooled HTTP/1.1 client for REST backends and the one place that turns its failures into
//! gateway errors.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::replicas;
use crate::error::{Error, ErrorKind, Result};

pub type Client = LegacyClient<HttpConnector, Full<Bytes>>;

/// One client for every REST backend: it pools keep-alive connections per host and, when a
/// pooled connection turns out closed before the request went out (KServe closes keep-alive
/// after a 500), sends the request again on a fresh one.
pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    LegacyClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .retry_canceled_requests(true)
        .build(connector)
}

/// A backend's answer, body read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the body is the V2 error envelope, `{"error": "..."}`.
    pub fn is_error_envelope(&self) -> bool {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&self.body).ok();
        parsed.is_some_and(|v| v.get("error").is_some_and(serde_json::Value::is_string))
    }

    /// The backend's error as a gateway error: its status kept, its message extracted from
    /// `{"error": ...}` (KServe, MLServer) or `{"detail": ...}` (FastAPI), else the body text.
    pub fn to_error(&self) -> Error {
        Error::upstream_status(self.status.as_u16(), error_message(&self.body))
    }
}

fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("detail")));
    match field {
        Some(serde_json::Value::String(message)) => message.clone(),
        Some(other) => other.to_string(),
        None => String::from_utf8_lossy(body).trim().to_owned(),
    }
}

/// How many times a request that died on a stale pooled connection is sent again.
const STALE_RETRIES: usize = 2;

/// A REST replica: its URL (for messages) and its parsed authority (for requests).
pub type Replica = replicas::Replica<Authority>;

/// The authority (`host:port`) of a backend URL `http://host:port`.
pub fn authority(url: &str) -> Result<Authority> {
    url.strip_prefix("http://")
        .and_then(|rest| rest.parse().ok())
        .ok_or_else(|| {
            Error::bad_request(format!(
                "invalid backend url {url:?}: expected http://host:port"
            ))
        })
}

/// Sends one request to `path` on `replica` and reads the whole answer (bounded by `max_body`).
pub async fn send(
    client: &Client,
    method: Method,
    replica: &Replica,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
    max_body: usize,
) -> Result<Reply> {
    let base = replica.url.as_str();
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(replica.client.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| Error::bad_request(format!("invalid backend path {path:?}: {e}")))?;
    let mut stale_retries = 0;
    let response = loop {
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers.clone();
        match client.request(request).await {
            Ok(response) => break response,
            // A keep-alive connection the backend closed (KServe and MLServer close after some
            // 500s) fails the next request written to it before any answer: the backend never
            // saw it, so it goes again, on a fresh connection.
            Err(error) if stale_retries < STALE_RETRIES && is_stale_connection(&error) => {
                stale_retries += 1;
            }
            Err(error) => return Err(request_error(base, &error)),
        }
    };
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| body_error(base, max_body, e.as_ref()))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A failure with no answer at all on a connection that was open: reset or closed under us.
fn is_stale_connection(error: &hyper_util::client::legacy::Error) -> bool {
    if error.is_connect() {
        return false;
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>()
            && (hyper_error.is_incomplete_message() || hyper_error.is_canceled())
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            )
        {
            return true;
        }
        source = cause.source();
    }
    false
}

fn request_error(base: &str, error: &hyper_util::client::legacy::Error) -> Error {
    let cause = chain(error);
    if error.is_connect() {
        Error::upstream(
            ErrorKind::Unavailable,
            format!("backend {base} is unreachable: {cause}"),
        )
    } else {
        Error::upstream(
            ErrorKind::BadGateway,
            format!("backend {base} failed: {cause}"),
        )
    }
}

fn body_error(base: &str, max_body: usize, error: &(dyn StdError + 'static)) -> Error {
    if error.is::<http_body_util::LengthLimitError>() {
        Error::upstream(
            ErrorKind::BadGateway,
            format!("backend {base} sent a body larger than max_body_bytes ({max_body})"),
        )
    } else {
        Error::upstream(
            ErrorKind::BadGateway,
            format!("backend {base} broke off its answer: {}", chain(error)),
        )
    }
}

/// An error and its sources, `outer: inner: root`.
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn extracts_backend_messages() {
        assert_eq!(error_message(br#"{"error":"bad x"}"#), "bad x");
        assert_eq!(error_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            error_message(br#"{"detail":[{"msg":"m"}]}"#),
            r#"[{"msg":"m"}]"#
        );
        assert_eq!(
            error_message(b"Internal Server Error\n"),
            "Internal Server Error"
        );
    }
}
