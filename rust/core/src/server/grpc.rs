//! The gRPC front end: `inference.GRPCInferenceService` over the same routes as REST, with
//! errors as gRPC statuses (NOT_FOUND, UNAVAILABLE, INVALID_ARGUMENT, ...).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::Incoming;
use prost::Message;
use tonic::{Status, async_trait};

use super::rest::too_large;
use super::{AccessLine, REQUEST_ID, Shared, request_id};
use crate::error::Error;
use crate::metrics::{Observation, Protocol};
use crate::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use crate::proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, RepositoryModelLoadRequest, RepositoryModelLoadResponse,
    RepositoryModelUnloadRequest, RepositoryModelUnloadResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse,
};
use crate::route::{Route, Routes, not_found};

pub type Service = GrpcInferenceServiceServer<Front>;

const SERVER_NAME: &str = "tensorgate";
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn service(shared: &Arc<Shared>, max_message_bytes: usize) -> Service {
    GrpcInferenceServiceServer::new(Front {
        shared: Arc::clone(shared),
    })
    .max_decoding_message_size(max_message_bytes)
    .max_encoding_message_size(max_message_bytes)
}

pub fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The methods of KServe's `inference.GRPCInferenceService`, which this service implements.
const METHODS: [&str; 8] = [
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
];

/// Serves one gRPC request (the generated service is always ready, so no `poll_ready`).
pub async fn call(
    service: &Service,
    request: Request<Incoming>,
) -> Result<Response<tonic::body::Body>, Infallible> {
    let path = request.uri().path();
    let method = path.strip_prefix("/inference.GRPCInferenceService/");
    if !method.is_some_and(|method| METHODS.contains(&method)) {
        // The generated service answers UNIMPLEMENTED with no message; a Triton client asking
        // for ModelConfig or ModelStatistics is better told why.
        let message = format!(
            "{path} is not served: tensorgate implements KServe's inference.GRPCInferenceService ({})",
            METHODS.join(", ")
        );
        return Ok(Status::unimplemented(message).into_http());
    }
    tonic::codegen::Service::call(&mut service.clone(), request).await
}

#[derive(Debug)]
pub struct Front {
    shared: Arc<Shared>,
}

fn status(error: &Error) -> Status {
    Status::new(error.grpc_code(), error.message())
}

fn find<'r>(routes: &'r Routes, model: &str) -> Result<&'r Arc<Route>, Status> {
    routes.get(model).ok_or_else(|| status(&not_found(model)))
}

/// The answer to a call, carrying its request id: with errors too, since those are what a
/// caller looks up.
fn respond<T>(id: &HeaderValue, result: Result<T, Status>) -> Result<tonic::Response<T>, Status> {
    let id = tonic::metadata::MetadataValue::try_from(id.as_bytes()).ok();
    let with_id = |metadata: &mut tonic::metadata::MetadataMap| {
        if let Some(id) = id {
            metadata.insert(REQUEST_ID, id);
        }
    };
    match result {
        Ok(message) => {
            let mut response = tonic::Response::new(message);
            with_id(response.metadata_mut());
            Ok(response)
        }
        Err(mut status) => {
            with_id(status.metadata_mut());
            Err(status)
        }
    }
}

fn version(version: &str) -> Option<&str> {
    (!version.is_empty()).then_some(version)
}

impl Front {
    /// The forwarded headers and request id of a call (gRPC metadata is headers).
    fn headers<T>(&self, request: &tonic::Request<T>) -> (HeaderMap, HeaderValue) {
        let headers = request.metadata().clone().into_headers();
        let id = request_id(&headers);
        (self.shared.forwarded(&headers, &id), id)
    }

    /// `size`: the request message's encoded length, held to the route's `max_body_bytes` as a
    /// REST body is (gRPC's own `grpc_max_message_bytes` is one limit for every model).
    async fn infer(
        &self,
        headers: HeaderMap,
        message: ModelInferRequest,
        size: usize,
        upstream: &mut Option<Duration>,
    ) -> Result<ModelInferResponse, Status> {
        let model = message.model_name.clone();
        let routes = self.shared.routes.load();
        let route = find(&routes, &model)?;
        if size > route.limits.max_body_bytes {
            return Err(status(&too_large(route.limits.max_body_bytes)));
        }
        let _admission = route.admit().map_err(|e| status(&e))?;
        let model_version = message.model_version.clone();
        let call = self.shared.call(
            route,
            &model,
            route.grpc_version(version(&model_version)),
            headers,
        );
        let result = call.grpc(message).await.map_err(|e| status(&e));
        *upstream = call.upstream_time();
        result
    }
}

