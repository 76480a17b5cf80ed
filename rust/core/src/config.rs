//! The gateway's resolved configuration: the JSON snapshot the Python layer builds from the YAML
//! file, environment and flags (`tensorgate.config.GatewayConfig.to_core()`). Python validates
//! and explains; this side only refuses anything it does not know, so the two cannot drift.

use std::time::Duration;

use serde::Deserialize;

use crate::batch::{Delay, Policy};
use crate::error::{Error, Result};
use crate::limits::Limits;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub host: String,
    pub http_port: u16,
    pub grpc_port: u16,
    pub grpc_max_message_bytes: usize,
    pub drain_timeout_ms: u64,
    pub access_log: AccessLog,
    pub readiness: Readiness,
    /// Request headers copied to backends (lowercase names).
    pub forward_headers: Vec<String>,
    pub health_check_interval_ms: u64,
    pub metadata_ttl_ms: u64,
    pub python_workers: usize,
    /// In-process model calls that may wait for a Python worker before new ones are shed.
    pub python_queue_size: usize,
    /// Longest wait for a TCP connection to a backend.
    pub connect_timeout_ms: u64,
    /// Keep-alive connections to a REST backend idle this long are closed, not reused.
    pub pool_idle_timeout_ms: u64,
    /// Longest wait for a client's request headers, and then for its body.
    pub client_timeout_ms: u64,
    pub models: Vec<ModelConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    Off,
    Text,
    Json,
}

/// What the server's readiness (`/v2/health/ready`, gRPC `ServerReady`) follows, besides the
/// drain: a model whose backend is down always answers 503 itself, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// Every route has a healthy replica (KServe's rule; right for a sidecar).
    All,
    /// At least one route has: one broken backend does not take a many-model gateway out of
    /// its Service.
    Any,
    /// The gateway itself is up: only a drain makes it not ready.
    Live,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model name clients use, or `*` for the wildcard route.
    pub name: String,
    pub backend: BackendConfig,
    pub timeout_ms: u64,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub max_concurrency: usize,
    pub eject_after_failures: u32,
    pub eject_ms: u64,
    pub limits: Limits,
    pub metadata: Option<serde_json::Value>,
    pub batching: Option<BatchingConfig>,
}

/// A model's batcher settings; sizes count rows (dimension 0), the queue counts requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    pub max_batch_size: usize,
    pub delay: QueueDelay,
    pub preferred_batch_sizes: Vec<usize>,
    pub max_queue_size: usize,
    pub queue_timeout_ms: u64,
    pub max_inflight_batches: usize,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum QueueDelay {
    /// `max_queue_delay_ms` as a number (microseconds here, for sub-millisecond delays).
    Fixed { micros: u64 },
    /// `max_queue_delay_ms: auto`.
    Auto { target_latency_ms: u64 },
}

impl BatchingConfig {
    pub fn policy(&self) -> Result<Policy> {
        let delay = match self.delay {
            QueueDelay::Fixed { micros } => Delay::Fixed(Duration::from_micros(micros)),
            QueueDelay::Auto { target_latency_ms } => Delay::Auto {
                target_latency: Duration::from_millis(target_latency_ms),
            },
        };
        Policy {
            max_batch_size: self.max_batch_size,
            delay,
            preferred_batch_sizes: self.preferred_batch_sizes.clone(),
            max_queue_size: self.max_queue_size,
            queue_timeout: Duration::from_millis(self.queue_timeout_ms),
            max_inflight_batches: self.max_inflight_batches,
        }
        .validated()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    Http {
        urls: Vec<String>,
        protocol: HttpProtocol,
        /// `Some(true)`: tensors go binary; `Some(false)`: JSON; `None`: the client's form.
        binary: Option<bool>,
        model: Option<String>,
    },
    Grpc {
        urls: Vec<String>,
        model: Option<String>,
    },
    Python {
        target: String,
    },
}

/// What a REST backend speaks (`protocol: v1 | v2 | both`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpProtocol {
    V1,
    V2,
    /// Both, as KServe's ModelServer does: each client's request goes through in its own
    /// protocol, and what the gateway sends itself is V2.
    Both,
}

/// One of the REST protocols, as a request is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestProtocol {
    V1,
    V2,
}

impl HttpProtocol {
    /// The protocol of the requests the gateway makes itself (decoded or batched requests,
    /// health checks, readiness, listings, metadata): V2 unless the backend speaks only V1.
    pub fn own(self) -> RestProtocol {
        match self {
            Self::V1 => RestProtocol::V1,
            Self::V2 | Self::Both => RestProtocol::V2,
        }
    }

    /// Whether a client's request in `protocol` can go to the backend as it is.
    pub fn takes(self, protocol: RestProtocol) -> bool {
        self == Self::Both || self.own() == protocol
    }
}

impl GatewayConfig {
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| Error::bad_request(format!("invalid gateway configuration: {e}")))
    }

    pub fn health_check_interval(&self) -> Duration {
        Duration::from_millis(self.health_check_interval_ms)
    }

    /// Whether backends are probed (a zero interval turns the checks off).
    pub fn health_checks(&self) -> bool {
        self.health_check_interval_ms > 0
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn pool_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_idle_timeout_ms)
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

impl ModelConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}
