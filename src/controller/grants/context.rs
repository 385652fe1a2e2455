//! State of the grant controller: the operator's shared context plus what only grants
//! need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;

use crate::api::ConfluenceAccessGrant;

use super::super::context::{Context, lock};

/// What grant reconciles share.
pub struct GrantContext {
    /// Client, settings, recorder, metrics and shutdown of the operator.
    pub base: Arc<Context>,
    /// `--max-grant-duration`.
    pub max_duration: Duration,
    failures: Mutex<HashMap<ObjectRef<ConfluenceAccessGrant>, u32>>,
}

impl GrantContext {
    /// A context on top of the operator's.
    pub fn new(base: Arc<Context>, max_duration: Duration) -> Self {
        Self {
            base,
            max_duration,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a failed reconcile; returns the failures in a row.
    pub fn record_failure(&self, key: &ObjectRef<ConfluenceAccessGrant>) -> u32 {
        let mut failures = lock(&self.failures);
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets failures after a successful reconcile.
    pub fn reset_failures(&self, key: &ObjectRef<ConfluenceAccessGrant>) {
        lock(&self.failures).remove(key);
    }
}
