//! A lock shared by machines that share nothing but an object store: a small lock
//! object written only with conditional puts, carrying a lease.
//!
//! - **Take**: create the object if it is missing (`PutMode::Create`, If-None-Match), or
//!   replace a released one, or one whose lease has run out, by compare-and-swap on the
//!   version read (`PutMode::Update`, If-Match). Of two machines racing, the store lets
//!   exactly one write win; the other reads again.
//! - **Lease**: the holder rewrites the object every third of its lease (again by
//!   compare-and-swap, with a counter, so its ETag changes). A waiter takes over only
//!   after it has seen the very same version for longer than the lease, timed by its
//!   own monotonic clock: no two machines' clocks are ever compared. A holder killed
//!   with SIGKILL stops renewing, and the next caller takes over once the lease ends.
//! - **Release**: compare-and-swap to a "released" body. Never a plain delete: a holder
//!   whose lease was taken over cannot remove its successor's lock.

use super::bridge;
use super::StoreHandle;
use object_store::{PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::{Duration, Instant};
use taskcache_core::result::{BoxFuture, Release};

/// The body of a lock object.
#[derive(Serialize, Deserialize)]
struct Body {
    /// `held` or `released`.
    state: String,
    /// Who holds it: a fresh id per lock taken.
    owner: String,
    /// The lease, in milliseconds: how long a waiter must see this very version
    /// unchanged before it may take the lock over.
    lease_ms: u64,
    /// Renewals so far (so that every renewal changes the object's ETag).
    renewal: u64,
}

impl Body {
    fn held(owner: &str, lease: Duration, renewal: u64) -> PutPayload {
        Body {
            state: "held".into(),
            owner: owner.into(),
            lease_ms: lease.as_millis().try_into().unwrap_or(u64::MAX),
            renewal,
        }
        .payload()
    }

    fn released(owner: &str) -> PutPayload {
        Body {
            state: "released".into(),
            owner: owner.into(),
            lease_ms: 0,
            renewal: 0,
        }
        .payload()
    }

    fn payload(&self) -> PutPayload {
        PutPayload::from(serde_json::to_vec(self).expect("a lock body encodes"))
    }
}

/// How long a release is waited for: a store that stopped answering must not hang the
/// caller; the lease then frees the lock.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// A held lock: renewed in the background until released ([`Release::release`], which
/// an async caller awaits) or dropped (which waits for the release, bounded).
pub(crate) struct Held {
    release: Option<tokio::sync::oneshot::Sender<()>>,
    released: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Held {
    /// Asks the renewal task to release the lock; the wait for it, bounded, as a task
    /// on the I/O runtime (`None` when there is nothing to wait for).
    fn ask_release(&mut self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let release = self.release.take()?;
        let released = self.released.take()?;
        release.send(()).ok()?;
        Some(async move {
            let _ = tokio::time::timeout(RELEASE_WAIT, released).await;
        })
    }
}

impl Release for Held {
    fn release(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        // The wait runs on the I/O runtime (its timer is there); this future only
        // awaits its end, so it blocks no executor, and the release goes ahead even if
        // the future is dropped.
        match self.ask_release().map(bridge::start) {
            Some(Ok(joined)) => Box::pin(async move {
                let _ = joined.await;
            }),
            _ => Box::pin(std::future::ready(())),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(wait) = self.ask_release() {
            // Bounded, as the release future: the lease frees a lock whose release
            // cannot land.
            bridge::blocking(|| {
                let _ = bridge::run(wait);
            });
        }
    }
}

fn version(e_tag: Option<String>, version: Option<String>) -> UpdateVersion {
    UpdateVersion { e_tag, version }
}

fn put(mode: PutMode) -> PutOptions {
    PutOptions {
        mode,
        ..PutOptions::default()
    }
}

/// Takes the lock object at `handle`'s `path`, waiting for it.
///
/// # Errors
/// The store's error, as text, when it fails or cannot write conditionally.
pub(crate) async fn take(
    handle: StoreHandle,
    lease: Duration,
    task_hint: String,
    secrets: Vec<String>,
) -> Result<Held, String> {
    let StoreHandle { store, path } = handle;
    let owner = uuid::Uuid::new_v4().simple().to_string();
    // The version last seen held, when it was first seen, and its lease.
    let mut seen: Option<(UpdateVersion, Instant, Duration)> = None;
    let mut pause = Duration::from_millis(20);
    let won = loop {
        let current = match store.get_opts(&path, Default::default()).await {
            Ok(got) => {
                let meta = got.meta.clone();
                let bytes = got.bytes().await.map_err(|e| e.to_string())?;
                Some((version(meta.e_tag, meta.version), bytes))
            }
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.to_string()),
        };
        let (mode, took_over) = match current {
            None => (PutMode::Create, None),
            Some((at, bytes)) => {
                if at.e_tag.is_none() && at.version.is_none() {
                    return Err("the store gives lock objects no ETag or version, so they \
                                cannot be replaced conditionally"
                        .into());
                }
                match serde_json::from_slice::<Body>(&bytes) {
                    Ok(body) if body.state == "released" => (PutMode::Update(at), None),
                    body => {
                        // Held (or unreadable, then held for our own lease): free once
                        // this very version has stood for longer than its lease.
                        let (theirs, holder) = match body {
                            Ok(b) => (Duration::from_millis(b.lease_ms), b.owner),
                            Err(_) => (lease, "an unreadable lock object".into()),
                        };
                        match &seen {
                            Some((v, since, l)) if *v == at && since.elapsed() > *l => {
                                (PutMode::Update(at), Some(holder))
                            }
                            Some((v, ..)) if *v == at => {
                                tokio::time::sleep(pause).await;
                                pause = (pause * 2).min(lease / 4).min(Duration::from_secs(1));
                                continue;
                            }
                            _ => {
                                seen = Some((at, Instant::now(), theirs));
                                tokio::time::sleep(pause).await;
                                continue;
                            }
                        }
                    }
                }
            }
        };
        match store
            .put_opts(&path, Body::held(&owner, lease, 0), put(mode))
            .await
        {
            Ok(r) => {
                if let Some(holder) = took_over {
                    tracing::warn!(
                        lock = %path,
                        previous = %holder,
                        "{task_hint}: took over a lock whose lease ran out (its holder \
                         stopped renewing it, perhaps killed)"
                    );
                }
                break version(r.e_tag, r.version);
            }
            // Another machine wrote it first: read it again.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => continue,
            Err(e) => return Err(e.to_string()),
        }
    };
    let (release, mut on_release) = tokio::sync::oneshot::channel();
    let (done, released) = tokio::sync::oneshot::channel();
    bridge::spawn(async move {
        let mut at = won;
        let mut renewal = 0;
        let mut lost = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(lease / 3), if !lost => {
                    renewal += 1;
                    let body = Body::held(&owner, lease, renewal);
                    // A renewal must land well within the lease, or a waiter may take
                    // the lock over meanwhile: bounded, then tried again.
                    let renewed = tokio::time::timeout(
                        lease / 3,
                        store.put_opts(&path, body, put(PutMode::Update(at.clone()))),
                    )
                    .await;
                    match renewed {
                        Ok(Ok(r)) => at = version(r.e_tag, r.version),
                        Ok(Err(object_store::Error::Precondition { .. })) => {
                            // Perhaps an earlier renewal landed though its answer was
                            // lost: the lock is still ours if it names this owner.
                            match still_ours(&*store, &path, &owner).await {
                                Some(v) => at = v,
                                None => {
                                    tracing::warn!(
                                        lock = %path,
                                        "{task_hint}: lost the lock: another process took it \
                                         over (this one could not renew its lease in time)"
                                    );
                                    lost = true;
                                }
                            }
                        }
                        Ok(Err(e)) => tracing::warn!(
                            lock = %path,
                            error = %super::redact::redact(&e.to_string(), &secrets),
                            "{task_hint}: cannot renew the lock's lease; trying again"
                        ),
                        Err(_) => tracing::warn!(
                            lock = %path,
                            "{task_hint}: renewing the lock's lease timed out; trying again"
                        ),
                    }
                }
                _ = &mut on_release => {
                    if !lost {
                        let _ = store
                            .put_opts(&path, Body::released(&owner), put(PutMode::Update(at)))
                            .await;
                    }
                    let _ = done.send(());
                    return;
                }
            }
        }
    })?;
    Ok(Held {
        release: Some(release),
        released: Some(released),
    })
}

/// The current version of the lock object at `path` if its body names `owner` as its
/// holder.
async fn still_ours(
    store: &dyn object_store::ObjectStore,
    path: &object_store::path::Path,
    owner: &str,
) -> Option<UpdateVersion> {
    let got = store.get_opts(path, Default::default()).await.ok()?;
    let meta = got.meta.clone();
    let bytes = got.bytes().await.ok()?;
    let body: Body = serde_json::from_slice(&bytes).ok()?;
    (body.state == "held" && body.owner == owner).then(|| version(meta.e_tag, meta.version))
}
