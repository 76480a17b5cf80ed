//! The pooled HTTP/1.1 client for REST backends and the one place that turns its failures into
//! gateway errors.

use std::error::Error as StdError;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::replicas;
pub use crate::body::Chunks;
use crate::error::{Error, ErrorKind, Result};

/// Idle keep-alive connections kept per replica; more are closed when they come back.
const MAX_IDLE: usize = 1024;

/// Settings shared by every REST connection. The connections themselves are pooled per
/// replica ([`Endpoint`]), so a request takes one without hashing or a shared lock.
#[derive(Debug, Clone, Default)]
pub struct Client {}

pub fn client() -> Client {
    Client {}
}

/// A REST replica's address and its idle keep-alive connections (HTTP/1.1).
#[derive(Debug)]
pub struct Endpoint {
    authority: Authority,
    /// The `Host` header of every request, made once.
    host: http::HeaderValue,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Last in, first out: the most recently used connection goes next, and the bottom of the
    /// stack has been idle longest.
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Chunks>,
    since: Instant,
}

impl Endpoint {
    fn checkout(&self) -> Option<SendRequest<Chunks>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(Idle { sender, since }) = idle.pop() {
            // A connection idle this long may be closing at the backend's end just as a request
            // is written to it (uvicorn closes after 5 s), which fails the request with no way
            // to know whether it ran. It is closed instead, and so is every one below it, idle
            // longer still.
            if since.elapsed() >= self.idle_timeout {
                idle.clear();
                return None;
            }
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<Chunks>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// A new connection, its protocol task running on the runtime.
    async fn connect(&self, url: &str) -> Result<SendRequest<Chunks>> {
        let unreachable = |cause: String| {
            Error::upstream(
                ErrorKind::Unavailable,
                format!("backend {url} is unreachable: {cause}"),
            )
        };
        let connecting = TcpStream::connect(self.authority.as_str());
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| {
                let ms = self.connect_timeout.as_millis();
                unreachable(format!("no connection within {ms} ms"))
            })?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(chain(&e)))?;
        tokio::spawn(async move {
            // Ends when the backend or the pool closes the connection.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// A backend's answer, body read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// As it arrived: forwarded unchanged without concatenating, `to_bytes` for decoding.
    pub body: Chunks,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the body is the V2 error envelope, `{"error": "..."}`.
    pub fn is_error_envelope(&self) -> bool {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&self.body.to_bytes()).ok();
        parsed.is_some_and(|v| v.get("error").is_some_and(serde_json::Value::is_string))
    }

    /// The backend's error as a gateway error: its status kept, its message extracted from
    /// `{"error": ...}` (KServe, MLServer) or `{"detail": ...}` (FastAPI), else the body text.
    pub fn to_error(&self) -> Error {
        Error::upstream_status(self.status.as_u16(), error_message(&self.body.to_bytes()))
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

/// A REST replica: its URL (for messages) and its endpoint (address and connections).
pub type Replica = replicas::Replica<Endpoint>;

/// The endpoint of a backend URL `http://host:port`.
pub fn endpoint(url: &str, connect_timeout: Duration, idle_timeout: Duration) -> Result<Endpoint> {
    let authority = url
        .strip_prefix("http://")
        .and_then(|rest| rest.parse().ok())
        .ok_or_else(|| {
            Error::bad_request(format!(
                "invalid backend url {url:?}: expected http://host:port"
            ))
        })?;
    Ok(Endpoint {
        host: host_header(&authority),
        authority,
        connect_timeout,
        idle_timeout,
        idle: Mutex::new(Vec::new()),
    })
}

/// Sends one request to `path` on `replica` and reads the whole answer (bounded by `max_body`).
/// Headers and body are borrowed: each attempt (a resend on a fresh connection included) takes
/// its own copy.
pub async fn send(
    _client: &Client,
    method: Method,
    replica: &Replica,
    path: &str,
    headers: &HeaderMap,
    body: &Chunks,
    max_body: usize,
) -> Result<Reply> {
    let base = replica.url.as_str();
    let endpoint = &replica.client;
    // Origin form (`/v2/...`) with a Host header, as HTTP/1.1 servers expect from a client.
    let uri: Uri = path
        .parse()
        .map_err(|e| Error::bad_request(format!("invalid backend path {path:?}: {e}")))?;
    let mut stale_retries = 0;
    loop {
        let (mut sender, reused) = match endpoint.checkout() {
            Some(sender) => (sender, true),
            None => (endpoint.connect(base).await?, false),
        };
        let mut request = Request::new(body.clone());
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers.clone();
        request
            .headers_mut()
            .insert(http::header::HOST, endpoint.host.clone());
        // `unsent`: the request never reached the connection (it closed while idle, or before
        // the request was started), so the backend cannot have seen it.
        let sent = match sender.ready().await {
            Ok(()) => sender.try_send_request(request).await.map_err(|error| {
                let unsent = error.message().is_some();
                (error.into_error(), unsent)
            }),
            Err(error) => Err((error, true)),
        };
        match sent {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let body = Chunks::read(body, max_body)
                    .await
                    .map_err(|e| body_error(base, max_body, e.as_ref()))?;
                endpoint.checkin(sender);
                return Ok(Reply {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                });
            }
            // A keep-alive connection the backend had closed (KServe and MLServer close after
            // some 500s, and idle ones after a few seconds): the request goes again, on a fresh
            // connection, when the backend cannot have read it: it never reached the connection,
            // or it met a reset (the backend's socket was gone, our bytes unread). A connection
            // that ends cleanly after the request was written is not retried here: the backend
            // may have read the request, and running it twice is for the route's `retries`.
            Err((error, unsent))
                if reused && stale_retries < STALE_RETRIES && (unsent || is_reset(&error)) =>
            {
                stale_retries += 1;
            }
            Err((error, _)) => return Err(send_error(base, &error)),
        }
    }
}

/// A request that got no answer: the connection failing under it (closed, reset) is a 503, like
/// a backend that cannot be reached; anything else (an answer that is not HTTP) a 502.
fn send_error(base: &str, error: &hyper::Error) -> Error {
    let kind = if is_connection_failure(error) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::BadGateway
    };
    Error::upstream(kind, format!("backend {base} failed: {}", chain(error)))
}

fn host_header(authority: &Authority) -> http::HeaderValue {
    http::HeaderValue::from_str(authority.as_str())
        .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"))
}

/// A failure with no answer at all on a connection that was open: reset or closed under us.
fn is_connection_failure(error: &hyper::Error) -> bool {
    error.is_incomplete_message() || error.is_canceled() || error.is_closed() || is_reset(error)
}

/// The connection was reset: the backend's socket closed with our bytes unread.
fn is_reset(error: &hyper::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
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
