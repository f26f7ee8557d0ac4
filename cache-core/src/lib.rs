//! The runtime of [taskcache](https://docs.rs/taskcache): states, context, flows and
//! parameters, cache validators, input hashing, retries with input caching, the
//! in-process output cache and the result-backend trait.
//!
//! Users normally reach all of this through the `taskcache` facade and its
//! `#[task]`/`#[flow]` macros; this crate is what the generated code calls.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod builder;
pub mod context;
pub mod flow;
pub mod hash;
pub mod header;
pub mod parameters;
pub mod persist;
mod replay;
pub mod result;
mod sharded;
pub mod state;
pub mod state_store;
pub mod store;
pub mod task;
pub mod template;
pub mod validators;

#[doc(hidden)]
pub mod runtime;
