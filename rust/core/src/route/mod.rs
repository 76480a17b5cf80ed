//! The routing table: model name → route (backend, timeouts, limits, metadata). A table is an
//! immutable snapshot built from the configuration and swapped atomically on reload, so a
//! request keeps the route it started with.

mod health;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::batch::Batchers;
use crate::config::{BackendConfig, GatewayConfig, HttpProtocol, ModelConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::upstream::replicas::{Replicas, Verdict};
use crate::upstream::{Host, LocalModel, grpc, http};

/// The route name that matches every model no other route names.
pub const WILDCARD: &str = "*";

#[derive(Debug)]
pub enum Backend {
    /// REST backends speaking V1 or V2; the shared HTTP client holds their connections.
    Http {
        replicas: Replicas<http::Endpoint>,
        protocol: HttpProtocol,
        /// Send V2 tensors with the binary extension (`true`), as JSON (`false`), or in the
        /// client's form (`None`; translated requests then go as JSON).
        binary: Option<bool>,
        model: Option<String>,
    },
    Grpc {
        replicas: Replicas<grpc::Client>,
        model: Option<String>,
    },
    Local(Arc<dyn LocalModel>),
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub backend: Backend,
    pub timeout: Duration,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub limits: Limits,
    /// Model metadata from the configuration (served instead of asking the backend).
    pub metadata: Option<serde_json::Value>,
    /// Batchers of the models this route serves, when batching is configured.
    pub batching: Option<Batchers>,
    max_concurrency: usize,
    in_flight: AtomicUsize,
    metadata_ttl: Duration,
    metadata_cache: Mutex<HashMap<String, (Instant, Bytes)>>,
}

/// A request admitted under a route's concurrency limit; dropping it frees the slot.
#[derive(Debug)]
pub struct Admission<'r> {
    route: &'r Route,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.route.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Route {
    /// Whether this is the wildcard route (which serves every name without a route of its own).
    pub fn is_wildcard(&self) -> bool {
        self.name == WILDCARD
    }

    fn build(model: &ModelConfig, config: &GatewayConfig, host: &dyn Host) -> Result<Self> {
        let eject_for = Duration::from_millis(model.eject_ms);
        let backend = match &model.backend {
            BackendConfig::Http {
                urls,
                protocol,
                binary,
                model: backend_model,
            } => Backend::Http {
                replicas: Replicas::new(
                    urls.iter()
                        .map(|url| {
                            let endpoint = http::endpoint(
                                url,
                                config.connect_timeout(),
                                config.pool_idle_timeout(),
                            )?;
                            Ok((url.clone(), endpoint))
                        })
                        .collect::<Result<Vec<_>>>()?,
                    model.eject_after_failures,
                    eject_for,
                    !config.health_checks(),
                ),
                protocol: *protocol,
                binary: *binary,
                model: backend_model.clone(),
            },
            BackendConfig::Grpc {
                urls,
                model: backend_model,
            } => {
                let clients = urls
                    .iter()
                    .map(|url| {
                        Ok((
                            url.clone(),
                            grpc::client(
                                url,
                                config.grpc_max_message_bytes,
                                config.connect_timeout(),
                            )?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Backend::Grpc {
                    replicas: Replicas::new(
                        clients,
                        model.eject_after_failures,
                        eject_for,
                        !config.health_checks(),
                    ),
                    model: backend_model.clone(),
                }
            }
            BackendConfig::Python { target } => {
                Backend::Local(host.local_model(&model.name, target)?)
            }
        };
        Ok(Self {
            name: model.name.clone(),
            backend,
            timeout: model.timeout(),
            retries: model.retries,
            retry_backoff: Duration::from_millis(model.retry_backoff_ms),
            limits: model.limits,
            metadata: model.metadata.clone(),
            batching: match &model.batching {
                Some(batching) => Some(Batchers::new(batching.policy()?)),
                None => None,
            },
            max_concurrency: model.max_concurrency.max(1),
            in_flight: AtomicUsize::new(0),
            metadata_ttl: Duration::from_millis(config.metadata_ttl_ms),
            metadata_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The model name to use at the backend for a request to `requested`.
    pub fn backend_model<'a>(&'a self, requested: &'a str) -> &'a str {
        let configured = match &self.backend {
            Backend::Http { model, .. } | Backend::Grpc { model, .. } => model.as_deref(),
            Backend::Local(_) => None,
        };
        configured.unwrap_or(requested)
    }

    /// Takes a concurrency slot, or sheds the request when the model is saturated.
    pub fn admit(&self) -> Result<Admission<'_>> {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let admission = Admission { route: self };
        if before >= self.max_concurrency {
            return Err(Error::new(
                ErrorKind::Overloaded,
                format!(
                    "model '{}' has {} requests in flight (max_concurrency {}); retry later",
                    self.name, before, self.max_concurrency
                ),
            ));
        }
        Ok(admission)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The model version a gRPC request names, as the backend is to see it: none for a `both`
    /// backend (KServe's ModelServer), whose gRPC server ignores versions while its REST side
    /// refuses them (501), so that a gRPC client gets what KServe's own gRPC would give it.
    pub fn grpc_version<'v>(&self, version: Option<&'v str>) -> Option<&'v str> {
        match &self.backend {
            Backend::Http {
                protocol: HttpProtocol::Both,
                ..
            } => None,
            _ => version,
        }
    }

    fn adopt(&self, verdicts: &HashMap<String, Verdict>) {
        match &self.backend {
            Backend::Http { replicas, .. } => replicas.adopt(verdicts),
            Backend::Grpc { replicas, .. } => replicas.adopt(verdicts),
            Backend::Local(_) => {}
        }
    }

    /// Whether the backend can take requests (some replica has passed a health check, when
    /// there are checks, and is healthy and not ejected).
    pub fn is_ready(&self) -> bool {
        match &self.backend {
            Backend::Http { replicas, .. } => replicas.is_ready(),
            Backend::Grpc { replicas, .. } => replicas.is_ready(),
            Backend::Local(_) => true,
        }
    }

    /// Cached backend metadata for `model`, if fresh.
    pub fn cached_metadata(&self, model: &str) -> Option<Bytes> {
        let cache = self.metadata_cache.lock().ok()?;
        let (at, body) = cache.get(model)?;
        (at.elapsed() < self.metadata_ttl).then(|| body.clone())
    }

    pub fn cache_metadata(&self, model: &str, body: Bytes) {
        if let Ok(mut cache) = self.metadata_cache.lock() {
            cache.insert(model.to_owned(), (Instant::now(), body));
        }
    }
}

/// One routing snapshot.
#[derive(Debug, Default)]
pub struct Routes {
    by_name: HashMap<String, Arc<Route>>,
    /// Route names in configuration order (for listings).
    names: Vec<String>,
    wildcard: Option<Arc<Route>>,
}

impl Routes {
    /// Builds the routes of `config`, with in-process models resolved by `host`, and starts
    /// their active health checks (which stop when the snapshot is dropped). Replicas whose URL
    /// was in `earlier` (the snapshot a reload replaces) keep its health verdicts.
    pub fn build(
        config: &GatewayConfig,
        host: &dyn Host,
        client: &http::Client,
        earlier: Option<&Routes>,
    ) -> Result<Self> {
        let verdicts = earlier.map(Routes::verdicts).unwrap_or_default();
        let mut routes = Self::default();
        for model in &config.models {
            let route = Arc::new(
                Route::build(model, config, host)
                    .map_err(|e| e.context(format!("model '{}'", model.name)))?,
            );
            route.adopt(&verdicts);
            health::spawn(&route, config.health_check_interval(), client);
            if model.name == WILDCARD {
                routes.wildcard = Some(route);
            } else {
                routes.names.push(model.name.clone());
                routes.by_name.insert(model.name.clone(), route);
            }
        }
        Ok(routes)
    }

    /// What the health checks know of every remote replica, by URL.
    fn verdicts(&self) -> HashMap<String, Verdict> {
        let mut verdicts = HashMap::new();
        for route in self.all() {
            let replicas: Vec<(&str, Verdict)> = match &route.backend {
                Backend::Http { replicas, .. } => replicas.verdicts().collect(),
                Backend::Grpc { replicas, .. } => replicas.verdicts().collect(),
                Backend::Local(_) => Vec::new(),
            };
            for (url, verdict) in replicas {
                verdicts.insert(url.to_owned(), verdict);
            }
        }
        verdicts
    }

    /// The route for `model`: its own, else the wildcard.
    pub fn get(&self, model: &str) -> Option<&Arc<Route>> {
        self.by_name.get(model).or(self.wildcard.as_ref())
    }

    /// The wildcard route, if one is configured.
    pub fn wildcard(&self) -> Option<&Arc<Route>> {
        self.wildcard.as_ref()
    }

    /// The named (non-wildcard) models, in configuration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.by_name.values().chain(self.wildcard.iter())
    }
}

/// KServe's text for a model no route serves.
pub fn not_found(model: &str) -> Error {
    Error::not_found(format!("Model with name {model} does not exist."))
}

/// KServe's text for a model that cannot serve right now.
pub fn not_ready(model: &str) -> Error {
    Error::unavailable(format!("Model with name {model} is not ready."))
}
