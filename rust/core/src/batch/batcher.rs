//! The gateway's batcher: one queue per model, fed by every front protocol. A dispatcher task
//! forms batches with the [`Queue`] rule whenever one of `max_inflight_batches` slots is free;
//! each batch runs in its own task, so the next one forms while it is at the backend, and a
//! client that goes away never aborts a batch (its rows are simply not sent, or its share of
//! the answer is dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::HeaderMap;
use serde::Serialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;

use super::Policy;
use super::merge::{self, Key};
use super::queue::{Decision, Member, Queue};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::{Histogram, ROW_BUCKETS};
use crate::tensor::{InferRequest, InferResponse};
use crate::upstream::BoxFuture;

/// Runs one batch request on the backend.
pub trait Sender: Send + Sync + 'static {
    fn send(
        self: Arc<Self>,
        request: InferRequest,
        headers: HeaderMap,
    ) -> BoxFuture<Result<InferResponse>>;
}

/// A member's share of a batch answer, and how long the backend took for the batch.
#[derive(Debug)]
pub struct Reply {
    pub response: InferResponse,
    pub upstream: Duration,
}

/// Where a queued request stands; the request and the dispatcher race to move it on.
#[derive(Debug, Default)]
struct Ticket(AtomicU8);

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const WITHDRAWN: u8 = 2;

impl Ticket {
    fn advance(&self, to: u8) -> bool {
        self.0
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn is_withdrawn(&self) -> bool {
        self.0.load(Ordering::Acquire) == WITHDRAWN
    }
}

#[derive(Debug)]
struct Pending {
    request: InferRequest,
    key: Key,
    rows: usize,
    headers: HeaderMap,
    enqueued: Instant,
    ticket: Arc<Ticket>,
    reply: oneshot::Sender<Result<Reply>>,
}

impl Member for Pending {
    type Key = Key;

