//! Request metrics kept by the gateway: counts by status, bytes, and latency histograms per
//! model and protocol. The host renders them (with its own metrics) from [`Metrics::snapshot`],
//! so the gateway needs no exposition code and both share one registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::route::WILDCARD;

/// Latency bucket bounds in seconds: fine at the low end, where a proxy's own cost lives.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Bucket bounds of batch sizes, in rows.
pub const ROW_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// The front protocol of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    V1,
    V2,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Grpc => "grpc",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Histogram {
    /// Cumulative counts per bucket bound.
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// Observes a duration in the latency buckets ([`BUCKETS`], seconds).
    pub fn observe(&mut self, value: Duration) {
        self.observe_in(value.as_secs_f64(), &BUCKETS);
    }

    /// Observes a value in `bounds` (the same bounds on every call).
    pub fn observe_in(&mut self, value: f64, bounds: &[f64]) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len()];
        }
        for (bound, count) in bounds.iter().zip(self.buckets.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }
}

/// The series of one model and protocol.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    pub model: String,
    pub protocol: Option<Protocol>,
    /// Requests by answer code: the HTTP status, or the gRPC status code for gRPC.
    pub codes: BTreeMap<u16, u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Histogram,
    pub upstream: Histogram,
    /// The backend time of V1 `:explain` calls (also counted in `upstream`).
    pub explain: Histogram,
}

/// What one finished request reports.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub code: u16,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub duration: Duration,
    /// Time spent waiting for the backend (or the in-process model), when it was reached.
    pub upstream: Option<Duration>,
    /// A V1 `:explain` call, not a prediction.
    pub explain: bool,
}

type PerProtocol = [Option<Arc<Mutex<Series>>>; 3];

/// Names without a route of their own (served by the wildcard route) that get series of their
/// own; further ones count under the wildcard's name.
pub const MAX_WILDCARD_NAMES: usize = 64;

#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<AllSeries>,
}

#[derive(Debug, Default)]
struct AllSeries {
    by_model: HashMap<String, PerProtocol>,
    /// Names in `by_model` without a route of their own.
    wildcard_names: usize,
}

impl Metrics {
    /// Records one answered request for `model`. A name with no route of its own (`configured`
    /// false: the wildcard route serves it) gets its own series only once it was answered with
    /// success, and only [`MAX_WILDCARD_NAMES`] such names do; other answers count under the
    /// wildcard's name, so names clients make up cannot add series without bound.
    pub fn record(
        &self,
        model: &str,
        configured: bool,
        protocol: Protocol,
        observation: Observation,
    ) {
        let succeeded = match protocol {
            Protocol::Grpc => observation.code == 0,
            Protocol::V1 | Protocol::V2 => (200..300).contains(&observation.code),
        };
        let Some(series) = self.series_for(model, configured, succeeded, protocol) else {
            return;
        };
        let Ok(mut series) = series.lock() else {
            return;
        };
        *series.codes.entry(observation.code).or_default() += 1;
        series.bytes_in += observation.bytes_in as u64;
        series.bytes_out += observation.bytes_out as u64;
        series.duration.observe(observation.duration);
        if let Some(upstream) = observation.upstream {
            series.upstream.observe(upstream);
            if observation.explain {
                series.explain.observe(upstream);
            }
        }
    }

    /// The series of `model` and `protocol`, created as needed (see [`Metrics::record`] for
    /// which names get series of their own).
    fn series_for(
        &self,
        model: &str,
        configured: bool,
        succeeded: bool,
        protocol: Protocol,
    ) -> Option<Arc<Mutex<Series>>> {
        let mut all = self.series.lock().ok()?;
        let model = if configured || all.by_model.contains_key(model) {
            model
        } else if succeeded && model != WILDCARD && all.wildcard_names < MAX_WILDCARD_NAMES {
            all.wildcard_names += 1;
            model
        } else {
            WILDCARD
        };
        if !all.by_model.contains_key(model) {
            all.by_model
                .insert(model.to_owned(), PerProtocol::default());
        }
        let slot = &mut all.by_model.get_mut(model)?[protocol.index()];
        Some(Arc::clone(slot.get_or_insert_with(|| {
            Arc::new(Mutex::new(Series {
                model: model.to_owned(),
                protocol: Some(protocol),
                ..Series::default()
            }))
        })))
    }

