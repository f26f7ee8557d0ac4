//! Every shape of async task and flow gives a `Send` future, so it can be spawned on a
//! multi-threaded executor (tokio's), as users do.

use std::future::Future;
use taskcache::prelude::*;
use taskcache::results::LocalResult;

fn dir(task: &str) -> String {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let root = ROOT.get_or_init(|| tempfile::tempdir().unwrap().keep());
    root.join(task).to_string_lossy().into_owned()
}

#[task]
async fn plain(x: u64) -> u64 {
    x + 1
}

#[task(cache_for = "1h", cache_validator = all_inputs)]
async fn cached(x: u64) -> u64 {
    x * 2
}

#[task(checkpoint, target = "{x}.bin", result = LocalResult::new(dir("target")))]
async fn targeted(x: u64) -> u64 {
    x * 3
}

fn shared() -> LocalResult {
    LocalResult::new(dir("shared")).with_location("{x}/{label}.bin")
}

#[task(checkpoint, result = shared())]
async fn templated(x: u64, label: &str) -> String {
    format!("{label}{x}")
}

#[task(max_retries = 2, retry_delay = "1ms")]
async fn retried(x: u64) -> Result<u64, String> {
    if taskcache::context::current().task_run_count() < 2 {
        Err("not yet".into())
    } else {
        Ok(x)
    }
}

#[flow]
async fn pipeline(x: u64) -> u64 {
    plain(x).await + cached(x).await + targeted(x).await + retried(x).await.unwrap()
}

/// Fails to compile unless `f` is `Send`.
fn send<F: Future + Send>(f: F) -> F {
    f
}

#[test]
fn every_async_shape_spawns_on_a_multi_threaded_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let label = String::from("v");
        let handles = vec![
            tokio::spawn(send(plain(1))),
            tokio::spawn(send(async { plain::run(1).await.into_output() })),
            tokio::spawn(send(cached(1))),
            tokio::spawn(send(async { cached::run(1).await.into_output() })),
            tokio::spawn(send(targeted(1))),
            tokio::spawn(send(async { targeted::run(2).await.into_output() })),
            tokio::spawn(send(async move { templated(4, &label).await.len() as u64 })),
            tokio::spawn(send(retried::run(5))).then_output(),
            tokio::spawn(send(pipeline(1))),
            tokio::spawn(send(async { pipeline::run(2).await.into_output() })),
        ];
        let mut outputs = Vec::new();
        for h in handles {
            outputs.push(h.await.unwrap());
        }
        assert_eq!(
            outputs,
            [2, 2, 2, 2, 3, 6, 2, 5, 2 + 2 + 3 + 1, 3 + 4 + 6 + 2]
        );
    });
}

/// A spawned `x::run(..)` gives a state; the test wants its output.
trait ThenOutput {
    fn then_output(self) -> tokio::task::JoinHandle<u64>;
}

impl ThenOutput for tokio::task::JoinHandle<State<Result<u64, String>>> {
    fn then_output(self) -> tokio::task::JoinHandle<u64> {
        tokio::spawn(async move { self.await.unwrap().into_output().unwrap() })
    }
}
