//! Model readiness, metadata and repository load/unload, asked of a route's backend in its own
//! protocol. Metadata is kept as the OIP message and converted to and from its REST JSON form.

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use super::forward::{Call, v2_path};
use super::{grpc, http as rest};
use crate::config::RestProtocol;
use crate::error::{Error, ErrorKind, Result};
use crate::proto::model_metadata_response::TensorMetadata;
use crate::proto::{
    ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest, RepositoryModelLoadRequest,
    RepositoryModelUnloadRequest,
};
use crate::route::{Backend, not_ready};

/// The longest a model listing waits for the wildcard route's backend.
pub const LISTING_TIMEOUT: Duration = Duration::from_secs(2);

impl Call<'_> {
    /// Whether the model can serve: the route's replicas are up and, for remote backends, the
    /// backend says the model is ready. A backend that cannot be reached or does not answer
    /// cannot serve: that is "not ready" (KServe's answer), not the connection error.
    pub async fn model_ready(&self) -> Result<bool> {
        if !self.route.is_ready() {
            return Ok(false);
        }
        match self.backend_ready().await {
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::BadGateway
                ) =>
            {
                Ok(false)
            }
            answer => answer,
        }
    }

    async fn backend_ready(&self) -> Result<bool> {
        let model = self.route.backend_model(self.model);
        match &self.route.backend {
            Backend::Local(_) => Ok(true),
            Backend::Http { protocol, .. } => {
                let path = match protocol.own() {
                    RestProtocol::V2 => v2_path(model, self.version, "/ready"),
                    RestProtocol::V1 => format!("/v1/models/{model}"),
                };
                let reply = self.get(&path).await?;
                match reply.status.as_u16() {
                    200..=299 => Ok(true),
                    503 => Ok(false),
                    _ => Err(reply.to_error()),
                }
            }
            Backend::Grpc { replicas, .. } => {
                let lease = replicas.pick()?;
                let mut client = lease.replica.client.clone();
                let message = ModelReadyRequest {
                    name: model.to_owned(),
                    version: self.version.unwrap_or_default().to_owned(),
                };
                let answer = client
                    .model_ready(grpc::request(message, &self.headers, self.route.timeout))
                    .await
                    .map_err(|s| grpc::status_error(&lease.replica.url, &s))?;
                Ok(answer.into_inner().ready)
            }
        }
    }

    /// The model's metadata: from the configuration, else from the backend (cached), under the
    /// name the client asked for (a route's `model` alias stays the gateway's business).
    pub async fn model_metadata(&self) -> Result<ModelMetadataResponse> {
        let mut metadata = self.metadata_of_route().await?;
        self.model.clone_into(&mut metadata.name);
        Ok(metadata)
    }

    async fn metadata_of_route(&self) -> Result<ModelMetadataResponse> {
        if let Some(configured) = &self.route.metadata {
            return metadata_from_json(configured, self.model);
        }
        let model = self.route.backend_model(self.model);
        match &self.route.backend {
            Backend::Local(_) => metadata_from_json(&json!({}), self.model),
            Backend::Http { .. } => {
                let key = v2_path(model, self.version, "");
                let body = match self.route.cached_metadata(&key) {
                    Some(body) => body,
                    None => {
                        let reply = self.get(&key).await?;
                        if !reply.is_success() {
                            return Err(reply.to_error());
                        }
                        let body = reply.body.to_bytes();
                        self.route.cache_metadata(&key, body.clone());
                        body
                    }
                };
                let value: Value = serde_json::from_slice(&body).map_err(|e| {
                    Error::upstream(
                        ErrorKind::BadGateway,
                        format!("backend sent invalid model metadata: {e}"),
                    )
                })?;
                metadata_from_json(&value, model)
            }
            Backend::Grpc { replicas, .. } => {
                let key = format!("grpc:{model}:{}", self.version.unwrap_or_default());
                if let Some(body) = self.route.cached_metadata(&key) {
                    let value: Value = serde_json::from_slice(&body).unwrap_or_default();
                    return metadata_from_json(&value, model);
                }
                let lease = replicas.pick()?;
                let mut client = lease.replica.client.clone();
                let message = ModelMetadataRequest {
                    name: model.to_owned(),
                    version: self.version.unwrap_or_default().to_owned(),
                };
                let answer = client
                    .model_metadata(grpc::request(message, &self.headers, self.route.timeout))
                    .await
                    .map_err(|s| grpc::status_error(&lease.replica.url, &s))?
                    .into_inner();
                self.route
                    .cache_metadata(&key, metadata_to_json(&answer).into());
                Ok(answer)
            }
        }
    }

    /// Asks the backend to load (`true`) or unload (`false`) the model.
    pub async fn repository(&self, load: bool) -> Result<()> {
        let model = self.route.backend_model(self.model).to_owned();
        let action = if load { "load" } else { "unload" };
        match &self.route.backend {
            Backend::Local(_) => Err(Error::unsupported(format!(
                "model '{}' runs in-process; it is loaded from the configuration, not the repository API",
                self.model
            ))),
            Backend::Http { replicas, .. } => {
                let path = format!("/v2/repository/models/{model}/{action}");
                let empty = rest::Chunks::default();
                for replica in replicas.all() {
                    let send = || {
                        rest::send(
                            self.http,
                            Method::POST,
                            replica,
                            &path,
                            &self.headers,
                            &empty,
                            self.route.limits.max_body_bytes,
                        )
                    };
                    let reply = self.bounded(send).await?;
                    if !reply.is_success() {
                        return Err(reply.to_error());
                    }
                }
                Ok(())
            }
            Backend::Grpc { replicas, .. } => {
                for replica in replicas.all() {
                    let mut client = replica.client.clone();
                    let result = if load {
                        let message = RepositoryModelLoadRequest {
                            model_name: model.clone(),
                        };
                        client
                            .repository_model_load(grpc::request(
                                message,
                                &self.headers,
                                self.route.timeout,
                            ))
                            .await
                            .map(|_| ())
                    } else {
                        let message = RepositoryModelUnloadRequest {
                            model_name: model.clone(),
                        };
                        client
                            .repository_model_unload(grpc::request(
                                message,
                                &self.headers,
                                self.route.timeout,
                            ))
                            .await
                            .map(|_| ())
                    };
                    result.map_err(|s| grpc::status_error(&replica.url, &s))?;
                }
                Ok(())
            }
        }
    }

    /// The models a REST backend lists (`GET /v1/models` or `/v2/models` in the route's
    /// protocol: KServe's listing; MLServer and Triton have none). Cached like metadata, and
    /// asked within [`LISTING_TIMEOUT`]: a backend that cannot list lists nothing.
    pub async fn backend_models(&self) -> Vec<String> {
        let Backend::Http { protocol, .. } = &self.route.backend else {
            return Vec::new();
        };
        let path = match protocol.own() {
            RestProtocol::V1 => "/v1/models",
            RestProtocol::V2 => "/v2/models",
        };
        let body = match self.route.cached_metadata(path) {
            Some(body) => body,
            None => match tokio::time::timeout(LISTING_TIMEOUT, self.get(path)).await {
                Ok(Ok(reply)) if reply.is_success() => {
                    let body = reply.body.to_bytes();
                    self.route.cache_metadata(path, body.clone());
                    body
                }
                _ => return Vec::new(),
            },
        };
        let listing: Value = serde_json::from_slice(&body).unwrap_or_default();
        listing
            .get("models")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }

    /// GETs `path` from the least busy replica.
    async fn get(&self, path: &str) -> Result<rest::Reply> {
        let Backend::Http { replicas, .. } = &self.route.backend else {
            return Err(Error::internal(
                "REST request on a route without a REST backend",
            ));
        };
        let lease = replicas.pick().map_err(|_| not_ready(self.model))?;
        let empty = rest::Chunks::default();
        let probe = || {
            rest::send(
                self.http,
                Method::GET,
                lease.replica,
                path,
                &self.headers,
                &empty,
                self.route.limits.max_body_bytes,
            )
        };
        self.bounded(probe).await
    }
}

