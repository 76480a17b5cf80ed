//! Forwarding one inference call to its route's backend, in whatever protocol the backend
//! speaks. When the client's format is the backend's format the body goes through untouched;
//! otherwise it is decoded once into the tensor model and encoded for the backend, and the
//! answer comes back the same way.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, DATE, HeaderName, HeaderValue,
    PROXY_AUTHENTICATE, SERVER, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, StatusCode};

use super::BoxFuture;
use super::{grpc, http as rest};
use crate::batch;
use crate::codec::{grpc as grpc_codec, v1, v2};
use crate::config::RestProtocol;
use crate::error::{Error, ErrorKind, Result};
use crate::proto;
use crate::route::{Backend, Route};
use crate::tensor::{DataType, InferRequest, InferResponse, Tensor};

/// The binary extension's header: a name known at compile time, so lookups do not parse it.
pub const HEADER_LENGTH: HeaderName = HeaderName::from_static("inference-header-content-length");
pub const JSON: &str = "application/json";
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The content type of a V2 body: the binary extension's when it has a JSON header length.
fn v2_content_type(header_length: Option<usize>) -> HeaderValue {
    HeaderValue::from_static(if header_length.is_some() {
        OCTET_STREAM
    } else {
        JSON
    })
}

/// One inference call: the route, the model the client named and what to send along.
#[derive(Debug)]
pub struct Call<'a> {
    pub route: &'a Arc<Route>,
    pub model: &'a str,
    pub version: Option<&'a str>,
    /// Request headers to copy to the backend (already filtered by the allow-list).
    pub headers: HeaderMap,
    pub http: &'a rest::Client,
    /// Time spent waiting on the backend (or the in-process model), for the metrics.
    pub upstream_nanos: AtomicU64,
}

/// The REST protocol a client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestFront {
    V1Predict,
    V1Explain,
    V2Infer,
}

/// A REST answer for the client.
#[derive(Debug)]
pub struct RestReply {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub header_length: Option<usize>,
    /// The backend's own headers passed on to the client with a passthrough answer (see
    /// [`passed_on`]); none with an answer the gateway encoded.
    pub headers: HeaderMap,
    pub body: rest::Chunks,
}

impl RestReply {
    fn json(body: Vec<u8>) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: Some(HeaderValue::from_static(JSON)),
            header_length: None,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    fn v2(encoded: v2::Encoded) -> Self {
        let header_length = encoded.header_length();
        Self {
            status: StatusCode::OK,
            content_type: Some(v2_content_type(header_length)),
            header_length,
            headers: HeaderMap::new(),
            body: encoded.into(),
        }
    }

    /// A backend's REST answer, status and body unchanged; only an error body that is not
    /// `{"error": ...}` (FastAPI's `{"detail": ...}`, plain text) is rewrapped, message kept.
    fn passthrough(mut reply: rest::Reply) -> Self {
        if !reply.is_success() && !reply.is_error_envelope() {
            let body = reply.to_error().to_json_body().into();
            let mut headers = passed_on(std::mem::take(&mut reply.headers));
            headers.remove(CONTENT_ENCODING); // the body is the gateway's own now
            return Self {
                status: reply.status,
                content_type: Some(HeaderValue::from_static(JSON)),
                header_length: None,
                headers,
                body,
            };
        }
        let header_length = reply.header(HEADER_LENGTH).and_then(|v| v.parse().ok());
        let content_type = reply.headers.get(CONTENT_TYPE).cloned();
        Self {
            status: reply.status,
            content_type,
            header_length,
            headers: passed_on(reply.headers),
            body: reply.body,
        }
    }
}

/// A backend's response headers that go on to the client, as a reverse proxy passes them (nginx
/// does the same): all but the hop-by-hop ones (RFC 9110 §7.6.1, and any that `Connection`
/// names), the framing the gateway sets itself (`Content-Length`, and the content type and
/// binary header length it carries separately), and `Server`/`Date`, which are the gateway's.
fn passed_on(headers: HeaderMap) -> HeaderMap {
    // Most backends say only `keep-alive` or `close` there: nothing more to look up then.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| {
            !name.eq_ignore_ascii_case("keep-alive") && !name.eq_ignore_ascii_case("close")
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    // One pass over the few headers a backend sends, instead of a hashed removal per name;
    // the map stays unallocated when nothing is passed on (the usual case).
    let mut kept = HeaderMap::new();
    // The name of the values being read, if they are passed on: a header's second and later
    // values come without one.
    let mut passing: Option<HeaderName> = None;
    for (name, value) in headers {
        if let Some(name) = name {
            passing = (!NOT_PASSED_ON.contains(&name) && !named.contains(&name)).then_some(name);
        }
        if let Some(name) = &passing {
            kept.append(name.clone(), value);
        }
    }
    kept
}

