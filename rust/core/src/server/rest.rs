//! The REST front end: KServe's V1 and V2 routes, with every error in the `{"error": ...}`
//! envelope and KServe's texts for unknown and not-ready models.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::{Body, Incoming};
use serde_json::json;

use super::paths::{self, Endpoint, Mismatch};
use super::{AccessLine, REQUEST_ID, Shared, request_id};
use crate::body::Chunks;
use crate::error::{Error, Origin, Result};
use crate::metrics::{Observation, Protocol};
use crate::route::{Route, WILDCARD, not_found, not_ready};
use crate::upstream::control::metadata_to_json;
use crate::upstream::forward::{HEADER_LENGTH, JSON, RestFront, RestReply};

const SERVER_NAME: &str = "tensorgate";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Extensions announced by `GET /v2`.
const EXTENSIONS: [&str; 2] = ["binary_tensor_data", "model_repository"];

/// What the log and the metrics learn about a request while it is handled.
#[derive(Debug, Default)]
struct Exchange<'p> {
    model: Option<&'p str>,
    /// The model has a route of its own (not only the wildcard's).
    configured: bool,
    /// Set once a route for the model was found: only then is the request recorded by model.
    protocol: Option<Protocol>,
    /// A V1 `:explain` call.
    explain: bool,
    bytes_in: usize,
    upstream: Option<Duration>,
}

pub async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Chunks> {
    let started = Instant::now();
    let (parts, mut body) = request.into_parts();
    let has_body = !body.is_end_stream();
    let request_id = request_id(&parts.headers);
    let mut exchange = Exchange::default();
    let endpoint = paths::parse(&parts.method, parts.uri.path());
    let quiet = matches!(
        endpoint,
        Ok(Endpoint::Live | Endpoint::Ready | Endpoint::Metrics)
    );
    let mut response = match endpoint {
        Ok(endpoint) => answer(
            shared,
            endpoint,
            &parts,
            &mut body,
            &request_id,
            &mut exchange,
        )
        .await
        .unwrap_or_else(|error| error_response(&error)),
        Err(mismatch) => mismatch_response(mismatch),
    };
    response
        .headers_mut()
        .insert(REQUEST_ID, request_id.clone());
    if has_body && parts.version <= Version::HTTP_11 && !drain_arrived(&mut body) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status().as_u16();
    if let (Some(model), Some(protocol)) = (exchange.model, exchange.protocol) {
        let observation = Observation {
            code: status,
            bytes_in: exchange.bytes_in,
            bytes_out: body_len(response.body()),
            duration: started.elapsed(),
            upstream: exchange.upstream,
            explain: exchange.explain,
        };
        shared
            .metrics
            .record(model, exchange.configured, protocol, observation);
    }
    if !quiet {
        let line = AccessLine {
            request_id: request_id.to_str().unwrap_or("-"),
            method: parts.method.as_str(),
            path: parts.uri.path(),
            model: exchange.model.unwrap_or("-"),
            protocol: exchange.protocol.map_or("-", Protocol::as_str),
            status,
            started,
        };
        line.write(shared.settings.load().access_log);
    }
    response
}

/// Bytes of a request body nobody read that are drained to keep its connection alive.
const DRAIN_BYTES: usize = 64 * 1024;