/// Reads V2 REST model metadata (`{"name", "versions", "platform", "inputs", "outputs"}`);
/// missing fields are empty, and the name defaults to `model`.
pub fn metadata_from_json(value: &Value, model: &str) -> Result<ModelMetadataResponse> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let versions = match value.get("versions") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(ModelMetadataResponse {
        name: text("name").unwrap_or_else(|| model.to_owned()),
        versions,
        platform: text("platform").unwrap_or_default(),
        inputs: tensors_from_json(value.get("inputs"))?,
        outputs: tensors_from_json(value.get("outputs"))?,
        properties: Default::default(),
    })
}

fn tensors_from_json(value: Option<&Value>) -> Result<Vec<TensorMetadata>> {
    let Some(Value::Array(items)) = value else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| {
            let field = |key: &str| {
                item.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let shape = match item.get("shape") {
                Some(Value::Array(dims)) => dims
                    .iter()
                    .map(|d| {
                        d.as_i64()
                            .ok_or_else(|| bad_metadata("shape holds a non-integer"))
                    })
                    .collect::<Result<_>>()?,
                _ => Vec::new(),
            };
            Ok(TensorMetadata {
                name: field("name"),
                datatype: field("datatype"),
                shape,
            })
        })
        .collect()
}

fn bad_metadata(what: &str) -> Error {
    Error::upstream(
        ErrorKind::BadGateway,
        format!("invalid model metadata: {what}"),
    )
}

/// The V2 REST JSON form of model metadata.
pub fn metadata_to_json(metadata: &ModelMetadataResponse) -> Vec<u8> {
    let tensors = |list: &[TensorMetadata]| -> Vec<Value> {
        list.iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
            .collect()
    };
    let value = json!({
        "name": metadata.name,
        "versions": metadata.versions,
        "platform": metadata.platform,
        "inputs": tensors(&metadata.inputs),
        "outputs": tensors(&metadata.outputs),
    });
    value.to_string().into_bytes()
}