static NOT_PASSED_ON: [HeaderName; 13] = [
    CONNECTION,
    PROXY_AUTHENTICATE,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    CONTENT_LENGTH,
    CONTENT_TYPE,
    SERVER,
    DATE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HEADER_LENGTH,
];

impl Call<'_> {
    /// Time spent waiting on the backend so far; `None` when it was never reached.
    pub fn upstream_time(&self) -> Option<Duration> {
        match self.upstream_nanos.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// Runs the future `work` makes, adding the time it took to the upstream time.
    ///
    /// `work` (here and in [`Self::bounded`]) makes its future rather than being one: an async
    /// fn keeps a future argument beside the future it awaits, so each such wrapper would double
    /// the size of every request's future, and the bytes copied with it.
    async fn timed<T, Fut: Future<Output = T>>(&self, work: impl FnOnce() -> Fut) -> T {
        let started = Instant::now();
        let output = work().await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.upstream_nanos
            .fetch_add(nanos.max(1), Ordering::Relaxed);
        output
    }

    fn backend_model(&self) -> &str {
        self.route.backend_model(self.model)
    }

    /// A REST inference call (`:predict`, `:explain`, `/infer`).
    /// The client's content type is kept when the body goes through unchanged.
    pub async fn rest(
        &self,
        front: RestFront,
        body: rest::Chunks,
        header_length: Option<usize>,
        content_type: Option<HeaderValue>,
    ) -> Result<RestReply> {
        if let Some(path) = self.passthrough_path(front, header_length) {
            let content_type = content_type.unwrap_or_else(|| v2_content_type(header_length));
            let headers = self.body_headers(content_type, header_length);
            let reply = self.http_call(&path, headers, body).await?;
            return Ok(RestReply::passthrough(reply));
        }
        // Boxed: the decoding path's state (codecs, batching, any backend protocol) is several
        // times the passthrough's, and every request's future would otherwise be that large
        // and be copied as such.
        Box::pin(self.decoded(front, body, header_length)).await
    }

    /// A REST inference call whose body is decoded into tensors and the answer encoded back.
    async fn decoded(
        &self,
        front: RestFront,
        body: rest::Chunks,
        header_length: Option<usize>,
    ) -> Result<RestReply> {
        let body = body.to_bytes();
        let limits = &self.route.limits;
        match front {
            RestFront::V1Predict => {
                let mut request = v1::decode_request(&body, limits)?;
                request.inputs = self.conform_v1(request.inputs, false).await?;
                let response = self.infer(request).await?;
                Ok(RestReply::json(v1::encode_response(&response)?))
            }
            RestFront::V1Explain => Err(Error::unsupported(format!(
                "model '{}' has no V1 explainer: its backend does not speak V1",
                self.model
            ))),
            RestFront::V2Infer => {
                let request = v2::decode_request(&body, header_length, limits)?;
                let binary = request.binary_outputs();
                let id = request.id.clone();
                let mut response = self.infer(request).await?;
                response.id = response.id.or(id);
                Ok(RestReply::v2(v2::encode_response(&response, &binary)?))
            }
        }
    }

    /// Fits V1 tensors (inputs of a V1 request, outputs of a V1 backend's answer) to the
    /// model's declared tensors, when it declares them: a lone unnamed tensor (`input-0`,
    /// `output-0`) takes the one declared name, and INT64/FP64 values are cast to the declared
    /// datatypes (V1 JSON has no others). Without metadata they stay as they are.
    async fn conform_v1(&self, tensors: Vec<Tensor>, outputs: bool) -> Result<Vec<Tensor>> {
        // A V1 backend has no V2 metadata of its own to ask for: only the route's counts.
        let v1_backend = matches!(
            &self.route.backend,
            Backend::Http { protocol, .. } if protocol.own() == RestProtocol::V1
        );
        if v1_backend && self.route.metadata.is_none() {
            return Ok(tensors);
        }
        let Ok(metadata) = self.model_metadata().await else {
            return Ok(tensors);
        };
        let (declared, default_name) = if outputs {
            (&metadata.outputs, v1::DEFAULT_OUTPUT_NAME)
        } else {
            (&metadata.inputs, v1::DEFAULT_INPUT_NAME)
        };
        let mut tensors = tensors;
        if let ([tensor], [only]) = (tensors.as_mut_slice(), declared.as_slice())
            && tensor.name == default_name
        {
            tensor.name.clone_from(&only.name);
        }
        let declared_type = |tensor: &Tensor| {
            let spec = declared.iter().find(|d| d.name == tensor.name)?;
            let target = spec.datatype.parse::<DataType>().ok()?;
            (target != tensor.datatype() && target != DataType::Bytes).then_some(target)
        };
        tensors
            .into_iter()
            .map(|tensor| match declared_type(&tensor) {
                Some(target) => tensor.cast(target),
                None => Ok(tensor),
            })
            .collect()
    }

    /// The backend path when the body can go through as is: same protocol, and for V2 the
    /// backend takes the client's encoding (`binary` unset, or matching the body's form).
    fn passthrough_path(&self, front: RestFront, header_length: Option<usize>) -> Option<String> {
        // Batched requests are decoded to be merged; explanations are never batched.
        if self.route.batching.is_some() && front != RestFront::V1Explain {
            return None;
        }
        let Backend::Http {
            protocol, binary, ..
        } = &self.route.backend
        else {
            return None;
        };
        let model = self.backend_model();
        let v1 = protocol.takes(RestProtocol::V1);
        match front {
            RestFront::V1Predict if v1 => Some(format!("/v1/models/{model}:predict")),
            RestFront::V1Explain if v1 => Some(format!("/v1/models/{model}:explain")),
            RestFront::V2Infer
                if protocol.takes(RestProtocol::V2)
                    && binary.is_none_or(|binary| binary == header_length.is_some()) =>
            {
                Some(v2_path(model, self.version, "/infer"))
            }
            _ => None,
        }
    }

    /// A gRPC `ModelInfer` call.
    pub async fn grpc(
        &self,
        request: proto::ModelInferRequest,
    ) -> Result<proto::ModelInferResponse> {
        if matches!(self.route.backend, Backend::Grpc { .. }) && self.route.batching.is_none() {
            return self.grpc_backend(request).await;
        }
        let request = grpc_codec::request_from_proto(request, &self.route.limits)?;
        let id = request.id.clone();
        let mut response = self.infer(request).await?;
        response.id = response.id.or(id);
        Ok(grpc_codec::response_to_proto(&response))
    }

    /// Sends a `ModelInfer` message to a gRPC backend as it is, under the backend's model name.
    async fn grpc_backend(
        &self,
        mut request: proto::ModelInferRequest,
    ) -> Result<proto::ModelInferResponse> {
        let Backend::Grpc { replicas, .. } = &self.route.backend else {
            return Err(Error::internal(
                "gRPC call on a route without a gRPC backend",
            ));
        };
        request.model_name = self.backend_model().to_owned();
        request.model_version = self.version.unwrap_or_default().to_owned();
        self.retrying(|| async {
            let lease = match replicas.pick() {
                Ok(lease) => lease,
                Err(error) => return Attempt::Retry(Err(error)),
            };
            let mut client = lease.replica.client.clone();
            let message = grpc::request(request.clone(), &self.headers, self.route.timeout);
            let result = client.model_infer(message).await;
            settle_grpc(&lease, &lease.replica.url, result)
        })
        .await
    }

    /// Runs a decoded request: through the model's batcher when it has one, else straight on
    /// the backend.
    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse> {
        let batcher = self
            .route
            .batching
            .as_ref()
            .and_then(|batchers| batchers.get(self.model, self.version));
        let Some(batcher) = batcher else {
            return self.send(request).await;
        };
        let requested = request.outputs.clone();
        let reply = batcher
            .submit(request, self.headers.clone(), || self.batch_sender())
            .await?;
        let nanos = u64::try_from(reply.upstream.as_nanos()).unwrap_or(u64::MAX);
        self.upstream_nanos.store(nanos.max(1), Ordering::Relaxed);
        select_outputs(reply.response, &requested, self.model)
    }

    fn batch_sender(&self) -> Arc<dyn batch::Sender> {
        Arc::new(BatchSender {
            route: Arc::clone(self.route),
            http: self.http.clone(),
            model: self.model.to_owned(),
            version: self.version.map(str::to_owned),
        })
    }

    /// Runs a decoded request on the backend, in the backend's protocol. The response names
    /// the backend's model, as a response passed through unchanged does.
    async fn send(&self, request: InferRequest) -> Result<InferResponse> {
        let model = self.backend_model().to_owned();
        let limits = &self.route.limits;
        let requested = request.outputs.clone();
        let mut response = match &self.route.backend {
            Backend::Local(local) => {
                // The client gets its 504 at the deadline; a Python call already running cannot
                // be interrupted and finishes on its worker, its answer dropped.
                let infer = || local.infer(request);
                let response = self.timed(|| self.bounded(infer)).await?;
                select_outputs(response, &requested, self.model)?
            }
            Backend::Http { protocol, .. } if protocol.own() == RestProtocol::V1 => {
                let body = v1::encode_request(&request)?;
                let path = format!("/v1/models/{model}:predict");
                let reply = self.http_json(&path, Bytes::from(body).into()).await?;
                let mut response = v1::decode_response(&reply.body.to_bytes(), &model, limits)
                    .map_err(invalid_answer)?;
                response.outputs = self.conform_v1(response.outputs, true).await?;
                // V1 has no requested outputs: the backend sends all of them.
                select_outputs(response, &requested, self.model)?
            }
            Backend::Http { binary, .. } => {
                let encoded = v2::encode_request(&request, binary.unwrap_or(false))?;
                let header_length = encoded.header_length();
                let headers = self.body_headers(v2_content_type(header_length), header_length);
                let path = v2_path(&model, self.version, "/infer");
                let reply = self
                    .http_call(&path, headers, rest::Chunks::from(encoded))
                    .await?;
                if !reply.is_success() {
                    return Err(reply.to_error());
                }
                let header_length = reply.header(HEADER_LENGTH).and_then(|v| v.parse().ok());
                v2::decode_response(&reply.body.to_bytes(), header_length, limits)
                    .map_err(invalid_answer)?
            }
            Backend::Grpc { .. } => {
                let proto = grpc_codec::request_to_proto(&request, &model, self.version);
                let response = self.grpc_backend(proto).await?;
                grpc_codec::response_from_proto(response, limits).map_err(invalid_answer)?
            }
        };
        if response.model_name.is_empty() {
            response.model_name = model;
        }
        Ok(response)
    }

    /// POSTs a JSON body and insists on a successful answer.
    async fn http_json(&self, path: &str, body: rest::Chunks) -> Result<rest::Reply> {
        let headers = self.body_headers(HeaderValue::from_static(JSON), None);
        let reply = self.http_call(path, headers, body).await?;
        if reply.is_success() {
            Ok(reply)
        } else {
            Err(reply.to_error())
        }
    }

    /// The headers of a request with a body: the forwarded ones, its content type, and the
    /// binary extension's JSON header length when it has one.
    fn body_headers(&self, content_type: HeaderValue, header_length: Option<usize>) -> HeaderMap {
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, content_type);
        if let Some(length) = header_length {
            headers.insert(HEADER_LENGTH, HeaderValue::from(length));
        }
        headers
    }

    /// POSTs to a REST replica, with retries, ejection and the route's timeout. Any answer the
    /// backend gives is returned; failures to get one, and 502/503 answers, are retried.
    async fn http_call(
        &self,
        path: &str,
        headers: HeaderMap,
        body: rest::Chunks,
    ) -> Result<rest::Reply> {
        let Backend::Http { replicas, .. } = &self.route.backend else {
            return Err(Error::internal(
                "REST call on a route without a REST backend",
            ));
        };
        let max_body = self.route.limits.max_body_bytes;
        self.retrying(|| async {
            let lease = match replicas.pick() {
                Ok(lease) => lease,
                Err(error) => return Attempt::Retry(Err(error)),
            };
            let sent = rest::send(
                self.http,
                Method::POST,
                lease.replica,
                path,
                &headers,
                &body,
                max_body,
            )
            .await;
            match sent {
                Ok(reply) if matches!(reply.status.as_u16(), 502 | 503) => {
                    lease.failed();
                    Attempt::Retry(Ok(reply))
                }
                Ok(reply) => {
                    lease.succeeded();
                    Attempt::Done(Ok(reply))
                }
                Err(error) => {
                    lease.failed();
                    Attempt::Retry(Err(error))
                }
            }
        })
        .await
    }

    /// Runs `attempt` until it is done or the route's retries are spent, backing off between
    /// tries; all of it within the route's timeout.
    async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let route = self.route;
        let attempts = || async {
            let mut tries = 0;
            loop {
                match attempt().await {
                    Attempt::Retry(_) if tries < route.retries => {
                        // Boxed: a timer is large, and only a retry needs this one.
                        Box::pin(tokio::time::sleep(backoff(route.retry_backoff, tries))).await;
                        tries += 1;
                    }
                    Attempt::Retry(result) | Attempt::Done(result) => return result,
                }
            }
        };
        self.timed(|| self.bounded(attempts)).await
    }

    /// The future `work` makes, within the route's timeout (a 504 when it runs out).
    pub(super) async fn bounded<T, Fut: Future<Output = Result<T>>>(
        &self,
        work: impl FnOnce() -> Fut,
    ) -> Result<T> {
        tokio::time::timeout(self.route.timeout, work())
            .await
            .unwrap_or_else(|_| {
                Err(Error::upstream(
                    ErrorKind::Timeout,
                    format!(
                        "backend of model '{}' did not answer within {} ms",
                        self.model,
                        self.route.timeout.as_millis()
                    ),
                ))
            })
    }
}