#[async_trait]
impl GrpcInferenceService for Front {
    async fn server_live(
        &self,
        _: tonic::Request<ServerLiveRequest>,
    ) -> Result<tonic::Response<ServerLiveResponse>, Status> {
        Ok(tonic::Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: tonic::Request<ServerReadyRequest>,
    ) -> Result<tonic::Response<ServerReadyResponse>, Status> {
        Ok(tonic::Response::new(ServerReadyResponse {
            ready: self.shared.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: tonic::Request<ModelReadyRequest>,
    ) -> Result<tonic::Response<ModelReadyResponse>, Status> {
        let forwarded = self.headers(&request);
        let message = request.into_inner();
        let backend_ready = self
            .with_call(
                forwarded,
                "/inference.GRPCInferenceService/ModelReady",
                &message.name,
                version(&message.version),
                async |call| call.model_ready().await,
            )
            .await?;
        let draining = self.shared.draining.load(Ordering::Relaxed);
        Ok(backend_ready.map(|ready| ModelReadyResponse {
            ready: ready && !draining,
        }))
    }

    async fn server_metadata(
        &self,
        _: tonic::Request<ServerMetadataRequest>,
    ) -> Result<tonic::Response<ServerMetadataResponse>, Status> {
        Ok(tonic::Response::new(ServerMetadataResponse {
            name: SERVER_NAME.to_owned(),
            version: VERSION.to_owned(),
            extensions: vec!["model_repository".to_owned()],
        }))
    }

    async fn model_metadata(
        &self,
        request: tonic::Request<ModelMetadataRequest>,
    ) -> Result<tonic::Response<ModelMetadataResponse>, Status> {
        let forwarded = self.headers(&request);
        let message = request.into_inner();
        self.with_call(
            forwarded,
            "/inference.GRPCInferenceService/ModelMetadata",
            &message.name,
            version(&message.version),
            async |call| call.model_metadata().await,
        )
        .await
    }

    async fn model_infer(
        &self,
        request: tonic::Request<ModelInferRequest>,
    ) -> Result<tonic::Response<ModelInferResponse>, Status> {
        let started = Instant::now();
        let (headers, id) = self.headers(&request);
        let message = request.into_inner();
        let model = message.model_name.clone();
        let bytes_in = message.encoded_len();
        let mut upstream = None;
        let result = self.infer(headers, message, bytes_in, &mut upstream).await;
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        let bytes_out = result.as_ref().map_or(0, Message::encoded_len);
        let routes = self.shared.routes.load();
        if let Some(route) = routes.get(&model) {
            let observation = Observation {
                code: code as u16,
                bytes_in,
                bytes_out,
                duration: started.elapsed(),
                upstream,
                explain: false,
            };
            self.shared
                .metrics
                .record(&model, !route.is_wildcard(), Protocol::Grpc, observation);
        }
        self.log_call(
            &id,
            "/inference.GRPCInferenceService/ModelInfer",
            &model,
            code,
            started,
        );
        respond(&id, result)
    }

    async fn repository_model_load(
        &self,
        request: tonic::Request<RepositoryModelLoadRequest>,
    ) -> Result<tonic::Response<RepositoryModelLoadResponse>, Status> {
        let forwarded = self.headers(&request);
        let model = request.into_inner().model_name;
        let done = self.repository(&model, true, forwarded).await?;
        Ok(done.map(|()| RepositoryModelLoadResponse {
            model_name: model,
            is_loaded: true,
        }))
    }

    async fn repository_model_unload(
        &self,
        request: tonic::Request<RepositoryModelUnloadRequest>,
    ) -> Result<tonic::Response<RepositoryModelUnloadResponse>, Status> {
        let forwarded = self.headers(&request);
        let model = request.into_inner().model_name;
        let done = self.repository(&model, false, forwarded).await?;
        Ok(done.map(|()| RepositoryModelUnloadResponse {
            model_name: model,
            is_unloaded: true,
        }))
    }
}

impl Front {
    async fn repository(
        &self,
        model: &str,
        load: bool,
        forwarded: (HeaderMap, HeaderValue),
    ) -> Result<tonic::Response<()>, Status> {
        let path = if load {
            "/inference.GRPCInferenceService/RepositoryModelLoad"
        } else {
            "/inference.GRPCInferenceService/RepositoryModelUnload"
        };
        self.with_call(forwarded, path, model, None, async |call| {
            call.repository(load).await
        })
        .await
    }

    /// Runs `work` on a call of `path` to `model`'s route (NOT_FOUND when no route serves it),
    /// writes its access-log line and answers with the request id.
    async fn with_call<T>(
        &self,
        forwarded: (HeaderMap, HeaderValue),
        path: &str,
        model: &str,
        version: Option<&str>,
        work: impl AsyncFnOnce(&crate::upstream::forward::Call<'_>) -> crate::Result<T>,
    ) -> Result<tonic::Response<T>, Status> {
        let started = Instant::now();
        let (headers, id) = forwarded;
        let result = async {
            let routes = self.shared.routes.load();
            let route = find(&routes, model)?;
            let call = self
                .shared
                .call(route, model, route.grpc_version(version), headers);
            work(&call).await.map_err(|e| status(&e))
        }
        .await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.log_call(&id, path, model, code, started);
        respond(&id, result)
    }

    /// The access-log line of a call of `path` (a `GRPCInferenceService` method).
    fn log_call(
        &self,
        id: &HeaderValue,
        path: &str,
        model: &str,
        code: tonic::Code,
        started: Instant,
    ) {
        let line = AccessLine {
            request_id: id.to_str().unwrap_or("-"),
            method: "POST",
            path,
            model,
            protocol: Protocol::Grpc.as_str(),
            status: code as u16,
            started,
        };
        line.write(self.shared.settings.load().access_log);
    }
}
