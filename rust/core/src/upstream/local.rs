//! In-process models: the embedding application (the Python layer) runs them. The core only sees
//! a future per request, so no tokio worker ever waits on the GIL.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;
use crate::tensor::{InferRequest, InferResponse};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A model run by the host, off the tokio threads.
pub trait LocalModel: Send + Sync + Debug {
    fn infer(&self, request: InferRequest) -> BoxFuture<Result<InferResponse>>;
}

/// What the embedding application provides to the gateway.
pub trait Host: Send + Sync + Debug {
    /// Resolves an in-process model route (`backend: {python: target}`).
    fn local_model(&self, route: &str, target: &str) -> Result<Arc<dyn LocalModel>>;

    /// Renders the Prometheus exposition served on `/metrics`; the host owns the registry so
    /// that its metrics and the gateway's share one page.
    fn metrics(&self) -> BoxFuture<Result<String>>;
}