/// Sends a model's batches on its route's backend (owned: batches outlive client calls).
struct BatchSender {
    route: Arc<Route>,
    http: rest::Client,
    model: String,
    version: Option<String>,
}

impl batch::Sender for BatchSender {
    fn send(
        self: Arc<Self>,
        request: InferRequest,
        headers: HeaderMap,
    ) -> BoxFuture<Result<InferResponse>> {
        Box::pin(async move {
            let call = Call {
                route: &self.route,
                model: &self.model,
                version: self.version.as_deref(),
                headers,
                http: &self.http,
                upstream_nanos: AtomicU64::default(),
            };
            call.send(request).await
        })
    }
}

/// The outcome of one try: final, or worth another try if the budget allows (the result is
/// what the client gets when it does not).
enum Attempt<T> {
    Done(Result<T>),
    Retry(Result<T>),
}

fn backoff(base: Duration, tries: u32) -> Duration {
    base.saturating_mul(1 << tries.min(6))
}

fn settle_grpc<T, C>(
    lease: &super::replicas::Lease<'_, C>,
    url: &str,
    result: std::result::Result<tonic::Response<T>, tonic::Status>,
) -> Attempt<T> {
    match result {
        Ok(response) => {
            lease.succeeded();
            Attempt::Done(Ok(response.into_inner()))
        }
        Err(status) => {
            let error = grpc::status_error(url, &status);
            if error.kind() == ErrorKind::Unavailable {
                lease.failed();
                Attempt::Retry(Err(error))
            } else {
                lease.succeeded();
                Attempt::Done(Err(error))
            }
        }
    }
}

