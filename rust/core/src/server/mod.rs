//! The front ends: one hyper server per listening port, each speaking HTTP/1.1 and h2c, with
//! gRPC (`application/grpc`) requests going to the OIP service and the rest to the REST routes.
//! [`Gateway`] owns the tokio runtime, the routing snapshot and the drain on shutdown.

mod access_log;
mod grpc;
mod paths;
mod rest;

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::batch::{BatcherStats, Batchers};
use crate::config::{AccessLog, GatewayConfig, Readiness};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, Series};
use crate::route::{Route, Routes};
use crate::upstream::forward::Call;
use crate::upstream::{Host, http as rest_client};

pub use access_log::AccessLine;

const REQUEST_ID: &str = "x-request-id";

/// What every request handler shares: the current routes and settings, the clients and the
/// metrics.
#[derive(Debug)]
struct Shared {
    routes: ArcSwap<Routes>,
    settings: ArcSwap<Settings>,
    http: rest_client::Client,
    host: Arc<dyn Host>,
    metrics: Metrics,
    draining: AtomicBool,
    /// Longest wait for a client's request headers, then for its body.
    client_timeout: Duration,
}

/// The parts of the configuration that apply to every request and may change on reload.
#[derive(Debug)]
struct Settings {
    forward_headers: Vec<HeaderName>,
    access_log: AccessLog,
    readiness: Readiness,
}

impl Settings {
    fn from_config(config: &GatewayConfig) -> Result<Self> {
        let forward_headers = config
            .forward_headers
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    Error::bad_request(format!("invalid header name {name:?} in forward_headers"))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            forward_headers,
            access_log: config.access_log,
            readiness: config.readiness,
        })
    }
}

impl Shared {
    fn is_ready(&self) -> bool {
        if self.draining.load(Ordering::Relaxed) {
            return false;
        }
        let routes = self.routes.load();
        match self.settings.load().readiness {
            Readiness::All => routes.all().all(|r| r.is_ready()),
            // A gateway without routes has nothing that could fail.
            Readiness::Any => routes.all().next().is_none() || routes.all().any(|r| r.is_ready()),
            Readiness::Live => true,
        }
    }

    /// The headers a backend receives: the allow-listed ones, and the request id.
    fn forwarded(&self, headers: &HeaderMap, request_id: &HeaderValue) -> HeaderMap {
        let settings = self.settings.load();
        let mut forwarded = HeaderMap::with_capacity(settings.forward_headers.len() + 1);
        for name in &settings.forward_headers {
            for value in headers.get_all(name) {
                forwarded.append(name.clone(), value.clone());
            }
        }
        forwarded.insert(REQUEST_ID, request_id.clone());
        forwarded
    }

    fn call<'a>(
        &'a self,
        route: &'a Arc<Route>,
        model: &'a str,
        version: Option<&'a str>,
        headers: HeaderMap,
    ) -> Call<'a> {
        Call {
            route,
            model,
            version,
            headers,
            http: &self.http,
            upstream_nanos: Default::default(),
        }
    }
}

/// The client's `x-request-id`, or a new one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers.get(REQUEST_ID).cloned().unwrap_or_else(|| {
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
    })
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    runtime: Arc<tokio::runtime::Runtime>,
    /// The thread that drives a current-thread runtime until `stop`; joined before the runtime
    /// is driven from elsewhere or dropped.
    io_thread: Option<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    drain_timeout: Duration,
}

