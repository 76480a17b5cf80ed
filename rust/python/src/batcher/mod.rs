//! `tensorgate.Batcher`: batching calls to a Python function in-process.
//!
//! Callers hand in dicts of numpy arrays; their rows wait in the core [`Queue`] (the gateway's
//! batching rule), are concatenated along dimension 0 with the core [`batch::concat`], passed to
//! the function as one dict, and the function's arrays are split back by rows into zero-copy
//! views, one dict per caller.
//!
//! Who runs a batch: the thread that makes it due, when that is cheap. A `submit_sync` caller
//! that fills a batch runs it itself (it would block anyway); an async caller runs it inline
//! when the function is known to be cheap (a thread hop would cost more than the call), and
//! otherwise hands it to the batcher's worker threads, which also wake at batch deadlines and
//! queue timeouts. Workers wait on a condvar without the GIL. Async functions run as a task on
//! a caller's event loop. Async callers await a [`Ticket`] (an asyncio-compatible awaitable,
//! not an asyncio future): a batch settles its tickets and wakes one event loop's waiting tasks
//! from a single [`Resolver`] callback (`call_soon` on the loop's own thread,
//! `call_soon_threadsafe` from another), rather than one `call_soon` per caller. `submit_sync`
//! callers wait on a condvar without the GIL.
//!
//! Lock order: the state mutex is never held while acquiring the GIL.
//!
//! - [`arrays`]: numpy arrays in (inputs read into core tensors) and out (views, split shares).
//! - [`awaitable`]: what async callers await, and how one loop's callers are woken per batch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};
use tensorgate_core::batch::{self, Decision, Delay, Full, Member, Policy, Queue};
use tensorgate_core::{DataType, Tensor as CoreTensor};

use crate::error::to_py;
use crate::tensor::numpy_view;

mod arrays;
mod awaitable;

use arrays::{read_inputs, split_outputs};
use awaitable::resolve;
pub use awaitable::{Resolver, Ticket};

/// An async caller may run a sync function inline when its batches took less than this.
const INLINE_BELOW: Duration = Duration::from_micros(500);
/// Batches one `pump` runs inline before leaving the rest to the workers.
const INLINE_ROUNDS: usize = 4;
/// Inputs above this many bytes are concatenated without the GIL.
const DETACH_CONCAT_BYTES: usize = 1 << 20;

/// One input as the batching rule sees it: requests batch together when all of these agree.
#[derive(Debug, PartialEq)]
struct Column {
    name: String,
    datatype: DataType,
    trailing: Vec<usize>,
}

/// How a caller waits for its share.
#[derive(Debug)]
enum Waiter {
    /// A coroutine awaiting a [`Ticket`], resolved on the ticket's event loop.
    Async(Py<Ticket>),
    /// A `submit_sync` caller blocked on the slot.
    Sync(Arc<Slot>),
}

#[derive(Debug)]
struct Item {
    /// Sorted by name; `tensors` in the same order.
    key: Vec<Column>,
    tensors: Vec<CoreTensor>,
    rows: usize,
    enqueued: Instant,
    gone: Arc<AtomicBool>,
    waiter: Waiter,
}

impl Member for Item {
    type Key = Vec<Column>;

    fn key(&self) -> &Vec<Column> {
        &self.key
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn enqueued(&self) -> Instant {
        self.enqueued
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }
}

type Outcome = PyResult<Py<PyAny>>;
/// A done callback of a [`Ticket`] and the context it runs in.
type Callback = (Py<PyAny>, Option<Py<PyAny>>);
/// `(queue_full, timeout, closed, output, dropped)` exception classes.
type ErrorClasses = (Py<PyType>, Py<PyType>, Py<PyType>, Py<PyType>, Py<PyType>);

/// Where a `submit_sync` caller's answer lands.
#[derive(Debug, Default)]
struct Slot {
    outcome: Mutex<Option<Outcome>>,
    ready: Condvar,
}

impl Slot {
    fn set(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        self.ready.notify_one();
    }