/// Reads what has already arrived of a request body, without waiting for more: `true` when that
/// was all of it, within `DRAIN_BYTES` (at once for a body that was read). A body left unread
/// (an unknown model, a body over the limit) is drained here when it has arrived whole.
/// Otherwise hyper closes the connection after the answer, without saying so, and a client
/// reusing it would see a reset; the caller says `Connection: close`.
fn drain_arrived(body: &mut Incoming) -> bool {
    let mut context = Context::from_waker(Waker::noop());
    let mut drained = 0usize;
    loop {
        match Pin::new(&mut *body).poll_frame(&mut context) {
            Poll::Ready(None) => return true,
            Poll::Ready(Some(Ok(frame))) => {
                drained += frame.data_ref().map_or(0, Bytes::len);
                if drained > DRAIN_BYTES {
                    return false;
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => return false,
        }
    }
}

fn body_len(body: &Chunks) -> usize {
    usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX)
}

async fn answer<'p>(
    shared: &Shared,
    endpoint: Endpoint<'p>,
    parts: &'p Parts,
    body: &mut Incoming,
    request_id: &HeaderValue,
    exchange: &mut Exchange<'p>,
) -> Result<Response<Chunks>> {
    exchange.model = endpoint.model();
    match endpoint {
        Endpoint::Root => Ok(json_response(StatusCode::OK, json!({"status": "alive"}))),
        Endpoint::Live => Ok(json_response(StatusCode::OK, json!({"live": true}))),
        Endpoint::Ready => readiness(shared),
        Endpoint::Metrics => metrics(shared).await,
        Endpoint::ServerMetadata => Ok(json_response(
            StatusCode::OK,
            json!({"name": SERVER_NAME, "version": VERSION, "extensions": EXTENSIONS}),
        )),
        Endpoint::V1Models | Endpoint::V2Models => {
            let models = list_models(shared, parts, request_id).await;
            Ok(json_response(StatusCode::OK, json!({"models": models})))
        }
        Endpoint::V1Model(model) => model_ready(shared, model, None, parts, request_id).await,
        Endpoint::ModelReady(model) => {
            model_ready(shared, model.name, model.version, parts, request_id).await
        }
        Endpoint::ModelMetadata(model) => {
            let routes = shared.routes.load();
            let route = find(&routes, model.name)?;
            let call = shared.call(
                route,
                model.name,
                model.version,
                shared.forwarded(&parts.headers, request_id),
            );
            let metadata = call.model_metadata().await?;
            Ok(bytes_response(
                StatusCode::OK,
                metadata_to_json(&metadata).into(),
            ))
        }
        Endpoint::Load(model) | Endpoint::Unload(model) => {
            let load = matches!(endpoint, Endpoint::Load(_));
            let routes = shared.routes.load();
            let route = find(&routes, model)?;
            let call = shared.call(
                route,
                model,
                None,
                shared.forwarded(&parts.headers, request_id),
            );
            call.repository(load).await?;
            let key = if load { "load" } else { "unload" };
            Ok(json_response(
                StatusCode::OK,
                json!({"name": model, key: true}),
            ))
        }
        Endpoint::V1Predict(model) => {
            let inference = Inference {
                front: RestFront::V1Predict,
                model,
                version: None,
            };
            infer(shared, inference, parts, body, request_id, exchange).await
        }
        Endpoint::V1Explain(model) => {
            let inference = Inference {
                front: RestFront::V1Explain,
                model,
                version: None,
            };
            infer(shared, inference, parts, body, request_id, exchange).await
        }
        Endpoint::Infer(model) => {
            let inference = Inference {
                front: RestFront::V2Infer,
                model: model.name,
                version: model.version,
            };
            infer(shared, inference, parts, body, request_id, exchange).await
        }
    }
}

/// An inference endpoint: the protocol and the model (and version) it names.
#[derive(Debug, Clone, Copy)]
struct Inference<'p> {
    front: RestFront,
    model: &'p str,
    version: Option<&'p str>,
}

async fn infer(
    shared: &Shared,
    inference: Inference<'_>,
    parts: &Parts,
    body: &mut Incoming,
    request_id: &HeaderValue,
    exchange: &mut Exchange<'_>,
) -> Result<Response<Chunks>> {
    let Inference {
        front,
        model,
        version,
    } = inference;
    let routes = shared.routes.load();
    let route = find(&routes, model)?;
    exchange.protocol = Some(match front {
        RestFront::V1Predict | RestFront::V1Explain => Protocol::V1,
        RestFront::V2Infer => Protocol::V2,
    });
    exchange.configured = !route.is_wildcard();
    exchange.explain = front == RestFront::V1Explain;
    let _admission = route.admit()?;
    let header_length = header_length(parts)?;
    let body = read_body(parts, body, route, shared.client_timeout).await?;
    exchange.bytes_in = body.len();
    let call = shared.call(
        route,
        model,
        version,
        shared.forwarded(&parts.headers, request_id),
    );
    let content_type = parts.headers.get(CONTENT_TYPE).cloned();
    let reply = call.rest(front, body, header_length, content_type).await;
    exchange.upstream = call.upstream_time();
    Ok(reply_response(reply?))
}

