//! The gateway, driven from Python: `Gateway(config_json)` starts the Rust servers; Python
//! worker threads take in-process model calls (and `/metrics` renders) with `next_call()`,
//! which waits without the GIL. Tokio workers only ever enqueue work and await its answer, so
//! the GIL is never taken on them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tensorgate_core::config::GatewayConfig;
use tensorgate_core::server::Gateway as CoreGateway;
use tensorgate_core::upstream::{BoxFuture, Host, LocalModel};
use tensorgate_core::{
    Error as CoreError, ErrorKind, InferRequest as CoreRequest, InferResponse as CoreResponse,
};
use tokio::sync::oneshot;

use crate::error::to_py;
use crate::request::{InferRequest, InferResponse};

#[derive(Debug)]
enum Job {
    Infer {
        model: String,
        request: Box<CoreRequest>,
        reply: oneshot::Sender<Result<CoreResponse, CoreError>>,
    },
    Metrics {
        reply: oneshot::Sender<Result<String, CoreError>>,
    },
}

#[derive(Debug)]
struct PyHost {
    jobs: Sender<Job>,
    /// Metrics pages have a queue and a thread of their own: a scrape never waits behind
    /// model calls.
    metrics_jobs: Sender<Job>,
}

#[derive(Debug)]
struct PyModel {
    route: String,
    jobs: Sender<Job>,
}

/// Queues a job for Python; `full` says what is waiting for whom when the queue is full.
fn enqueue<T: Send + 'static>(
    jobs: &Sender<Job>,
    full: &str,
    job: impl FnOnce(oneshot::Sender<Result<T, CoreError>>) -> Job,
) -> BoxFuture<Result<T, CoreError>> {
    let (reply, answer) = oneshot::channel();
    let queued = match jobs.try_send(job(reply)) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => Err(CoreError::new(
            ErrorKind::Overloaded,
            format!(
                "{} {full}; retry later",
                jobs.capacity().unwrap_or_default()
            ),
        )),
        Err(TrySendError::Disconnected(_)) => {
            Err(CoreError::unavailable("the Python workers have stopped"))
        }
    };
    Box::pin(async move {
        queued?;
        answer.await.unwrap_or_else(|_| {
            Err(CoreError::internal(
                "the Python worker dropped the call without answering",
            ))
        })
    })
}

impl LocalModel for PyModel {
    fn infer(&self, request: CoreRequest) -> BoxFuture<Result<CoreResponse, CoreError>> {
        let model = self.route.clone();
        enqueue(&self.jobs, INFER_FULL, |reply| Job::Infer {
            model,
            request: Box::new(request),
            reply,
        })
    }
}

impl Host for PyHost {
    fn local_model(&self, route: &str, _target: &str) -> Result<Arc<dyn LocalModel>, CoreError> {
        Ok(Arc::new(PyModel {
            route: route.to_owned(),
            jobs: self.jobs.clone(),
        }))
    }

    fn metrics(&self) -> BoxFuture<Result<String, CoreError>> {
        enqueue(&self.metrics_jobs, METRICS_FULL, |reply| Job::Metrics {
            reply,
        })
    }
}

/// Scrapes waiting for the metrics thread; more at once are refused with a 503.
const METRICS_QUEUE_SIZE: usize = 16;

const INFER_FULL: &str = "calls are already waiting for a Python worker (python_queue_size)";
const METRICS_FULL: &str = "scrapes are already waiting for the metrics thread";

/// A running gateway: `Gateway(config_json)`. See `tensorgate.serve`.
#[pyclass(module = "tensorgate._core")]
#[derive(Debug)]
pub struct Gateway {
    inner: Mutex<Option<CoreGateway>>,
    jobs: Receiver<Job>,
    metrics_jobs: Receiver<Job>,
    http_port: u16,
    grpc_port: u16,
}

fn parse(config_json: &str) -> PyResult<GatewayConfig> {
    GatewayConfig::from_json(config_json).map_err(|e| PyValueError::new_err(e.message().to_owned()))
}

impl Gateway {
    fn with<T>(&self, f: impl FnOnce(&mut CoreGateway) -> T) -> PyResult<T> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("gateway lock poisoned"))?;
        let gateway = guard
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("the gateway has stopped"))?;
        Ok(f(gateway))
    }
}

#[pymethods]
impl Gateway {
    #[new]
    fn new(py: Python<'_>, config_json: &str) -> PyResult<Self> {
        let config = parse(config_json)?;
        let (sender, jobs) = crossbeam_channel::bounded(config.python_queue_size.max(1));
        let (metrics_sender, metrics_jobs) = crossbeam_channel::bounded(METRICS_QUEUE_SIZE);
        let host = Arc::new(PyHost {
            jobs: sender,
            metrics_jobs: metrics_sender,
        });
        let gateway = py
            .detach(|| CoreGateway::start(&config, host))
            .map_err(to_py)?;
        Ok(Self {
            http_port: gateway.http_addr().port(),
            grpc_port: gateway.grpc_addr().port(),
            inner: Mutex::new(Some(gateway)),
            jobs,
            metrics_jobs,
        })
    }