    /// The outcome, or `None` when `deadline` passed first. Called without the GIL.
    fn wait(&self, deadline: Option<Instant>) -> Option<Outcome> {
        let mut outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(outcome) = outcome.take() {
                return Some(outcome);
            }
            outcome = match deadline {
                None => self
                    .ready
                    .wait(outcome)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.ready
                        .wait_timeout(outcome, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

#[derive(Debug)]
struct State {
    queue: Queue<Item>,
    /// Batches formed and not finished.
    inflight: usize,
    closed: bool,
    /// Batches formed by a caller for a worker to run.
    handoff: VecDeque<Vec<Item>>,
    /// What each worker is doing (indexed by worker).
    workers: Vec<Wait>,
    /// A worker was notified to look at the queue by then, and none has looked yet.
    notified: Option<Instant>,
    /// Smoothed time the function takes per batch.
    cost: Option<Duration>,
    /// Rows queued (an overestimate once requests gave up; reset when the queue empties).
    rows_waiting: usize,
    /// No batch is due before this, unless `rows_waiting` reaches `Shared::due_rows`: saves
    /// forming the candidate batch on every push (fixed delays only).
    not_due_before: Option<Instant>,
}

/// A worker's state, so that pushes know whether one will look at the queue in time.
#[derive(Debug, Clone, Copy)]
enum Wait {
    Busy,
    Forever,
    Until(Instant),
}

/// The exception classes of `tensorgate.batching`.
#[derive(Debug)]
struct Errors {
    queue_full: Py<PyType>,
    timeout: Py<PyType>,
    closed: Py<PyType>,
    output: Py<PyType>,
    dropped: Py<PyType>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    work: Condvar,
    func: Py<PyAny>,
    is_async: bool,
    /// `start_async(event_loop | None, same_thread, func, batch)`: runs an async function's batch.
    start_async: Py<PyAny>,
    errors: Errors,
    max_inflight: usize,
    queue_timeout: Option<Duration>,
    /// With a fixed delay: the fewest rows that can make a batch due before its deadline
    /// (`max_batch_size` or the smallest preferred size).
    due_rows: Option<usize>,
}

/// Where the code forming a batch runs.
#[derive(Clone, Copy)]
enum Here<'a, 'py> {
    /// In a coroutine on this event loop.
    Loop(&'a Bound<'py, PyAny>),
    /// A `submit_sync` caller's thread.
    Caller,
    /// A worker thread.
    Worker,
}

impl Here<'_, '_> {
    fn event_loop(&self) -> Option<&Bound<'_, PyAny>> {
        match self {
            Here::Loop(event_loop) => Some(event_loop),
            _ => None,
        }
    }
}

fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET.import(py, "asyncio", "_get_running_loop")?.call0()
}

/// Hands every waiter the same error.
fn fail_all(
    py: Python<'_>,
    waiters: Vec<(Waiter, Arc<AtomicBool>)>,
    error: &PyErr,
    here: Here<'_, '_>,
) {
    resolve(
        py,
        waiters,
        std::iter::repeat_with(|| Err(error.clone_ref(py))),
        here,
    );
}

/// The members of a batch once their inputs were taken: who waits and how many rows each sent.
#[derive(Debug)]
struct Members {
    waiters: Vec<(Waiter, Arc<AtomicBool>)>,
    rows: Vec<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queue's decision, keeping the bookkeeping that lets pushes skip it.
    fn decide(&self, state: &mut State, now: Instant) -> Decision<Item> {
        let decision = state.queue.next(now);
        match &decision {
            Decision::Dispatch(items) => {
                let rows: usize = items.iter().map(|item| item.rows).sum();
                state.rows_waiting = state.rows_waiting.saturating_sub(rows);
                state.not_due_before = None;
            }
            Decision::WaitUntil(at) => state.not_due_before = Some(*at),
            Decision::Idle => state.not_due_before = None,
        }
        if state.queue.is_empty() {
            state.rows_waiting = 0;
        }
        decision
    }

    /// Whether no batch can be due now (so the queue need not be asked).
    fn surely_not_due(&self, state: &State, now: Instant) -> bool {
        self.due_rows.is_some_and(|due_rows| {
            state.rows_waiting < due_rows && state.not_due_before.is_some_and(|at| now < at)
        })
    }

    /// Makes sure a worker looks at the queue by `at` (busy workers look when they finish).
    fn wake_by(&self, state: &mut State, at: Instant) {
        if state.notified.is_some_and(|notified| notified <= at) {
            return;
        }
        let mut waiting = false;
        let mut earliest: Option<Instant> = None;
        for wait in &state.workers {
            match *wait {
                Wait::Busy => {}
                Wait::Forever => waiting = true,
                Wait::Until(until) => {
                    waiting = true;
                    earliest = Some(earliest.map_or(until, |e| e.min(until)));
                }
            }
        }
        if waiting && earliest.is_none_or(|earliest| at < earliest) {
            state.notified = Some(at);
            self.work.notify_one();
        }
    }

    /// Queues a request, then forms and runs whatever batches are due.
    fn push(
        self: &Arc<Self>,
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        waiter: Waiter,
        gone: Arc<AtomicBool>,
        here: Here<'_, '_>,
    ) -> PyResult<()> {
        let (key, tensors, rows) = read_inputs(py, inputs)?;
        let now = Instant::now();
        let item = Item {
            key,
            tensors,
            rows,
            enqueued: now,
            gone,
            waiter,
        };
        let refused = {
            let mut state = self.lock();
            if state.closed {
                Some((
                    self.errors.closed.bind(py),
                    "the batcher is closed".to_owned(),
                ))
            } else if let Err(Full(item)) = state.queue.push(item, now) {
                let max_queue_size = state.queue.policy().max_queue_size;
                drop(state);
                drop(item);
                Some((
                    self.errors.queue_full.bind(py),
                    format!(
                        "the batch queue is full ({max_queue_size} requests waiting, \
                         max_queue_size); retry later"
                    ),
                ))
            } else {
                // The oldest request times out first.
                if let Some(at) = self.expiry(&state) {
                    self.wake_by(&mut state, at);
                }
                state.rows_waiting += rows;
                None
            }
        };
        if let Some((class, message)) = refused {
            return Err(PyErr::from_type(class.clone(), message));
        }
        self.pump(py, here);
        Ok(())
    }

    /// When the oldest waiting request times out, with a queue timeout set.
    fn expiry(&self, state: &State) -> Option<Instant> {
        let timeout = self.queue_timeout?;
        state.queue.oldest()?.checked_add(timeout)
    }

    /// Whether a batch formed `here` runs here rather than on a worker.
    fn runs_here(&self, state: &State, here: Here<'_, '_>) -> bool {
        self.is_async
            || match here {
                Here::Caller | Here::Worker => true,
                Here::Loop(_) => state.cost.is_some_and(|cost| cost < INLINE_BELOW),
            }
    }

    /// Forms the batches that are due and runs (or hands off) each.
    fn pump(self: &Arc<Self>, py: Python<'_>, here: Here<'_, '_>) {
        for _ in 0..INLINE_ROUNDS {
            let members = {
                let mut state = self.lock();
                let now = Instant::now();
                if state.inflight >= self.max_inflight || self.surely_not_due(&state, now) {
                    return;
                }
                match self.decide(&mut state, now) {
                    Decision::Dispatch(members) => {
                        state.inflight += 1;
                        if !self.runs_here(&state, here) {
                            state.handoff.push_back(members);
                            self.work.notify_one();
                            return;
                        }
                        members
                    }
                    Decision::WaitUntil(at) => {
                        self.wake_by(&mut state, at);
                        return;
                    }
                    Decision::Idle => return,
                }
            };
            self.launch(py, members, here);
        }
        // More may be due: a worker carries on.
        self.work.notify_one();
    }

    /// Runs a formed batch: concatenates, calls the function (or starts its task), and for a
    /// sync function splits and hands out the answer.
    fn launch(self: &Arc<Self>, py: Python<'_>, items: Vec<Item>, here: Here<'_, '_>) {
        let mut columns: Vec<Vec<CoreTensor>> = Vec::new();
        let mut members = Members {
            waiters: Vec::with_capacity(items.len()),
            rows: Vec::with_capacity(items.len()),
        };
        let mut bytes = 0usize;
        for item in items {
            if columns.is_empty() {
                columns = item.tensors.iter().map(|_| Vec::with_capacity(1)).collect();
            }
            for (column, tensor) in columns.iter_mut().zip(item.tensors) {
                bytes += tensor.data().len();
                column.push(tensor);
            }
            members.rows.push(item.rows);
            members.waiters.push((item.waiter, item.gone));
        }
        let concat = || {
            columns
                .iter()
                .map(|column| batch::concat(column))
                .collect::<tensorgate_core::Result<Vec<_>>>()
        };
        let merged = if bytes > DETACH_CONCAT_BYTES {
            py.detach(concat)
        } else {
            concat()
        };
        let inputs = merged.map_err(to_py).and_then(|merged| {
            let inputs = PyDict::new(py);
            for tensor in merged {
                let name = PyString::new(py, &tensor.name);
                inputs.set_item(name, numpy_view(py, &tensor)?)?;
            }
            Ok(inputs)
        });
        let inputs = match inputs {
            Ok(inputs) => inputs,
            Err(error) => return self.complete(py, members, Err(error), Duration::ZERO, here),
        };
        let started = Instant::now();
        if self.is_async {
            // On a loop that one of the members awaits on: a loop whose own callers are all
            // answered may close before the task runs, which would drop the batch.
            let (event_loop, same_thread) = match (here.event_loop(), first_loop(py, &members)) {
                (Some(here), Some(first)) if !awaited_on(&members, here) => (Some(first), false),
                (Some(here), _) => (Some(here.clone().unbind()), true),
                (None, first) => (first, false),
            };
            let batch = Batch {
                shared: Arc::clone(self),
                inputs: inputs.unbind(),
                members: Mutex::new(Some(members)),
                started,
            };
            let started = Py::new(py, batch).and_then(|batch| {
                self.start_async.call1(
                    py,
                    (event_loop, same_thread, self.func.clone_ref(py), batch),
                )
            });
            // Not started (the loop is closed): the batch was dropped and failed its members.
            drop(started);
        } else {
            let outputs = self.func.call1(py, (inputs,));
            self.complete(py, members, outputs, started.elapsed(), here);
        }
    }

    /// Hands out a finished batch's answer and frees its slot.
    fn complete(
        &self,
        py: Python<'_>,
        members: Members,
        outputs: PyResult<Py<PyAny>>,
        took: Duration,
        here: Here<'_, '_>,
    ) {
        let shares = outputs
            .and_then(|outputs| split_outputs(py, &self.errors, outputs.bind(py), &members.rows));
        {
            // Before the callers hear back: a caller that submits again at once pays back rows
            // the queue already counts as owed.
            let mut state = self.lock();
            // Only a success says how fast `fn` is.
            let ran = (shares.is_ok() && !took.is_zero()).then_some(took);
            state
                .queue
                .record_batch(members.rows.iter().sum(), ran, Instant::now());
            if let Some(took) = ran {
                state.cost = Some(match state.cost {
                    Some(cost) => cost.mul_f64(0.8) + took.mul_f64(0.2),
                    None => took,
                });
            }
        }
        match shares {
            Ok(shares) => resolve(py, members.waiters, shares.into_iter().map(Ok), here),
            Err(error) => fail_all(py, members.waiters, &error, here),
        }
        let mut state = self.lock();
        state.inflight -= 1;
        if state.closed || !state.handoff.is_empty() {
            self.work.notify_all();
        }
    }

    /// What a worker does next, waited for without the GIL.
    fn next_job(&self, id: usize) -> Job {
        let mut state = self.lock();
        loop {
            state.notified = None;
            if let Some(wait) = state.workers.get_mut(id) {
                *wait = Wait::Busy;
            }
            if let Some(items) = state.handoff.pop_front() {
                return Job::Run(items);
            }
            let now = Instant::now();
            if self.expiry(&state).is_some_and(|at| at <= now) {
                let expired = state.queue.expired(now);
                let rows: usize = expired.iter().map(|item| item.rows).sum();
                state.rows_waiting = state.rows_waiting.saturating_sub(rows);
                if !expired.is_empty() {
                    return Job::Expire(expired);
                }
            }
            let mut wake = self.expiry(&state);
            if state.inflight < self.max_inflight {
                match self.decide(&mut state, now) {
                    Decision::Dispatch(items) => {
                        state.inflight += 1;
                        return Job::Run(items);
                    }
                    Decision::WaitUntil(at) => wake = Some(wake.map_or(at, |w: Instant| w.min(at))),
                    Decision::Idle => wake = None,
                }
            }
            if state.closed && state.queue.is_empty() && state.inflight == 0 {
                self.work.notify_all();
                return Job::Stop;
            }
            if let Some(wait) = state.workers.get_mut(id) {
                *wait = wake.map_or(Wait::Forever, Wait::Until);
            }
            state = match wake {
                None => self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let left = at.saturating_duration_since(now);
                    self.work
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// The event loop of the batch's first async member.
fn first_loop(py: Python<'_>, members: &Members) -> Option<Py<PyAny>> {
    members.waiters.iter().find_map(|(waiter, _)| match waiter {
        Waiter::Async(ticket) => Some(ticket.get().event_loop.clone_ref(py)),
        Waiter::Sync(_) => None,
    })
}

/// Whether a member of the batch awaits on `event_loop`.
fn awaited_on(members: &Members, event_loop: &Bound<'_, PyAny>) -> bool {
    members.waiters.iter().any(|(waiter, _)| match waiter {
        Waiter::Async(ticket) => event_loop.is(&ticket.get().event_loop),
        Waiter::Sync(_) => false,
    })
}

enum Job {
    Run(Vec<Item>),
    Expire(Vec<Item>),
    Stop,
}

/// A batch of an async function, run as a task by `tensorgate.batching`.
#[pyclass(frozen, module = "tensorgate._core")]
#[derive(Debug)]
pub struct Batch {
    shared: Arc<Shared>,
    inputs: Py<PyDict>,
    members: Mutex<Option<Members>>,
    started: Instant,
}

impl Batch {
    fn take(&self) -> Option<Members> {
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn end(
        &self,
        py: Python<'_>,
        outputs: PyResult<Py<PyAny>>,
        event_loop: Option<&Bound<'_, PyAny>>,
    ) {
        let Some(members) = self.take() else {
            return;
        };
        let here = event_loop.map_or(Here::Worker, Here::Loop);
        self.shared
            .complete(py, members, outputs, self.started.elapsed(), here);
        self.shared.pump(py, here);
    }
}

#[pymethods]
impl Batch {
    /// The concatenated inputs.
    #[getter]
    fn inputs(&self, py: Python<'_>) -> Py<PyDict> {
        self.inputs.clone_ref(py)
    }

    /// Splits the function's answer among the members.
    #[pyo3(signature = (outputs, event_loop = None))]
    fn finish(&self, py: Python<'_>, outputs: Py<PyAny>, event_loop: Option<&Bound<'_, PyAny>>) {
        self.end(py, Ok(outputs), event_loop);
    }

    /// Fails every member with the function's exception.
    #[pyo3(signature = (error, event_loop = None))]
    fn fail(
        &self,
        py: Python<'_>,
        error: &Bound<'_, PyAny>,
        event_loop: Option<&Bound<'_, PyAny>>,
    ) {
        self.end(py, Err(PyErr::from_value(error.clone())), event_loop);
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(members) = self.take() {
            Python::attach(|py| {
                let error = PyErr::from_type(
                    self.shared.errors.dropped.bind(py).clone(),
                    "the batch was dropped before the function ran (its event loop closed?)",
                );
                self.shared
                    .complete(py, members, Err(error), Duration::ZERO, Here::Worker);
                self.shared.pump(py, Here::Worker);
            });
        }
    }
}

/// The Rust half of `tensorgate.Batcher` (see `tensorgate.batching`).
#[pyclass(frozen, module = "tensorgate._core", name = "Batcher")]
#[derive(Debug)]
pub struct PyBatcher {
    shared: Arc<Shared>,
}

fn duration_ms(what: &str, ms: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a non-negative number of ms, got {ms}"
        ))
    })
}

#[pymethods]
impl PyBatcher {
    #[new]
    #[pyo3(signature = (
        func, is_async, start_async, errors, *, max_batch_size, max_queue_delay_ms,
        target_latency_ms, preferred_batch_sizes, max_queue_size, queue_timeout_ms,
        max_inflight_batches
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        func: Py<PyAny>,
        is_async: bool,
        start_async: Py<PyAny>,
        errors: ErrorClasses,
        max_batch_size: usize,
        max_queue_delay_ms: Option<f64>,
        target_latency_ms: f64,
        preferred_batch_sizes: Vec<usize>,
        max_queue_size: usize,
        queue_timeout_ms: Option<f64>,
        max_inflight_batches: usize,
    ) -> PyResult<Self> {
        let delay = match max_queue_delay_ms {
            Some(ms) => Delay::Fixed(duration_ms("max_queue_delay_ms", ms)?),
            None => Delay::Auto {
                target_latency: duration_ms("target_latency_ms", target_latency_ms)?,
            },
        };
        let queue_timeout = queue_timeout_ms
            .map(|ms| duration_ms("queue_timeout_ms", ms))
            .transpose()?;
        let policy = Policy {
            max_batch_size,
            delay,
            preferred_batch_sizes,
            max_queue_size,
            // The queue's own timeout rule is only applied by the workers, when one is set.
            queue_timeout: queue_timeout.unwrap_or(Policy::MAX_WAIT),
            max_inflight_batches,
        }
        .validated()
        .map_err(|e| PyValueError::new_err(e.message().to_owned()))?;
        let due_rows = match policy.delay {
            Delay::Fixed(_) => Some(
                policy
                    .preferred_batch_sizes
                    .first()
                    .map_or(policy.max_batch_size, |&p| p.min(policy.max_batch_size)),
            ),
            Delay::Auto { .. } => None,
        };
        let (queue_full, timeout, closed, output, dropped) = errors;
        Ok(Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: Queue::new(policy),
                    inflight: 0,
                    closed: false,
                    handoff: VecDeque::new(),
                    workers: Vec::new(),
                    notified: None,
                    cost: None,
                    rows_waiting: 0,
                    not_due_before: None,
                }),
                work: Condvar::new(),
                func,
                is_async,
                start_async,
                errors: Errors {
                    queue_full,
                    timeout,
                    closed,
                    output,
                    dropped,
                },
                max_inflight: max_inflight_batches,
                queue_timeout,
                due_rows,
            }),
        })
    }

    /// Queues an async caller's inputs; the ticket (awaited on `event_loop`, the running loop)
    /// gets the caller's rows of the answer.
    fn submit(
        &self,
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        event_loop: &Bound<'_, PyAny>,
    ) -> PyResult<Py<Ticket>> {
        let gone = Arc::new(AtomicBool::new(false));
        let ticket = Py::new(
            py,
            Ticket::new(Arc::clone(&gone), event_loop.clone().unbind()),
        )?;
        let waiter = Waiter::Async(ticket.clone_ref(py));
        self.shared
            .push(py, inputs, waiter, gone, Here::Loop(event_loop))?;
        Ok(ticket)
    }

    /// Queues a thread's inputs and blocks, without the GIL, until its rows of the answer are
    /// back or `timeout` seconds passed (`TimeoutError`).
    #[pyo3(signature = (inputs, timeout = None))]
    fn submit_sync(
        &self,
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        if !running_loop(py)?.is_none() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "submit_sync() would block the running event loop: use `await batcher.submit(...)`",
            ));
        }
        let deadline = timeout
            .map(|s| duration_ms("timeout", s * 1000.0))
            .transpose()?
            .and_then(|t| Instant::now().checked_add(t));
        let slot = Arc::new(Slot::default());
        let gone = Arc::new(AtomicBool::new(false));
        self.shared.push(
            py,
            inputs,
            Waiter::Sync(Arc::clone(&slot)),
            Arc::clone(&gone),
            Here::Caller,
        )?;
        let ready = slot
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let outcome = match ready {
            Some(outcome) => Some(outcome),
            None => py.detach(|| slot.wait(deadline)),
        };
        match outcome {
            Some(outcome) => outcome,
            None => {
                gone.store(true, Ordering::Relaxed);
                Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
                    "no answer within {}s",
                    timeout.unwrap_or_default()
                )))
            }
        }
    }

    /// A worker thread's loop: runs until the batcher is closed and drained.
    fn run_worker(&self, py: Python<'_>) {
        let id = {
            let mut state = self.shared.lock();
            state.workers.push(Wait::Busy);
            state.workers.len() - 1
        };
        loop {
            match py.detach(|| self.shared.next_job(id)) {
                Job::Run(items) => self.shared.launch(py, items, Here::Worker),
                Job::Expire(items) => {
                    let timeout = self.shared.queue_timeout.unwrap_or_default();
                    let error = PyErr::from_type(
                        self.shared.errors.timeout.bind(py).clone(),
                        format!(
                            "the request waited longer than queue_timeout_ms ({} ms) without being batched",
                            timeout.as_secs_f64() * 1000.0
                        ),
                    );
                    let waiters = items
                        .into_iter()
                        .map(|item| (item.waiter, item.gone))
                        .collect::<Vec<_>>();
                    fail_all(py, waiters, &error, Here::Worker);
                }
                Job::Stop => return,
            }
        }
    }

    /// Stops taking requests; queued ones are still batched and answered.
    fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        drop(state);
        self.shared.work.notify_all();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Requests waiting in the queue.
    #[getter]
    fn queued(&self) -> usize {
        self.shared.lock().queue.waiting()
    }
}
