//! The `confluence-operator.io/v1alpha1` API: CRD types, condition reasons and the
//! defaults applied in code. Nothing here does I/O.

pub mod connector;
mod crd;
pub mod duration;
pub mod grant;
pub mod reasons;

pub use connector::{
    AccessChange, ConfluenceConnector, ConfluenceConnectorSpec, ConfluenceConnectorStatus,
    CredentialsSpec, Phase, SecretRef, SnapshotRef, SyncSpec, SyncSummary,
};
pub use crd::{all_crds, crd_files, crds_yaml};
pub use grant::{
    ConfluenceAccessGrant, ConfluenceAccessGrantSpec, ConfluenceAccessGrantStatus, ConnectorRef,
    GrantPhase, GroupSelector, MembershipChange, UserSelector,
};

/// API group of every kind this operator serves.
pub const GROUP: &str = "confluence-operator.io";
/// The only served version.
pub const VERSION: &str = "v1alpha1";
/// Field manager used for every write the operator makes.
pub const FIELD_MANAGER: &str = "confluence-operator";
/// A new value of this annotation asks for a sync now.
pub const SYNC_REQUESTED_AT_ANNOTATION: &str = "confluence-operator.io/sync-requested-at";
/// Finalizer that lets the operator delete a connector's snapshots.
pub const CLEANUP_FINALIZER: &str = "confluence-operator.io/cleanup";
/// Finalizer that lets the operator remove a grant's membership before the grant goes.
pub const REVOKE_FINALIZER: &str = "confluence-operator.io/revoke";
