//! Reconciliation of `ConfluenceConnector` objects: Secret resolution and status
//! computation (pure), the reconciler and its wiring.

pub mod credentials;
pub mod status;