/// A backend answer that does not decode is the backend's fault: 502, not the client's 400.
fn invalid_answer(error: Error) -> Error {
    Error::upstream(
        ErrorKind::BadGateway,
        format!("backend sent an invalid response: {}", error.message()),
    )
}

/// Keeps the requested outputs, in the requested order (an in-process model returns all).
fn select_outputs(
    mut response: InferResponse,
    requested: &[crate::tensor::RequestedOutput],
    model: &str,
) -> Result<InferResponse> {
    if requested.is_empty() {
        return Ok(response);
    }
    let mut outputs = Vec::with_capacity(requested.len());
    for wanted in requested {
        let position = response
            .outputs
            .iter()
            .position(|o| o.name == wanted.name)
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "Unexpected inference output '{}' for model '{model}'",
                    wanted.name
                ))
            })?;
        outputs.push(response.outputs.swap_remove(position));
    }
    response.outputs = outputs;
    Ok(response)
}

/// `/v2/models/{model}[/versions/{version}]{suffix}`.
pub fn v2_path(model: &str, version: Option<&str>, suffix: &str) -> String {
    match version {
        Some(version) => format!("/v2/models/{model}/versions/{version}{suffix}"),
        None => format!("/v2/models/{model}{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::passed_on;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.append(name, HeaderValue::from_static(value));
        }
        map
    }

    fn pairs(map: &HeaderMap) -> Vec<(String, String)> {
        map.iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect()
    }

    /// Every value of a kept header goes on, in the backend's order; hop-by-hop headers, those
    /// `Connection` names, framing, `Server` and `Date` stay behind, all their values with them.
    #[test]
    fn backend_headers_passed_on() {
        let backend = headers(&[
            ("set-cookie", "a=1"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("content-type", "application/json"),
            ("set-cookie", "b=2"),
            ("keep-alive", "timeout=5"),
            ("x-trace", "t"),
            ("server", "uvicorn"),
            ("date", "Sun, 06 Dec 2026 21:00:00 GMT"),
            ("content-length", "12"),
            ("inference-header-content-length", "8"),
            ("transfer-encoding", "chunked"),
            ("retry-after", "3"),
        ]);
        let expected = [
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("x-trace", "t"),
            ("retry-after", "3"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(pairs(&passed_on(backend)), expected);
        assert!(passed_on(headers(&[("server", "nginx"), ("connection", "close")])).is_empty());
    }
}
