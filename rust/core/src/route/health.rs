//! Active health checks: each replica of a remote backend is probed at a fixed interval and
//! taken out of (or put back into) rotation by the verdict. A check task holds only a weak
//! reference, so it ends when its routing snapshot is replaced.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ::http::{HeaderMap, Method};

use super::{Backend, Route};
use crate::config::{HttpProtocol, RestProtocol};
use crate::proto::ServerReadyRequest;
use crate::upstream::http;

/// Probes read at most this much of a health answer.
const PROBE_MAX_BODY: usize = 64 << 10;

pub fn spawn(route: &Arc<Route>, interval: Duration, client: &http::Client) {
    if interval.is_zero() || matches!(route.backend, Backend::Local(_)) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(route);
    let client = client.clone();
    runtime.spawn(async move {
        // The first tick is at once: a new route is not ready until its first check passed.
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !check_once(&weak, &client, interval).await {
                break;
            }
        }
    });
}

/// Probes every replica once; false when the route is gone. A probe that takes longer than
/// the interval counts as a failure, so probes never pile up.
async fn check_once(route: &Weak<Route>, client: &http::Client, timeout: Duration) -> bool {
    let Some(route) = route.upgrade() else {
        return false;
    };
    match &route.backend {
        Backend::Http {
            replicas, protocol, ..
        } => {
            for replica in replicas.all() {
                let healthy = probe_http(client, replica, *protocol, timeout).await;
                replicas.set_healthy(replica, healthy);
            }
        }
        Backend::Grpc { replicas, .. } => {
            for replica in replicas.all() {
                let mut client = replica.client.clone();
                let probe = client.server_ready(ServerReadyRequest {});
                let healthy = matches!(
                    tokio::time::timeout(timeout, probe).await,
                    Ok(Ok(response)) if response.get_ref().ready
                );
                replicas.set_healthy(replica, healthy);
            }
        }
        Backend::Local(_) => {}
    }
    true
}

/// V2 servers answer `/v2/health/ready`; V1 servers (KServe's own check) answer `/`.
async fn probe_http(
    client: &http::Client,
    replica: &http::Replica,
    protocol: HttpProtocol,
    timeout: Duration,
) -> bool {
    let path = match protocol.own() {
        RestProtocol::V2 => "/v2/health/ready",
        RestProtocol::V1 => "/",
    };
    let (headers, body) = (HeaderMap::new(), http::Chunks::default());
    let probe = http::send(
        client,
        Method::GET,
        replica,
        path,
        &headers,
        &body,
        PROBE_MAX_BODY,
    );
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(reply)) if reply.is_success())
}