/// The configured model names, then those the wildcard route's backend lists (a sidecar in
/// front of a model server lists the server's models).
async fn list_models(shared: &Shared, parts: &Parts, request_id: &HeaderValue) -> Vec<String> {
    let routes = shared.routes.load();
    let mut models = routes.names().to_vec();
    if let Some(wildcard) = routes.wildcard() {
        let headers = shared.forwarded(&parts.headers, request_id);
        let call = shared.call(wildcard, WILDCARD, None, headers);
        for name in call.backend_models().await {
            if !models.contains(&name) {
                models.push(name);
            }
        }
    }
    models
}

fn find<'r>(routes: &'r crate::route::Routes, model: &str) -> Result<&'r Arc<Route>> {
    routes.get(model).ok_or_else(|| not_found(model))
}

fn header_length(parts: &Parts) -> Result<Option<usize>> {
    let Some(value) = parts.headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    let length = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            Error::bad_request(format!(
                "{HEADER_LENGTH} must be a non-negative integer, got {value:?}"
            ))
        })?;
    Ok(Some(length))
}

/// Reads the body, refusing it as soon as it is known to exceed the route's limit, or when the
/// client does not send it within `timeout`.
async fn read_body(
    parts: &Parts,
    body: &mut Incoming,
    route: &Route,
    timeout: Duration,
) -> Result<Chunks> {
    let max = route.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return Err(too_large(max));
    }
    let reading = tokio::time::timeout(timeout, Chunks::read(body, max));
    let Ok(read) = reading.await else {
        let ms = timeout.as_millis();
        return Err(Error::bad_request(format!(
            "the request body did not arrive within client_timeout ({ms} ms)"
        )));
    };
    match read {
        Ok(chunks) => Ok(chunks),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large(max)),
        Err(error) => Err(Error::bad_request(format!(
            "cannot read the request body: {error}"
        ))),
    }
}

pub(super) fn too_large(max: usize) -> Error {
    Error::too_large(format!(
        "request body is larger than max_body_bytes ({max} bytes)"
    ))
}

fn readiness(shared: &Shared) -> Result<Response<Chunks>> {
    if shared.is_ready() {
        Ok(json_response(StatusCode::OK, json!({"ready": true})))
    } else {
        Err(Error::unavailable("Server is not ready."))
    }
}

async fn model_ready(
    shared: &Shared,
    model: &str,
    version: Option<&str>,
    parts: &Parts,
    request_id: &HeaderValue,
) -> Result<Response<Chunks>> {
    let routes = shared.routes.load();
    let route = find(&routes, model)?;
    let draining = shared.draining.load(std::sync::atomic::Ordering::Relaxed);
    let call = shared.call(
        route,
        model,
        version,
        shared.forwarded(&parts.headers, request_id),
    );
    if draining || !call.model_ready().await? {
        return Err(not_ready(model));
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"name": model, "ready": true}),
    ))
}

async fn metrics(shared: &Shared) -> Result<Response<Chunks>> {
    let text = shared.host.metrics().await?;
    let mut response = bytes_response(StatusCode::OK, text.into());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// 404 and 405 in the V2 error envelope (KServe answers FastAPI's `{"detail": ...}`).
fn mismatch_response(mismatch: Mismatch) -> Response<Chunks> {
    match mismatch {
        Mismatch::NotFound => error_response(&Error::not_found("Not Found")),
        Mismatch::MethodNotAllowed(allowed) => {
            let body =
                Error::bad_request(format!("Method Not Allowed (use {allowed})")).to_json_body();
            let mut response = bytes_response(StatusCode::METHOD_NOT_ALLOWED, body.into());
            // A GET route answers HEAD too.
            let allow = if allowed == "GET" {
                "GET, HEAD"
            } else {
                allowed
            };
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            response
        }
    }
}

fn reply_response(reply: RestReply) -> Response<Chunks> {
    let mut response = Response::new(reply.body);
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    if let Some(content_type) = reply.content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    if let Some(length) = reply.header_length {
        response
            .headers_mut()
            .insert(HEADER_LENGTH, HeaderValue::from(length));
    }
    response
}

fn bytes_response(status: StatusCode, body: Bytes) -> Response<Chunks> {
    let mut response = Response::new(Chunks::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Chunks> {
    bytes_response(status, value.to_string().into())
}

fn error_response(error: &Error) -> Response<Chunks> {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = bytes_response(status, error.to_json_body().into());
    // Our own 503s (a full batch queue, shedding, a model not ready) are worth retrying soon;
    // a backend's own 503 says nothing of when it recovers.
    if status == StatusCode::SERVICE_UNAVAILABLE && error.origin() == Origin::Client {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