    fn key(&self) -> &Key {
        &self.key
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn enqueued(&self) -> Instant {
        self.enqueued
    }

    fn is_gone(&self) -> bool {
        self.reply.is_closed() || self.ticket.is_withdrawn()
    }
}

#[derive(Debug)]
struct State {
    queue: Queue<Pending>,
    /// A dispatcher task is running (it ends when the queue is empty).
    dispatching: bool,
}

/// Counters for the metrics.
#[derive(Debug, Default)]
struct Stats {
    rejected: AtomicU64,
    timed_out: AtomicU64,
    histograms: Mutex<(Histogram, Histogram)>,
}

/// What the metrics show of one batcher.
#[derive(Debug, Clone, Serialize)]
pub struct BatcherStats {
    pub model: String,
    /// The version the requests named, if any (each version batches on its own).
    pub version: Option<String>,
    pub queue_depth: usize,
    pub rejected: u64,
    pub timed_out: u64,
    /// Rows per batch sent ([`ROW_BUCKETS`]).
    pub batch_rows: Histogram,
    /// Seconds each request waited before its batch was sent.
    pub queue_delay: Histogram,
}

#[derive(Debug)]
pub struct Batcher {
    model: String,
    version: Option<String>,
    queue_timeout: Duration,
    max_queue_size: usize,
    state: Mutex<State>,
    arrived: Notify,
    slots: Arc<Semaphore>,
    /// How late the dispatcher resumes after a timer (thread and CPU wake-ups): timers are
    /// set that much early, so a batch goes out when its delay is up, not after.
    wake_latency: WakeLatency,
    stats: Stats,
}

impl Batcher {
    pub fn new(model: impl Into<String>, policy: Policy) -> Self {
        Self {
            model: model.into(),
            version: None,
            queue_timeout: policy.queue_timeout,
            max_queue_size: policy.max_queue_size,
            slots: Arc::new(Semaphore::new(policy.max_inflight_batches)),
            state: Mutex::new(State {
                queue: Queue::new(policy),
                dispatching: false,
            }),
            arrived: Notify::new(),
            wake_latency: WakeLatency::default(),
            stats: Stats::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic cannot leave the queue half-updated (every change is one VecDeque call).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `request` and waits for its share of a batch answer. `sender` makes the backend
    /// sender when a dispatcher has to be started.
    pub async fn submit(
        self: &Arc<Self>,
        request: InferRequest,
        headers: HeaderMap,
        sender: impl FnOnce() -> Arc<dyn Sender>,
    ) -> Result<Reply> {
        let (key, rows) = merge::key(&request);
        let ticket = Arc::new(Ticket::default());
        let (reply, mut answer) = oneshot::channel();
        let pending = Pending {
            request,
            key,
            rows,
            headers,
            enqueued: Instant::now(),
            ticket: Arc::clone(&ticket),
            reply,
        };
        let next = {
            let mut state = self.state();
            if state.queue.push(pending, Instant::now()).is_err() {
                drop(state);
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(Error::unavailable(format!(
                    "batch queue of model '{}' is full ({} requests, max_queue_size); retry later",
                    self.model, self.max_queue_size
                )));
            }
            self.after_push(&mut state)
        };
        match next {
            Next::Notify => self.arrived.notify_one(),
            Next::StartDispatcher => {
                tokio::spawn(Arc::clone(self).dispatch(sender()));
            }
            Next::Run(members, slot) if members.len() == 1 => {
                Arc::clone(self).run(members, sender(), slot).await;
            }
            Next::Run(members, slot) => {
                tokio::spawn(Arc::clone(self).run(members, sender(), slot));
            }
        }
        let answer = tokio::select! {
            // An answer already there (a batch run in this task) needs no timer.
            biased;
            answer = &mut answer => answer,
            () = tokio::time::sleep(self.queue_timeout) => {
                if ticket.advance(WITHDRAWN) {
                    self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::new(ErrorKind::Timeout, format!(
                        "request waited {} ms in the batch queue of model '{}' \
                         (queue_timeout_ms) without being sent",
                        self.queue_timeout.as_millis(), self.model
                    )));
                }
                // Already in a batch: the route's timeout bounds the rest.
                answer.await
            }
        };
        answer.unwrap_or_else(|_| Err(Error::internal("batch ended without answering")))
    }

    /// What a request that just joined the queue does next. Without a running dispatcher the
    /// queue held nothing live before it, so when it is due at once (no delay, or a full batch
    /// on its own) and a slot is free, it is a batch of one: it runs in the request's own task,
    /// with no dispatcher or batch task to start and nobody else's rows to abort if the client
    /// leaves.
    fn after_push(&self, state: &mut State) -> Next {
        if state.dispatching {
            return Next::Notify;
        }
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned()
            && let Decision::Dispatch(members) = state.queue.next(Instant::now())
        {
            return Next::Run(members, slot);
        }
        state.dispatching = true;
        Next::StartDispatcher
    }

    /// Forms batches while requests are queued, one per free in-flight slot.
    async fn dispatch(self: Arc<Self>, sender: Arc<dyn Sender>) {
        let mut timer: Option<(Instant, JoinHandle<()>)> = None;
        loop {
            let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
                return;
            };
            loop {
                // Decided as of when a wake-up set now would take effect.
                let early = self.wake_latency.get();
                let decision = {
                    let mut state = self.state();
                    let decision = state.queue.next(Instant::now() + early);
                    if matches!(decision, Decision::Idle) {
                        state.dispatching = false;
                    }
                    decision
                };
                match decision {
                    Decision::Idle => return,
                    Decision::Dispatch(members) => {
                        let batch = Arc::clone(&self).run(members, Arc::clone(&sender), slot);
                        tokio::spawn(batch);
                        break;
                    }
                    Decision::WaitUntil(at) => {
                        let wake_at = at.checked_sub(early).unwrap_or(at);
                        // Kept across wake-ups: an arrival rarely moves the deadline.
                        let mut wake = match timer.take() {
                            Some((deadline, handle)) if deadline == wake_at => handle,
                            _ => precise_sleep(wake_at),
                        };
                        tokio::select! {
                            () = self.arrived.notified() => timer = Some((wake_at, wake)),
                            _ = &mut wake => self.wake_latency.record(wake_at.elapsed()),
                        }
                    }
                }
            }
        }
    }

