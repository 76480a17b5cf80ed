//! The awaitable a queued async caller waits on ([`Ticket`], the part of the asyncio future
//! protocol asyncio's tasks use) and the [`Resolver`] that settles one event loop's tickets
//! and wakes their tasks in one pass per batch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use pyo3::{PyTraverseError, PyVisit};

use super::{Callback, Here, Outcome, Waiter};

fn cancelled_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CANCELLED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CANCELLED.import(py, "asyncio", "CancelledError")
}

/// Where a [`Ticket`] stands.
#[derive(Debug)]
enum Status {
    Pending,
    Done(Outcome),
    /// Cancelled, with the message for its `CancelledError`.
    Cancelled(Option<Py<PyAny>>),
}

impl Status {
    /// A copy (new references only: errors are normalized before they are stored).
    fn clone_ref(&self, py: Python<'_>) -> Self {
        match self {
            Status::Pending => Status::Pending,
            Status::Done(Ok(value)) => Status::Done(Ok(value.clone_ref(py))),
            Status::Done(Err(error)) => Status::Done(Err(error.clone_ref(py))),
            Status::Cancelled(msg) => Status::Cancelled(msg.as_ref().map(|m| m.clone_ref(py))),
        }
    }
}

#[derive(Debug)]
struct TicketState {
    status: Status,
    callbacks: Vec<Callback>,
}

fn cancelled_err(py: Python<'_>, msg: Option<Py<PyAny>>) -> PyErr {
    match cancelled_error(py) {
        Ok(class) => match msg {
            Some(msg) => PyErr::from_type(class.clone(), (msg,)),
            None => PyErr::from_type(class.clone(), ()),
        },
        Err(error) => error,
    }
}

fn invalid_state(py: Python<'_>, message: &'static str) -> PyErr {
    static INVALID: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match INVALID.import(py, "asyncio", "InvalidStateError") {
        Ok(class) => PyErr::from_type(class.clone(), message),
        Err(error) => error,
    }
}

/// `event_loop.call_soon(callback, arg, context=context)`.
fn call_soon(
    event_loop: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    arg: &Bound<'_, PyAny>,
    context: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = event_loop.py();
    let kwargs = match context {
        Some(context) => {
            let kwargs = PyDict::new(py);
            kwargs.set_item(intern!(py, "context"), context)?;
            Some(kwargs)
        }
        None => None,
    };
    event_loop.call_method(intern!(py, "call_soon"), (callback, arg), kwargs.as_ref())?;
    Ok(())
}

/// A queued async caller's share of the answer: what `Batcher.submit` awaits, in place of an
/// asyncio future. It implements the part of the asyncio future protocol that asyncio's tasks
/// use (`_asyncio_future_blocking`, `get_loop`, `add_done_callback` with a context, `result`,
/// `cancel`, ...), so that its done callbacks (the awaiting tasks' wakeups) can be run in one
/// pass per batch by a [`Resolver`] rather than each through `loop.call_soon`. `cancel()`
/// (also what cancelling the awaiting task calls) takes the request out of the queue before
/// its batch forms.
#[pyclass(frozen, module = "tensorgate._core")]
#[derive(Debug)]
pub struct Ticket {
    gone: Arc<AtomicBool>,
    pub(super) event_loop: Py<PyAny>,
    blocking: AtomicBool,
    /// Only locked with the GIL held, and never across a call into Python (which could
    /// switch threads or come back to this ticket).
    state: Mutex<TicketState>,
}

