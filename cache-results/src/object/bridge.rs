//! From the runtime's synchronous backend calls to `object_store`'s async API.
//!
//! The futures run on a small private tokio runtime, started on first use, so that a
//! sync task works without the user starting one. The calling thread waits for them
//! with a parking waker of its own, which never panics whatever executor (if any) the
//! caller runs on. When the caller is a worker of a multi-threaded tokio runtime (an
//! async task awaited there), the wait is wrapped in `block_in_place`: the worker hands
//! its other tasks to a fresh thread first, so the executor keeps running them while
//! this one waits for the network.
//!
//! An async caller instead awaits the task's `JoinHandle` ([`start`]): any executor can
//! poll it, and it never blocks the thread that does.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// The private runtime, or why it could not be started.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("taskcache-io")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the I/O runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs `work`, which waits on the network, without stalling an async executor that
/// called it (see the module's documentation).
pub(crate) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    let on_multi_thread_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_multi_thread_worker {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Runs `future` on the private runtime and waits for its output on this thread.
///
/// # Errors
/// When the runtime cannot start, or the future panicked there.
pub(crate) fn run<F>(future: F) -> Result<F::Output, String>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    park_on(start(future)?)
}

/// Starts `future` on the private runtime and returns its output's future: it only
/// waits for the task there (a tokio `JoinHandle`), so any executor can poll it, or
/// none (`park_on`), and it never blocks the thread that polls it. Dropping it leaves
/// the task running to its end.
///
/// # Errors
/// When the runtime cannot start; the output's future fails when the task panicked.
pub(crate) fn start<F>(future: F) -> Result<Joined<F::Output>, String>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(Joined {
        handle: runtime()?.spawn(future),
        abort_on_drop: false,
    })
}

/// The output of a task on the private runtime (see [`start`]).
pub(crate) struct Joined<T> {
    handle: tokio::task::JoinHandle<T>,
    abort_on_drop: bool,
}

impl<T> Joined<T> {
    /// Stops the task when this is dropped before its end: for work whose result is
    /// of no use to anybody else (a download).
    pub(crate) fn abort_on_drop(mut self) -> Self {
        self.abort_on_drop = true;
        self
    }
}

impl<T> Future for Joined<T> {
    type Output = Result<T, String>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        std::pin::Pin::new(&mut self.handle)
            .poll(cx)
            .map(|joined| joined.map_err(|e| format!("the I/O task failed: {e}")))
    }
}

impl<T> Drop for Joined<T> {
    fn drop(&mut self) {
        if self.abort_on_drop {
            // Nothing once the task has ended.
            self.handle.abort();
        }
    }
}

/// Starts `future` on the private runtime without waiting for it.
///
/// # Errors
/// When the runtime cannot start.
pub(crate) fn spawn<F>(future: F) -> Result<(), String>
where
    F: Future<Output = ()> + Send + 'static,
{
    runtime()?.spawn(future);
    Ok(())
}

/// Polls `future` on this thread, parking between polls.
pub(crate) fn park_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_from_a_plain_thread_and_from_inside_runtimes() {
        assert_eq!(run(async { 1 + 1 }).unwrap(), 2);
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = current.block_on(async { blocking(|| run(async { 3 }).unwrap()) });
        assert_eq!(got, 3);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let got = multi.block_on(async {
            tokio::spawn(async { blocking(|| run(async { 4 }).unwrap()) })
                .await
                .unwrap()
        });
        assert_eq!(got, 4);
    }

    #[test]
    fn a_panicking_future_is_an_error_not_a_panic() {
        let err = run(async { panic!("boom") }).unwrap_err();
        assert!(err.contains("I/O task failed"), "{err}");
    }
}
