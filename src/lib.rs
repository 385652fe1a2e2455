#![forbid(unsafe_code)]
//! confluence-operator: syncs Confluence Cloud identity data into baton c1z snapshots.

pub mod api;
pub mod confluence;
