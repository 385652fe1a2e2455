//! Reconciliation of `ConfluenceAccessGrant` objects: just-in-time group membership.
//!
//! [`reconciler`] drives a grant from `Pending` to `Active` and on to `Expired` or
//! `Revoked`; [`resolve`] turns names and emails into ids; [`access`] finds the
//! connector and builds its client; [`status`] computes conditions (pure); [`run`]
//! wires the controller and revokes, before anything else, what expired while the
//! operator was down.

pub mod access;
pub mod context;
pub mod reconciler;
pub mod resolve;
pub mod run;
pub mod status;

pub use context::GrantContext;