    #[getter]
    fn http_port(&self) -> u16 {
        self.http_port
    }

    #[getter]
    fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// Waits up to `timeout` seconds for work for Python (a metrics page with `metrics`, else a
    /// model call); `None` when there was none.
    #[pyo3(signature = (timeout, *, metrics = false))]
    fn next_call(&self, py: Python<'_>, timeout: f64, metrics: bool) -> Option<PendingCall> {
        let timeout = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::ZERO);
        let jobs = if metrics {
            &self.metrics_jobs
        } else {
            &self.jobs
        };
        let job = py.detach(|| jobs.recv_timeout(timeout).ok())?;
        Some(PendingCall {
            job: Mutex::new(Some(job)),
        })
    }

    /// Replaces routes and settings; requests in flight finish on the old routes.
    fn reload(&self, py: Python<'_>, config_json: &str) -> PyResult<()> {
        let config = parse(config_json)?;
        py.detach(|| self.with(|g| g.reload(&config)))?
            .map_err(to_py)
    }

    /// Readiness turns 503 at once (the drain comes later).
    fn set_draining(&self) -> PyResult<()> {
        self.with(|g| g.set_draining())
    }

    /// Stops accepting, finishes requests in flight (up to the drain timeout) and stops.
    /// Returns False when the timeout cut requests short.
    fn drain(&self, py: Python<'_>) -> PyResult<bool> {
        let gateway = self
            .inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("gateway lock poisoned"))?
            .take();
        Ok(match gateway {
            Some(mut gateway) => py.detach(move || {
                let drained = gateway.drain();
                drop(gateway);
                drained
            }),
            None => true,
        })
    }

    /// The request metrics as JSON:
    /// `{"series": [...], "in_flight": [[model, n], ...], "batchers": [...]}`.
    fn metrics_json(&self) -> PyResult<String> {
        let (series, in_flight, batchers) =
            self.with(|g| (g.metrics(), g.in_flight(), g.batchers()))?;
        let value =
            serde_json::json!({"series": series, "in_flight": in_flight, "batchers": batchers});
        Ok(value.to_string())
    }
}

/// One piece of work for Python: an in-process model call (`kind == "infer"`) or a metrics
/// page (`kind == "metrics"`). Answer it exactly once.
#[pyclass(module = "tensorgate._core")]
#[derive(Debug)]
pub struct PendingCall {
    job: Mutex<Option<Job>>,
}

impl PendingCall {
    fn take(&self) -> PyResult<Job> {
        self.job
            .lock()
            .map_err(|_| PyRuntimeError::new_err("call lock poisoned"))?
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this call was already answered"))
    }

    fn peek<T>(&self, f: impl FnOnce(Option<&Job>) -> T) -> PyResult<T> {
        let guard = self
            .job
            .lock()
            .map_err(|_| PyRuntimeError::new_err("call lock poisoned"))?;
        Ok(f(guard.as_ref()))
    }
}

#[pymethods]
impl PendingCall {
    #[getter]
    fn kind(&self) -> PyResult<&'static str> {
        self.peek(|job| match job {
            Some(Job::Metrics { .. }) => "metrics",
            _ => "infer",
        })
    }

    /// The route name of an infer call.
    #[getter]
    fn model(&self) -> PyResult<Option<String>> {
        self.peek(|job| match job {
            Some(Job::Infer { model, .. }) => Some(model.clone()),
            _ => None,
        })
    }

    /// The request of an infer call.
    #[getter]
    fn request(&self) -> PyResult<Option<InferRequest>> {
        self.peek(|job| match job {
            Some(Job::Infer { request, .. }) => Some(InferRequest {
                inner: request.as_ref().clone(),
            }),
            _ => None,
        })
    }

    /// Answers an infer call.
    fn respond(&self, response: PyRef<'_, InferResponse>) -> PyResult<()> {
        match self.take()? {
            Job::Infer { reply, .. } => {
                let _ = reply.send(Ok(response.inner.clone()));
                Ok(())
            }
            job @ Job::Metrics { .. } => self.put_back(job, "respond() answers infer calls"),
        }
    }

    /// Answers a metrics call with the exposition text.
    fn respond_metrics(&self, text: String) -> PyResult<()> {
        match self.take()? {
            Job::Metrics { reply } => {
                let _ = reply.send(Ok(text));
                Ok(())
            }
            job @ Job::Infer { .. } => {
                self.put_back(job, "respond_metrics() answers metrics calls")
            }
        }
    }

    /// Fails the call: the client gets `status_code` and `{"error": message}`.
    #[pyo3(signature = (message, status_code = 500))]
    fn fail(&self, message: String, status_code: u16) -> PyResult<()> {
        let error = CoreError::upstream_status(status_code, message);
        match self.take()? {
            Job::Infer { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Job::Metrics { reply } => {
                let _ = reply.send(Err(error));
            }
        }
        Ok(())
    }
}

impl PendingCall {
    fn put_back(&self, job: Job, message: &str) -> PyResult<()> {
        if let Ok(mut slot) = self.job.lock() {
            *slot = Some(job);
        }
        Err(PyRuntimeError::new_err(message.to_owned()))
    }
}