impl Ticket {
    /// A pending ticket of a caller on `event_loop`; `gone` is shared with its queued request.
    pub(super) fn new(gone: Arc<AtomicBool>, event_loop: Py<PyAny>) -> Self {
        Self {
            gone,
            event_loop,
            blocking: AtomicBool::new(false),
            state: Mutex::new(TicketState {
                status: Status::Pending,
                callbacks: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TicketState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self, py: Python<'_>) -> Status {
        self.lock().status.clone_ref(py)
    }

    /// Settles a pending ticket and returns its done callbacks, to run next; none when it was
    /// cancelled meanwhile (its caller is gone).
    fn settle(&self, py: Python<'_>, outcome: Outcome) -> Vec<Callback> {
        let status = match outcome {
            Ok(value) => Status::Done(Ok(value)),
            Err(error) => {
                // An async function's task that was cancelled cancels its callers.
                if cancelled_error(py).is_ok_and(|class| error.is_instance(py, class)) {
                    Status::Cancelled(None)
                } else {
                    // Normalized here, so that copies never call into Python.
                    error.value(py);
                    Status::Done(Err(error))
                }
            }
        };
        let mut state = self.lock();
        if matches!(state.status, Status::Pending) {
            state.status = status;
            std::mem::take(&mut state.callbacks)
        } else {
            drop(state);
            drop(status);
            Vec::new()
        }
    }

    /// Schedules done callbacks on the ticket's loop, one `call_soon` each, as asyncio does.
    fn schedule(slf: &Bound<'_, Self>, callbacks: Vec<Callback>) -> PyResult<()> {
        let py = slf.py();
        let event_loop = slf.get().event_loop.bind(py);
        for (callback, context) in callbacks {
            call_soon(
                event_loop,
                callback.bind(py),
                slf.as_any(),
                context.as_ref().map(|c| c.bind(py)),
            )?;
        }
        Ok(())
    }
}

#[pymethods]
impl Ticket {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Yields the ticket itself to the task while pending (the task then waits on its done
    /// callback), else ends the `await` with the caller's share or error.
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match slf.get().status(py) {
            Status::Pending => {
                slf.get().blocking.store(true, Ordering::Relaxed);
                Ok(slf.clone().into_any().unbind())
            }
            Status::Done(Ok(value)) => Err(pyo3::exceptions::PyStopIteration::new_err((value,))),
            Status::Done(Err(error)) => Err(error),
            Status::Cancelled(msg) => Err(cancelled_err(py, msg)),
        }
    }

    #[getter(_asyncio_future_blocking)]
    fn asyncio_future_blocking(&self) -> bool {
        self.blocking.load(Ordering::Relaxed)
    }

    #[setter(_asyncio_future_blocking)]
    fn set_asyncio_future_blocking(&self, value: bool) {
        self.blocking.store(value, Ordering::Relaxed);
    }

    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    fn done(&self) -> bool {
        !matches!(self.lock().status, Status::Pending)
    }

    fn cancelled(&self) -> bool {
        matches!(self.lock().status, Status::Cancelled(_))
    }

    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.status(py) {
            Status::Pending => Err(invalid_state(py, "Result is not ready.")),
            Status::Done(outcome) => outcome,
            Status::Cancelled(msg) => Err(cancelled_err(py, msg)),
        }
    }

    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.status(py) {
            Status::Pending => Err(invalid_state(py, "Exception is not set.")),
            Status::Done(Ok(_)) => Ok(None),
            Status::Done(Err(error)) => Ok(Some(error.value(py).clone().into_any().unbind())),
            Status::Cancelled(msg) => Err(cancelled_err(py, msg)),
        }
    }

    #[pyo3(signature = (callback, *, context = None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let mut callback = Some((callback, context));
        {
            let mut state = slf.get().lock();
            if matches!(state.status, Status::Pending)
                && let Some(callback) = callback.take()
            {
                state.callbacks.push(callback);
            }
        }
        match callback {
            Some(callback) => Ticket::schedule(slf, vec![callback]),
            None => Ok(()),
        }
    }

    fn remove_done_callback(&self, callback: &Bound<'_, PyAny>) -> PyResult<usize> {
        let py = callback.py();
        let callbacks = std::mem::take(&mut self.lock().callbacks);
        let mut kept = Vec::with_capacity(callbacks.len());
        let mut removed = 0;
        let mut failed = None;
        for (f, context) in callbacks {
            match f.bind(py).eq(callback) {
                Ok(true) if failed.is_none() => removed += 1,
                Ok(_) => kept.push((f, context)),
                Err(error) => {
                    kept.push((f, context));
                    failed.get_or_insert(error);
                }
            }
        }
        let mut state = self.lock();
        // Callbacks added meanwhile (by an `__eq__`) go after the kept ones.
        kept.append(&mut state.callbacks);
        state.callbacks = kept;
        drop(state);
        failed.map_or(Ok(removed), Err)
    }

    /// Cancels the ticket (and takes the request out of the queue if its batch has not
    /// formed); `False` when it is already done.
    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let this = slf.get();
        let callbacks = {
            let mut state = this.lock();
            if !matches!(state.status, Status::Pending) {
                return Ok(false);
            }
            this.gone.store(true, Ordering::Relaxed);
            state.status = Status::Cancelled(msg);
            std::mem::take(&mut state.callbacks)
        };
        Ticket::schedule(slf, callbacks)?;
        Ok(true)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        let Ok(state) = self.state.try_lock() else {
            return Ok(());
        };
        for (callback, context) in &state.callbacks {
            visit.call(callback)?;
            visit.call(context)?;
        }
        if let Status::Done(Ok(value)) = &state.status {
            visit.call(value)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let callbacks = std::mem::take(&mut self.lock().callbacks);
        drop(callbacks);
    }
}

/// What a [`Resolver`] does for one ticket.
#[derive(Debug)]
enum Resolution {
    /// Settle it (its batch finished on another thread), then run its done callbacks.
    Settle(Outcome),
    /// It was settled: run these done callbacks.
    Wake(Vec<Callback>),
}