impl Gateway {
    /// Binds both ports and starts serving `config`, with in-process models run by `host`.
    pub fn start(config: &GatewayConfig, host: Arc<dyn Host>) -> Result<Self> {
        let workers = workers_asked()?;
        let single = workers.is_none() && one_cpu();
        let runtime = runtime(single, workers)?;
        let http_listener = bind(&config.host, config.http_port)?;
        let grpc_listener = bind(&config.host, config.grpc_port)?;
        let http_addr = local_addr(&http_listener)?;
        let grpc_addr = local_addr(&grpc_listener)?;
        let http = rest_client::client();
        let routes = {
            let _entered = runtime.enter();
            Routes::build(config, host.as_ref(), &http, None)?
        };
        let shared = Arc::new(Shared {
            routes: ArcSwap::from_pointee(routes),
            settings: ArcSwap::from_pointee(Settings::from_config(config)?),
            http,
            host,
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            client_timeout: config.client_timeout(),
        });
        let (stop, stopped) = watch::channel(false);
        let drain_timeout = config.drain_timeout();
        let grpc_service = grpc::service(&shared, config.grpc_max_message_bytes);
        let servers = [http_listener, grpc_listener]
            .into_iter()
            .map(|listener| {
                let _entered = runtime.enter();
                let listener = TcpListener::from_std(listener)
                    .map_err(|e| Error::internal(format!("cannot register the listener: {e}")))?;
                let server = serve(
                    listener,
                    Arc::clone(&shared),
                    grpc_service.clone(),
                    stopped.clone(),
                    drain_timeout,
                );
                Ok(runtime.spawn(server))
            })
            .collect::<Result<_>>()?;
        let io_thread = if single {
            Some(drive(&runtime, stopped)?)
        } else {
            None
        };
        Ok(Self {
            shared,
            runtime,
            io_thread,
            stop,
            servers,
            http_addr,
            grpc_addr,
            drain_timeout,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Swaps in the routes and settings of `config`; requests in flight finish on the old
    /// routes. Listening addresses cannot change without a restart.
    pub fn reload(&self, config: &GatewayConfig) -> Result<()> {
        let settings = Settings::from_config(config)?;
        let routes = {
            let _entered = self.runtime.enter();
            let earlier = self.shared.routes.load();
            Routes::build(
                config,
                self.shared.host.as_ref(),
                &self.shared.http,
                Some(&earlier),
            )?
        };
        self.shared.routes.store(Arc::new(routes));
        self.shared.settings.store(Arc::new(settings));
        Ok(())
    }

    /// Stops accepting connections, turns readiness to 503 and waits (up to the drain timeout)
    /// for requests in flight to finish. Blocks; returns false if the timeout cut some short.
    pub fn drain(&mut self) -> bool {
        self.shared.draining.store(true, Ordering::Relaxed);
        self.stop_io_thread();
        let servers = std::mem::take(&mut self.servers);
        let deadline = self.drain_timeout + Duration::from_secs(1);
        self.runtime.block_on(async move {
            let all = async {
                for server in servers {
                    let _ = server.await;
                }
            };
            tokio::time::timeout(deadline, all).await.is_ok()
        })
    }

    /// Tells the servers to stop accepting and waits for the I/O thread, if any, to let go of
    /// the runtime.
    fn stop_io_thread(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.io_thread.take() {
            let _ = thread.join();
        }
    }

    /// Marks the gateway as draining (readiness 503) without closing anything yet.
    pub fn set_draining(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
    }

    pub fn metrics(&self) -> Vec<Series> {
        self.shared.metrics.snapshot()
    }

    /// Requests in flight per named route.
    pub fn in_flight(&self) -> Vec<(String, usize)> {
        let routes = self.shared.routes.load();
        routes
            .all()
            .map(|r| (r.name.clone(), r.in_flight()))
            .collect()
    }

    /// The batchers of the current routes, one per model served with batching.
    pub fn batchers(&self) -> Vec<BatcherStats> {
        let routes = self.shared.routes.load();
        routes
            .all()
            .filter_map(|r| r.batching.as_ref())
            .flat_map(Batchers::stats)
            .collect()
    }
}

impl Drop for Gateway {
    /// A gateway dropped without draining still stops its I/O thread, so the runtime (its
    /// sockets and tasks) is shut down here, not later on a thread nobody waits for.
    fn drop(&mut self) {
        self.stop_io_thread();
    }
}

/// Whether this process may run on one CPU only (its affinity mask or cgroup CPU quota).
fn one_cpu() -> bool {
    std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() == 1)
}

/// Worker threads asked for with tokio's own `TOKIO_WORKER_THREADS`, read here so that a bad
/// value is a startup error rather than a panic inside tokio.
fn workers_asked() -> Result<Option<usize>> {
    const NAME: &str = "TOKIO_WORKER_THREADS";
    let Some(value) = std::env::var_os(NAME) else {
        return Ok(None);
    };
    value
        .to_str()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .filter(|&workers| workers > 0)
        .map(Some)
        .ok_or_else(|| {
            Error::bad_request(format!("{NAME} must be a positive integer, not {value:?}"))
        })
}

/// The tokio runtime: one worker per CPU, or with a single CPU a current-thread runtime (see
/// [`drive`]): there the multi-thread scheduler has nothing to balance and cost about 20 % more
/// CPU per proxied request under load (`benches/RESULTS.md`).
fn runtime(single: bool, workers: Option<usize>) -> Result<Arc<tokio::runtime::Runtime>> {
    let mut builder = if single {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.thread_name("tensorgate-pool");
        builder
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.thread_name("tensorgate");
        if let Some(workers) = workers {
            builder.worker_threads(workers);
        }
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the tokio runtime: {e}")))?;
    Ok(Arc::new(runtime))
}

/// Runs a current-thread runtime on its own thread until the gateway is told to stop;
/// [`Gateway::drain`] then drives it from the caller's thread.
fn drive(
    runtime: &Arc<tokio::runtime::Runtime>,
    mut stopped: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<()>> {
    let runtime = Arc::clone(runtime);
    std::thread::Builder::new()
        .name("tensorgate-io".into())
        .spawn(move || {
            runtime.block_on(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            });
        })
        .map_err(|e| Error::internal(format!("cannot start the gateway's I/O thread: {e}")))
}

fn bind(host: &str, port: u16) -> Result<StdTcpListener> {
    let listener = StdTcpListener::bind((host, port))
        .map_err(|e| Error::bad_request(format!("cannot listen on {host}:{port}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::internal(format!("cannot configure {host}:{port}: {e}")))?;
    Ok(listener)
}

fn local_addr(listener: &StdTcpListener) -> Result<SocketAddr> {
    listener
        .local_addr()
        .map_err(|e| Error::internal(format!("cannot read the listening address: {e}")))
}

/// Accepts connections until told to stop, then waits for open ones to finish (bounded).
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    grpc: grpc::Service,
    mut stop: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its headers must not hold a connection forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.client_timeout);
    builder
        .http2()
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .max_concurrent_streams(1024);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let grpc = grpc.clone();
                let service = hyper::service::service_fn(move |request| {
                    dispatch(Arc::clone(&shared), grpc.clone(), request)
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(drain_timeout, graceful.shutdown()).await;
}

async fn dispatch(
    shared: Arc<Shared>,
    grpc: grpc::Service,
    request: Request<Incoming>,
) -> std::result::Result<Response<tonic::body::Body>, Infallible> {
    if grpc::is_grpc(&request) {
        return grpc::call(&grpc, request).await;
    }
    Ok(rest::handle(&shared, request)
        .await
        .map(tonic::body::Body::new))
}
