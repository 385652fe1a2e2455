//! Writing a connector's status: server-side apply to the status subresource, skipped
//! when nothing changed.

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::api::{ConfluenceConnector, ConfluenceConnectorStatus, FIELD_MANAGER, GROUP, VERSION};

use super::Error;

/// Applies `status` unless it equals `live`; returns the object as stored when it wrote.
///
/// `apiVersion` and `kind` are required by server-side apply (400 otherwise) and
/// `force` takes over fields another manager touched (409 loops otherwise). Fields
/// left out are dropped, which is how `Reconciling` and `Stalled` disappear.
pub async fn apply_status(
    api: &Api<ConfluenceConnector>,
    name: &str,
    live: Option<&ConfluenceConnectorStatus>,
    status: &ConfluenceConnectorStatus,
) -> Result<Option<ConfluenceConnector>, Error> {
    apply_any_status(api, name, live, status)
        .await
        .map_err(Error::Kube)
}

/// [`apply_status`] for any kind of this API group.
pub async fn apply_any_status<K, S>(
    api: &Api<K>,
    name: &str,
    live: Option<&S>,
    status: &S,
) -> Result<Option<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if live == Some(status) {
        return Ok(None);
    }
    let patch = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let stored = api
        .patch_status(name, &params, &Patch::Apply(&patch))
        .await?;
    Ok(Some(stored))
}

/// Cuts every time in `status` to whole seconds: the API server stores times to the
/// second, so anything finer would make the status written differ from the status read
/// back, and every reconcile would write again.
pub fn whole_seconds(status: &mut ConfluenceConnectorStatus) {
    use super::schedule::truncate;
    for time in [
        &mut status.last_sync_start_time,
        &mut status.last_sync_time,
        &mut status.last_successful_sync_time,
        &mut status.next_sync_time,
    ]
    .into_iter()
    .flatten()
    {
        time.0 = truncate(time.0);
    }
    for condition in &mut status.conditions {
        condition.last_transition_time.0 = truncate(condition.last_transition_time.0);
    }
}

/// Puts `message` where a person watching a running sync looks: on `Reconciling`
/// when present (first sync, retry), else on a `Ready=True` condition (a routine sync
/// of a healthy connector). Only messages change, never statuses, so no transition is
/// recorded and GitOps health stays as it is.
pub fn show_progress(status: &mut ConfluenceConnectorStatus, message: &str) {
    use crate::api::reasons::{READY, RECONCILING};
    let target = if status.conditions.iter().any(|c| c.type_ == RECONCILING) {
        RECONCILING
    } else {
        READY
    };
    if let Some(condition) = status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == target && (target == RECONCILING || c.status == "True"))
    {
        condition.message = message.to_string();
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn cond(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: "old".into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn progress_goes_to_reconciling_else_to_a_true_ready() {
        let mut s = ConfluenceConnectorStatus {
            conditions: vec![cond("Ready", "Unknown"), cond("Reconciling", "True")],
            ..Default::default()
        };
        show_progress(&mut s, "walking");
        assert_eq!(s.conditions[0].message, "old");
        assert_eq!(s.conditions[1].message, "walking");

        let mut s = ConfluenceConnectorStatus {
            conditions: vec![cond("Ready", "True")],
            ..Default::default()
        };
        show_progress(&mut s, "walking");
        assert_eq!(s.conditions[0].message, "walking");

        let mut s = ConfluenceConnectorStatus {
            conditions: vec![cond("Ready", "False")],
            ..Default::default()
        };
        show_progress(&mut s, "walking");
        assert_eq!(s.conditions[0].message, "old");
    }
}
