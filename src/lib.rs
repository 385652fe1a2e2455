#![forbid(unsafe_code)]
//! confluence-operator: syncs Confluence Cloud identity data into baton c1z snapshots.

pub mod api;
pub mod c1z;
pub mod cli;
pub mod confluence;
pub mod controller;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod review;
pub mod review_command;
pub mod run_command;
pub mod shutdown;
pub mod site;
pub mod sync;
pub mod sync_command;
pub mod telemetry;
