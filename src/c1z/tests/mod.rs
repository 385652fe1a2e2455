//! End-to-end tests of the c1z layer: write with `SnapshotWriter`, read back with `Snapshot`.

mod atomic;
mod expansion;
mod grant_ids;
mod rows;
mod schema;
mod support;
mod two_thread_expansion;
mod volume;
