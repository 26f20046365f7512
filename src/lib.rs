//! tollgate: a credential-injecting egress proxy for sandboxes.
//!
//! The binary (`src/main.rs`) is a thin shell over this library so that benches and
//! tests can drive the same code paths the proxy runs.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod body;
pub mod budget;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod content;
pub mod duration;
pub mod error;
pub mod file_lock;
#[doc(hidden)]
pub mod fuzzing;
pub mod inject;
pub mod launcher;
pub mod metadata;
pub mod metrics;
pub mod mint;
pub mod net;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod replicas;
pub mod secrets;
pub mod serve;
pub mod sigv4;
pub mod task_token;
pub mod tasks;
pub mod text;
pub mod tls;
pub mod yaml;