    /// A copy of every series.
    pub fn snapshot(&self) -> Vec<Series> {
        let Ok(all) = self.series.lock() else {
            return Vec::new();
        };
        all.by_model
            .values()
            .flatten()
            .flatten()
            .filter_map(|series| series.lock().ok().map(|s| s.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request answered with `code`, one byte each way, in a microsecond.
    fn answered(code: u16) -> Observation {
        Observation {
            code,
            bytes_in: 1,
            bytes_out: 1,
            duration: Duration::from_micros(1),
            upstream: None,
            explain: false,
        }
    }

    #[test]
    fn records_per_model_and_protocol() {
        let metrics = Metrics::default();
        let observation = Observation {
            code: 200,
            bytes_in: 10,
            bytes_out: 20,
            duration: Duration::from_micros(300),
            upstream: Some(Duration::from_micros(200)),
            explain: false,
        };
        metrics.record("m", true, Protocol::V2, observation);
        metrics.record(
            "m",
            true,
            Protocol::V2,
            Observation {
                code: 404,
                upstream: None,
                ..observation
            },
        );
        metrics.record("m", true, Protocol::Grpc, observation);
        let mut snapshot = metrics.snapshot();
        snapshot.sort_by_key(|s| s.protocol.map(Protocol::index));
        assert_eq!(snapshot.len(), 2);
        let v2 = &snapshot[0];
        assert_eq!(v2.codes, BTreeMap::from([(200, 1), (404, 1)]));
        assert_eq!((v2.bytes_in, v2.bytes_out), (20, 40));
        assert_eq!(v2.duration.count, 2);
        assert_eq!(v2.upstream.count, 1);
        // 300 µs falls in the 0.0005 bucket and above, not in 0.00025.
        assert_eq!(&v2.duration.buckets[..3], &[0, 0, 2]);
    }

    /// Names only the wildcard route serves get series once answered with success; names that
    /// fail first count under the wildcard's name.
    #[test]
    fn wildcard_names_get_series_once_they_succeed() {
        let metrics = Metrics::default();
        let ok = answered(200);
        let not_found = Observation { code: 404, ..ok };
        for made_up in ["a", "b", "c"] {
            metrics.record(made_up, false, Protocol::V2, not_found);
        }
        metrics.record("real", false, Protocol::V2, ok);
        metrics.record("real", false, Protocol::V1, not_found);
        metrics.record("g", false, Protocol::Grpc, Observation { code: 5, ..ok });
        metrics.record("g", false, Protocol::Grpc, Observation { code: 0, ..ok });
        let mut seen: Vec<(String, u16, u64)> = metrics
            .snapshot()
            .iter()
            .flat_map(|s| s.codes.iter().map(|(&c, &n)| (s.model.clone(), c, n)))
            .collect();
        seen.sort();
        let expected = [
            ("*", 5, 1),
            ("*", 404, 3),
            ("g", 0, 1),
            ("real", 200, 1),
            ("real", 404, 1),
        ]
        .map(|(m, c, n)| (m.to_owned(), c, n));
        assert_eq!(seen, expected);
    }

    /// A wildcard backend that answers any name (an in-process model, a fixed `backend.model`)
    /// gives at most `MAX_WILDCARD_NAMES` names their own series; configured names always.
    #[test]
    fn wildcard_names_with_series_are_bounded() {
        let metrics = Metrics::default();
        let ok = answered(200);
        for i in 0..MAX_WILDCARD_NAMES + 10 {
            metrics.record(&format!("any{i}"), false, Protocol::V2, ok);
        }
        metrics.record("named", true, Protocol::V2, ok);
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.len(), MAX_WILDCARD_NAMES + 2);
        let overflow = snapshot.iter().find(|s| s.model == "*");
        assert_eq!(overflow.map(|s| s.codes[&200]), Some(10));
    }
}