    /// Sends one batch and hands each member its share; the slot frees when it is done.
    async fn run(
        self: Arc<Self>,
        members: Vec<Pending>,
        sender: Arc<dyn Sender>,
        _slot: OwnedSemaphorePermit,
    ) {
        let sent = Instant::now();
        let mut report = Report {
            batcher: &self,
            rows: 0,
            latency: None,
        };
        // Members that timed out or left while the batch formed stay out of it.
        let mut members: Vec<Pending> = members
            .into_iter()
            .filter(|m| !m.reply.is_closed() && m.ticket.advance(TAKEN))
            .collect();
        if members.is_empty() {
            return;
        }
        let rows: Vec<usize> = members.iter().map(|m| m.rows).collect();
        self.observe(&members, &rows, sent);
        let result = Self::send(&mut members, &rows, sender).await;
        let upstream = sent.elapsed();
        // Reported before the members hear back; only a success says how fast the backend is.
        report.rows = rows.iter().sum();
        report.latency = result.is_ok().then_some(upstream);
        drop(report);
        match result {
            Ok(pieces) => {
                for (member, response) in members.into_iter().zip(pieces) {
                    // A member that left no longer wants its share.
                    let _ = member.reply.send(Ok(Reply { response, upstream }));
                }
            }
            Err(error) => {
                for member in members {
                    let _ = member.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Sends the members' requests as one (taking them: only the replies are needed after).
    async fn send(
        members: &mut [Pending],
        rows: &[usize],
        sender: Arc<dyn Sender>,
    ) -> Result<Vec<InferResponse>> {
        let headers = common_headers(members);
        let requests = members
            .iter_mut()
            .map(|m| std::mem::take(&mut m.request))
            .collect();
        let request = merge::merge(requests)?;
        let response = sender.send(request, headers).await?;
        if members.len() == 1 {
            Ok(vec![response])
        } else {
            merge::split(response, rows)
        }
    }

    fn observe(&self, members: &[Pending], rows: &[usize], sent: Instant) {
        let Ok(mut histograms) = self.stats.histograms.lock() else {
            return;
        };
        let (batch_rows, queue_delay) = &mut *histograms;
        batch_rows.observe_in(rows.iter().sum::<usize>() as f64, &ROW_BUCKETS);
        for member in members {
            queue_delay.observe(sent.saturating_duration_since(member.enqueued));
        }
    }

    pub fn stats(&self) -> BatcherStats {
        let (batch_rows, queue_delay) = self
            .stats
            .histograms
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        BatcherStats {
            model: self.model.clone(),
            version: self.version.clone(),
            queue_depth: self.state().queue.waiting(),
            rejected: self.stats.rejected.load(Ordering::Relaxed),
            timed_out: self.stats.timed_out.load(Ordering::Relaxed),
            batch_rows,
            queue_delay,
        }
    }
}

/// What a request does after joining the queue (see [`Batcher::after_push`]).
enum Next {
    Notify,
    StartDispatcher,
    /// Due at once with a free slot: the batch runs without a dispatcher (in the request's own
    /// task when it is the only member).
    Run(Vec<Pending>, OwnedSemaphorePermit),
}

/// A moving average of timer lateness, capped at [`WakeLatency::MAX`].
#[derive(Debug, Default)]
struct WakeLatency(AtomicU64);

impl WakeLatency {
    const MAX: Duration = Duration::from_millis(1);

    fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    fn record(&self, late: Duration) {
        let late = late.min(Self::MAX).as_nanos() as f64;
        let mean = self.0.load(Ordering::Relaxed) as f64;
        // Only the dispatcher records: a plain load and store cannot lose an update.
        self.0
            .store((mean + 0.2 * (late - mean)) as u64, Ordering::Relaxed);
    }
}

/// Completes at `at`, within tens of microseconds. tokio's timers tick in whole milliseconds
/// and round up, which turns a 2 ms queue delay into 3 to 4 ms; a blocking-pool thread's
/// `sleep` is as precise as the kernel's timer slack (50 µs). Started once per deadline.
fn precise_sleep(at: Instant) -> JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
    })
}

/// The headers every member sent with the same values: a batch speaks for all of them, so
/// one client's request id or credentials do not go out on another's rows.
fn common_headers(members: &mut [Pending]) -> HeaderMap {
    let Some((first, rest)) = members.split_first_mut() else {
        return HeaderMap::new();
    };
    if rest.is_empty() {
        return std::mem::take(&mut first.headers);
    }
    let mut headers = HeaderMap::with_capacity(first.headers.len());
    for (name, value) in &first.headers {
        if rest
            .iter()
            .all(|m| m.headers.get_all(name).iter().any(|v| v == value))
        {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// A batcher per model name, then per version (a short list: looked up without allocating).
type ByModel = HashMap<String, Vec<Entry>>;

/// One batcher of a route: the version it serves and when a request last took it.
#[derive(Debug)]
struct Entry {
    version: Option<String>,
    batcher: Arc<Batcher>,
    used: Instant,
}

/// Batchers one route keeps at most (one per model name and version).
pub const MAX_BATCHERS: usize = 64;

/// The batchers of one route, one per model name and version it serves (a wildcard route
/// serves many), created on first use.
#[derive(Debug)]
pub struct Batchers {
    policy: Policy,
    by_model: Mutex<ByModel>,
}

impl Batchers {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            by_model: Mutex::new(HashMap::new()),
        }
    }

    /// The batcher of `model` and `version`, made on first use. A route keeps at most
    /// [`MAX_BATCHERS`]: a new one takes the place of the least recently used batcher that has
    /// been idle (nothing queued or running) for [`EVICT_AFTER`], and when there is none it is
    /// `None` and the request goes unbatched. So names clients make up (any name on a wildcard
    /// route, any version) cannot grow memory without bound, nor push out batchers in use.
    pub fn get(&self, model: &str, version: Option<&str>) -> Option<Arc<Batcher>> {
        let now = Instant::now();
        let mut all = self
            .by_model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = all
            .get_mut(model)
            .and_then(|entries| entries.iter_mut().find(|e| e.version.as_deref() == version));
        if let Some(entry) = found {
            entry.used = now;
            return Some(Arc::clone(&entry.batcher));
        }
        let full = all.values().map(Vec::len).sum::<usize>() >= MAX_BATCHERS;
        if full && !evict_idle(&mut all, now) {
            return None;
        }
        let batcher = Arc::new(Batcher {
            version: version.map(str::to_owned),
            ..Batcher::new(model, self.policy.clone())
        });
        all.entry(model.to_owned()).or_default().push(Entry {
            version: version.map(str::to_owned),
            batcher: Arc::clone(&batcher),
            used: now,
        });
        Some(batcher)
    }

    pub fn stats(&self) -> Vec<BatcherStats> {
        let all = self
            .by_model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.values().flatten().map(|e| e.batcher.stats()).collect()
    }
}

/// How long a batcher must have gone unused before a new name may take its place.
pub const EVICT_AFTER: Duration = Duration::from_secs(10);

/// Drops the least recently used batcher that nothing else holds (no request waits on it, no
/// dispatcher or batch task runs for it: each of those holds a reference) and that went unused
/// for [`EVICT_AFTER`]. Whether there was one.
fn evict_idle(all: &mut ByModel, now: Instant) -> bool {
    let evictable = |e: &Entry| {
        Arc::strong_count(&e.batcher) == 1 && now.saturating_duration_since(e.used) >= EVICT_AFTER
    };
    let oldest = all
        .iter()
        .flat_map(|(model, entries)| entries.iter().enumerate().map(move |(i, e)| (model, i, e)))
        .filter(|&(_, _, e)| evictable(e))
        .min_by_key(|&(_, _, e)| e.used)
        .map(|(model, i, _)| (model.clone(), i));
    let Some((model, i)) = oldest else {
        return false;
    };
    if let Some(entries) = all.get_mut(&model) {
        entries.swap_remove(i);
        if entries.is_empty() {
            all.remove(&model);
        }
    }
    true
}

/// Tells the queue that a batch it formed is over, when dropped: once answered, or early when
/// the request task running the batch inline is dropped with its client. Until then the
/// adaptive delay expects the batch's rows back; a batch whose callers all left owes none.
struct Report<'a> {
    batcher: &'a Batcher,
    rows: usize,
    latency: Option<Duration>,
}

impl Drop for Report<'_> {
    fn drop(&mut self) {
        self.batcher
            .state()
            .queue
            .record_batch(self.rows, self.latency, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;

    use super::*;
    use crate::batch::Delay;
    use crate::tensor::{DataType, Tensor};

    /// Answers each batch with its input renamed `y`, after `delay`; records the batch sizes
    /// and the most batches it saw at once. A negative first value fails the batch.
    #[derive(Debug, Default)]
    struct Echo {
        delay: Duration,
        sizes: Mutex<Vec<usize>>,
        running: AtomicUsize,
        most_running: AtomicUsize,
    }

    impl Sender for Echo {
        fn send(
            self: Arc<Self>,
            request: InferRequest,
            _headers: HeaderMap,
        ) -> BoxFuture<Result<InferResponse>> {
            Box::pin(async move {
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.most_running.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                let mut x = request.inputs[0].clone();
                self.sizes.lock().unwrap().push(x.rows());
                if x.data()[..4] == (-1.0f32).to_le_bytes() {
                    return Err(Error::upstream_status(422, "no negatives"));
                }
                x.name = "y".into();
                Ok(InferResponse {
                    model_name: "m".into(),
                    outputs: vec![x],
                    ..InferResponse::default()
                })
            })
        }
    }

    fn policy(max: usize, delay_ms: u64, inflight: usize) -> Policy {
        Policy {
            max_batch_size: max,
            delay: Delay::Fixed(Duration::from_millis(delay_ms)),
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 64,
            queue_timeout: Duration::from_secs(5),
            max_inflight_batches: inflight,
        }
    }

    fn request(value: f32) -> InferRequest {
        let data = Bytes::from(value.to_le_bytes().to_vec());
        let x = Tensor::new("x", DataType::Fp32, vec![1, 1], data, &Default::default()).unwrap();
        InferRequest::new(vec![x])
    }

    async fn submit(batcher: &Arc<Batcher>, echo: &Arc<Echo>, value: f32) -> Result<f32> {
        let echo = Arc::clone(echo);
        let reply = batcher
            .submit(request(value), HeaderMap::new(), move || echo)
            .await?;
        let data = reply.response.outputs[0].data();
        Ok(f32::from_le_bytes(data[..4].try_into().unwrap()))
    }

    #[tokio::test]
    async fn members_share_a_batch_and_get_their_own_rows() {
        let batcher = Arc::new(Batcher::new("m", policy(4, 10_000, 1)));
        let echo = Arc::new(Echo::default());
        let answers = futures_join(&batcher, &echo, &[1.0, 2.0, 3.0, 4.0]).await;
        assert_eq!(answers, vec![Ok(1.0), Ok(2.0), Ok(3.0), Ok(4.0)]);
        assert_eq!(*echo.sizes.lock().unwrap(), vec![4]);
    }

    async fn futures_join(
        batcher: &Arc<Batcher>,
        echo: &Arc<Echo>,
        values: &[f32],
    ) -> Vec<Result<f32>> {
        let tasks: Vec<_> = values
            .iter()
            .map(|&v| {
                let (batcher, echo) = (Arc::clone(batcher), Arc::clone(echo));
                tokio::spawn(async move { submit(&batcher, &echo, v).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    }

    #[tokio::test]
    async fn in_flight_batches_stay_within_the_limit() {
        let batcher = Arc::new(Batcher::new("m", policy(2, 0, 2)));
        let echo = Arc::new(Echo {
            delay: Duration::from_millis(20),
            ..Echo::default()
        });
        let values: Vec<f32> = (0..20u8).map(f32::from).collect();
        let answers = futures_join(&batcher, &echo, &values).await;
        assert_eq!(answers, values.iter().map(|&v| Ok(v)).collect::<Vec<_>>());
        assert!(echo.most_running.load(Ordering::SeqCst) <= 2);
        let sizes = echo.sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 20);
        assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
        assert!(sizes.len() < 20, "no batch formed: {sizes:?}");
    }

    #[tokio::test]
    async fn a_backend_error_reaches_every_member() {
        let batcher = Arc::new(Batcher::new("m", policy(3, 10_000, 1)));
        let echo = Arc::new(Echo::default());
        for answer in futures_join(&batcher, &echo, &[-1.0, 2.0, 3.0]).await {
            let error = answer.unwrap_err();
            assert_eq!(
                (error.http_status(), error.message()),
                (422, "no negatives")
            );
        }
    }

    #[tokio::test]
    async fn full_queue_timeout_and_a_client_that_leaves() {
        let batcher = Arc::new(Batcher::new(
            "m",
            Policy {
                max_queue_size: 2,
                queue_timeout: Duration::from_millis(100),
                ..policy(1, 0, 1)
            },
        ));
        let echo = Arc::new(Echo {
            delay: Duration::from_millis(300),
            ..Echo::default()
        });
        let busy = tokio::spawn({
            let (batcher, echo) = (Arc::clone(&batcher), Arc::clone(&echo));
            async move { submit(&batcher, &echo, 1.0).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Leaves at once: never sent.
        let left = tokio::time::timeout(Duration::from_millis(10), submit(&batcher, &echo, 2.0));
        assert!(left.await.is_err());
        let waiting = tokio::spawn({
            let (batcher, echo) = (Arc::clone(&batcher), Arc::clone(&echo));
            async move { submit(&batcher, &echo, 3.0).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The one that left is swept out to make room; a third is refused.
        let third = tokio::spawn({
            let (batcher, echo) = (Arc::clone(&batcher), Arc::clone(&echo));
            async move { submit(&batcher, &echo, 4.0).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let full = submit(&batcher, &echo, 5.0).await.unwrap_err();
        assert_eq!(full.http_status(), 503, "{full}");
        let timed_out = waiting.await.unwrap().unwrap_err();
        assert_eq!(timed_out.http_status(), 504, "{timed_out}");
        assert_eq!(third.await.unwrap().unwrap_err().http_status(), 504);
        assert_eq!(busy.await.unwrap(), Ok(1.0));
        assert_eq!(*echo.sizes.lock().unwrap(), vec![1]);
        let stats = batcher.stats();
        assert_eq!((stats.rejected, stats.timed_out), (1, 2));
    }

    /// A route keeps a bounded number of batchers: past it, new names go unbatched.
    #[test]
    fn batchers_per_route_are_bounded() {
        let batchers = Batchers::new(policy(4, 0, 1));
        let names: Vec<String> = (0..MAX_BATCHERS).map(|i| format!("m{i}")).collect();
        for name in &names {
            assert!(batchers.get(name, None).is_some(), "{name}");
        }
        // Every batcher is busy (held here): a new name goes unbatched.
        let busy: Vec<Arc<Batcher>> = names.iter().filter_map(|n| batchers.get(n, None)).collect();
        assert!(batchers.get("one-more", None).is_none());
        assert!(batchers.get("m0", Some("2")).is_none());
        assert!(Arc::ptr_eq(&busy[0], &batchers.get("m0", None).unwrap()));
        // Idle, but used just now: not given up yet.
        drop(busy);
        assert!(batchers.get("one-more", None).is_none());
        // Once they have gone unused long enough, the least recently used one gives way.
        let long_ago = Instant::now().checked_sub(EVICT_AFTER * 2).unwrap();
        for entries in batchers.by_model.lock().unwrap().values_mut() {
            for entry in entries {
                let later = Duration::from_millis(u64::from(entry.batcher.model != "m7"));
                entry.used = long_ago + later;
            }
        }
        let newcomer = batchers.get("one-more", None).unwrap();
        assert!(Arc::ptr_eq(
            &newcomer,
            &batchers.get("one-more", None).unwrap()
        ));
        let kept: Vec<String> = batchers.stats().into_iter().map(|s| s.model).collect();
        assert_eq!(kept.len(), MAX_BATCHERS);
        assert!(
            !kept.contains(&"m7".to_owned()),
            "the least recently used one goes"
        );
    }

    /// A batch of one runs inline in its request's task; when that task is dropped with its
    /// client, the batch is still reported to the queue and its slot freed.
    #[tokio::test]
    async fn an_inline_batch_dropped_with_its_client_is_reported() {
        let batcher = Arc::new(Batcher::new("m", policy(4, 0, 1)));
        let slow = Arc::new(Echo {
            delay: Duration::from_secs(30),
            ..Echo::default()
        });
        let left = tokio::time::timeout(Duration::from_millis(50), submit(&batcher, &slow, 1.0));
        assert!(left.await.is_err(), "the slow batch answered");
        assert_eq!(slow.running.load(Ordering::SeqCst), 1, "never sent");
        assert!(
            batcher.state().queue.last_answer().is_some(),
            "not reported"
        );
        let echo = Arc::new(Echo::default());
        let next = tokio::time::timeout(Duration::from_secs(5), submit(&batcher, &echo, 2.0));
        assert_eq!(next.await.unwrap(), Ok(2.0));
    }
}