/// Tickets of one event loop, with what to do for each.
type Resolutions = VecDeque<(Py<Ticket>, Resolution)>;

/// Settles the tickets of one event loop in a batch and runs their done callbacks (the
/// awaiting tasks' wakeups), all in one call on that loop: one `call_soon_threadsafe` per
/// batch from another thread, one `call_soon` on the loop's own thread (not run at once: that
/// is inside a task, and a loop runs one task at a time).
#[pyclass(frozen, module = "tensorgate._core")]
#[derive(Debug)]
pub struct Resolver {
    items: Mutex<Resolutions>,
}

impl Resolver {
    fn new(items: Resolutions) -> Self {
        Self {
            items: Mutex::new(items),
        }
    }
}

/// Runs a done callback now. An `Exception` goes to the loop's exception handler, as with
/// callbacks run by `asyncio.Handle`; a `BaseException` (`KeyboardInterrupt`, `SystemExit`) is
/// returned, to be raised out of the loop.
fn run_callback(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    ticket: &Bound<'_, Ticket>,
    (callback, context): Callback,
) -> Option<PyErr> {
    let done = match context {
        Some(context) => context.call_method1(py, intern!(py, "run"), (callback, ticket)),
        None => callback.call1(py, (ticket,)),
    };
    let error = done.err()?;
    if !error.is_instance_of::<pyo3::exceptions::PyException>(py) {
        return Some(error);
    }
    let report = || -> PyResult<()> {
        let context = PyDict::new(py);
        context.set_item("message", "Exception in a tensorgate.Batcher done callback")?;
        context.set_item("exception", error.value(py))?;
        context.set_item("future", ticket)?;
        event_loop.call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    };
    if let Err(failed) = report() {
        failed.write_unraisable(py, Some(ticket.as_any()));
    }
    None
}

#[pymethods]
impl Resolver {
    fn __call__(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut items = std::mem::take(
            &mut *slf
                .get()
                .items
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        while let Some((ticket, resolution)) = items.pop_front() {
            let ticket = ticket.bind(py);
            let callbacks = match resolution {
                Resolution::Settle(outcome) => ticket.get().settle(py, outcome),
                Resolution::Wake(callbacks) => callbacks,
            };
            let event_loop = ticket.get().event_loop.bind(py);
            let mut callbacks = callbacks.into_iter();
            while let Some(callback) = callbacks.next() {
                if let Some(error) = run_callback(py, event_loop, ticket, callback) {
                    // The rest runs on the loop's next iterations, as separate handles would.
                    drop(Ticket::schedule(ticket, callbacks.collect()));
                    if !items.is_empty() {
                        *slf.get()
                            .items
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = items;
                        drop(event_loop.call_method1(intern!(py, "call_soon"), (slf,)));
                    }
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

/// Hands each waiter its outcome.
pub(super) fn resolve(
    py: Python<'_>,
    waiters: Vec<(Waiter, Arc<AtomicBool>)>,
    outcomes: impl Iterator<Item = Outcome>,
    here: Here<'_, '_>,
) {
    let here = here.event_loop();
    let mut local = VecDeque::new();
    let mut remote: Vec<(Py<PyAny>, Resolutions)> = Vec::new();
    for ((waiter, gone), outcome) in waiters.into_iter().zip(outcomes) {
        match waiter {
            Waiter::Sync(slot) => slot.set(outcome),
            Waiter::Async(_) if gone.load(Ordering::Relaxed) => {}
            Waiter::Async(ticket) => {
                let event_loop = ticket.get().event_loop.bind(py);
                if here.is_some_and(|here| here.is(event_loop)) {
                    // Settled now: a caller that awaits it later (the one whose request made
                    // this batch) does not suspend.
                    let callbacks = ticket.get().settle(py, outcome);
                    if !callbacks.is_empty() {
                        local.push_back((ticket, Resolution::Wake(callbacks)));
                    }
                } else if let Some((_, items)) = remote.iter_mut().find(|(l, _)| l.is(event_loop)) {
                    items.push_back((ticket, Resolution::Settle(outcome)));
                } else {
                    let event_loop = event_loop.clone().unbind();
                    remote.push((
                        event_loop,
                        VecDeque::from([(ticket, Resolution::Settle(outcome))]),
                    ));
                }
            }
        }
    }
    if let Some(here) = here
        && !local.is_empty()
        && let Ok(resolver) = Py::new(py, Resolver::new(local))
    {
        drop(here.call_method1(intern!(py, "call_soon"), (resolver,)));
    }
    for (event_loop, items) in remote {
        // A closed loop refuses: nobody is left to await its tickets.
        if let Ok(resolver) = Py::new(py, Resolver::new(items)) {
            drop(event_loop.call_method1(py, intern!(py, "call_soon_threadsafe"), (resolver,)));
        }
    }
}
