//! Reconciling one `ConfluenceAccessGrant`: resolve, add, wait for expiry, remove.
//!
//! Every membership change is written to the status as `pendingChange` before
//! Confluence is called, and the membership is read back before an add is repeated: a
//! crash between Confluence's answer and the status write then never leads to a second
//! add, and never to a forgotten removal.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::api::{
    ConfluenceAccessGrant, ConfluenceAccessGrantStatus, ConfluenceConnector, GrantPhase,
    MembershipChange, REVOKE_FINALIZER, reasons,
};
use crate::confluence::{ConfluenceClient, ConfluenceError, ErrorClass};

use super::super::Error;
use super::super::error::back_off;
use super::super::schedule::{add, truncate};
use super::super::status_patch::apply_any_status;
use super::access::{client_of, connector_of, ready};
use super::context::GrantContext;
use super::resolve;
use super::status::{
    DURATION_TOO_LONG, EXPIRED, GRANTED, GRANTING, GROUP_NOT_FOUND, PREEXISTING_MEMBERSHIP,
    REVOKED, REVOKING, Verdict, next_status,
};

/// The kind label of reconcile metrics.
const KIND: &str = "ConfluenceAccessGrant";
/// How often a grant waiting for its connector looks again (connector changes also
/// wake it at once).
const WAIT_FOR_CONNECTOR: Duration = Duration::from_secs(60);
/// How soon an add that is not yet visible is checked again.
const VERIFY_AGAIN: Duration = Duration::from_secs(2);
/// Longest Event note and status message kept from a reason text.
const MAX_REASON_IN_NOTE: usize = 300;

/// Entry point for the controller: the finalizer around [`apply`] and [`cleanup`],
/// with metrics.
pub async fn reconcile(
    obj: Arc<ConfluenceAccessGrant>,
    ctx: Arc<GrantContext>,
) -> Result<Action, Error> {
    let timer = Instant::now();
    let namespace = obj.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = obj.name_any();
    let span = info_span!("reconcile", kind = KIND, namespace = %namespace, name = %name);
    let api: Api<ConfluenceAccessGrant> = Api::namespaced(ctx.base.client.clone(), &namespace);
    let key = ObjectRef::from_obj(&*obj);
    let result = finalizer(&api, REVOKE_FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(grant) => apply(grant, &ctx, &api).await,
            Finalizer::Cleanup(grant) => cleanup(grant, &ctx, &api).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let outcome = if result.is_ok() { "success" } else { "error" };
    ctx.base
        .metrics
        .reconciled(KIND, outcome, timer.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.reset_failures(&key);
    }
    result
}

/// Back-off per grant (5 s·2ⁿ, at most 5 min, with jitter), or Confluence's
/// `Retry-After` when it gave one.
pub fn error_policy(
    obj: Arc<ConfluenceAccessGrant>,
    error: &Error,
    ctx: Arc<GrantContext>,
) -> Action {
    let failures = ctx.record_failure(&ObjectRef::from_obj(&*obj));
    back_off(&ctx.base.metrics, KIND, &*obj, error, failures)
}

/// The grant being reconciled and its status as last written.
struct Current<'a> {
    obj: Arc<ConfluenceAccessGrant>,
    api: &'a Api<ConfluenceAccessGrant>,
    namespace: String,
    name: String,
    generation: i64,
    status: ConfluenceAccessGrantStatus,
}

impl<'a> Current<'a> {
    fn new(
        obj: Arc<ConfluenceAccessGrant>,
        api: &'a Api<ConfluenceAccessGrant>,
    ) -> Result<Self, Error> {
        Ok(Self {
            namespace: obj.namespace().ok_or(Error::MissingMetadata("namespace"))?,
            name: obj.name_any(),
            generation: obj.metadata.generation.unwrap_or(0),
            status: obj.status.clone().unwrap_or_default(),
            obj,
            api,
        })
    }

    /// Writes `status` with `verdict`'s phase and conditions (skipped when unchanged).
    async fn write(
        &mut self,
        status: ConfluenceAccessGrantStatus,
        verdict: &Verdict,
    ) -> Result<(), Error> {
        let next = next_status(&status, verdict, self.generation, Timestamp::now());
        apply_any_status(self.api, &self.name, Some(&self.status), &next)
            .await
            .map_err(Error::Kube)?;
        self.status = next;
        Ok(())
    }

    /// Reports `verdict` with the status otherwise unchanged.
    async fn report(&mut self, verdict: Verdict, then: Action) -> Result<Action, Error> {
        let status = self.status.clone();
        self.write(status, &verdict).await?;
        Ok(then)
    }

    /// The user as the spec names them, and the group as resolved (or as named).
    fn who_and_where(&self) -> (String, String) {
        let spec = &self.obj.spec;
        let group = self
            .status
            .group_name
            .clone()
            .unwrap_or_else(|| spec.group_label().to_string());
        (spec.user_label().to_string(), group)
    }

    async fn event(&self, ctx: &GrantContext, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Grant".into(),
            secondary: None,
        };
        if let Err(e) = ctx
            .base
            .recorder
            .publish(&event, &self.obj.object_ref(&()))
            .await
        {
            warn!(error = %e, reason, "cannot publish an Event");
        }
    }
}

async fn apply(
    obj: Arc<ConfluenceAccessGrant>,
    ctx: &GrantContext,
    api: &Api<ConfluenceAccessGrant>,
) -> Result<Action, Error> {
    let mut cur = Current::new(obj, api)?;
    match cur.status.phase {
        Some(phase) if phase.is_final() => Ok(Action::await_change()),
        Some(GrantPhase::Active) => {
            let Some(expires) = cur.status.expires_at.clone() else {
                // An Active grant always has an expiry; without one, end it now rather
                // than keep access forever.
                return expire(ctx, &mut cur).await;
            };
            match until(expires.0) {
                Some(left) => Ok(Action::requeue(left)),
                None => expire(ctx, &mut cur).await,
            }
        }
        _ => grant(ctx, &mut cur).await,
    }
}

/// Time from now until `at`, or `None` once it has passed.
fn until(at: Timestamp) -> Option<Duration> {
    let left = at.duration_since(Timestamp::now());
    Duration::try_from(left).ok().filter(|d| !d.is_zero())
}

/// Pending → Active: resolve, check, (intent,) add, verify.
async fn grant(ctx: &GrantContext, cur: &mut Current<'_>) -> Result<Action, Error> {
    let spec = cur.obj.spec.clone();
    let duration = match spec.duration() {
        Ok(d) => d,
        Err(e) => {
            return fail(cur, reasons::INVALID_SPEC, e.to_string()).await;
        }
    };
    if duration > ctx.max_duration {
        let message = format!(
            "spec.duration {} is longer than this operator allows ({}s, --max-grant-duration)",
            spec.duration,
            ctx.max_duration.as_secs()
        );
        return fail(cur, DURATION_TOO_LONG, message).await;
    }
    let adding = cur.status.pending_change == Some(MembershipChange::Add);
    let connector = match connector_of(&ctx.base, &cur.namespace, &cur.obj).await? {
        Ok(c) => c,
        Err((reason, message)) => return wait(cur, reason, message).await,
    };
    // An add under way is finished even if the connector's last sync failed meanwhile.
    if !adding && let Err((reason, message)) = ready(&connector) {
        return wait(cur, reason, message).await;
    }
    let client = match client_of(&ctx.base, &cur.namespace, &connector).await? {
        Ok(c) => c,
        Err((reason, message)) => return wait(cur, reason, message).await,
    };

    let (group_id, account_id) = match (&cur.status.group_id, &cur.status.account_id) {
        (Some(g), Some(a)) => (g.clone(), a.clone()),
        _ => {
            let snapshot = snapshot_of(ctx, &connector);
            let group = match resolve::group(&client, &spec, snapshot.clone()).await? {
                Ok(group) => group,
                Err(verdict) => return settle(cur, verdict).await,
            };
            let account_id = match resolve::user(&client, &spec, snapshot).await? {
                Ok(id) => id,
                Err(verdict) => return settle(cur, verdict).await,
            };
            let mut next = cur.status.clone();
            next.user = Some(spec.user_label().to_string());
            next.account_id = Some(account_id.clone());
            next.group_id = Some(group.id.clone());
            next.group_name = Some(group.name);
            let message = format!("checking whether {} is a member already", spec.user_label());
            cur.write(next, &Verdict::new(GrantPhase::Pending, GRANTING, message))
                .await?;
            (group.id, account_id)
        }
    };

    let member = match client.is_member(&group_id, &account_id).await {
        Ok(member) => member,
        Err(e) => return confluence_failure(cur, e).await,
    };
    if member {
        // With our own add on record, membership means that add landed.
        return activate(ctx, cur, !adding, duration).await;
    }
    if !adding {
        let mut next = cur.status.clone();
        next.pending_change = Some(MembershipChange::Add);
        let (who, group) = cur.who_and_where();
        let message = format!("adding {who} to group {group}");
        cur.write(next, &Verdict::new(GrantPhase::Pending, GRANTING, message))
            .await?;
    }
    if let Err(e) = client.add_group_member(&group_id, &account_id).await {
        return confluence_failure(cur, e).await;
    }
    match client.is_member(&group_id, &account_id).await {
        Ok(true) => activate(ctx, cur, false, duration).await,
        // Membership reads may lag a write; the add stays on record and is checked
        // (not repeated blindly) next time.
        Ok(false) => Ok(Action::requeue(VERIFY_AGAIN)),
        Err(e) => confluence_failure(cur, e).await,
    }
}

/// The membership is in place: record the window, announce it, wait for the expiry.
async fn activate(
    ctx: &GrantContext,
    cur: &mut Current<'_>,
    preexisting: bool,
    duration: Duration,
) -> Result<Action, Error> {
    let now = truncate(Timestamp::now());
    let expires = add(now, duration);
    let mut next = cur.status.clone();
    next.granted_at = Some(Time(now));
    next.expires_at = Some(Time(expires));
    next.preexisting_membership = Some(preexisting);
    next.pending_change = None;
    let (who, group) = cur.who_and_where();
    let reason_text = short(&cur.obj.spec.reason);
    let (reason, message) = if preexisting {
        (
            PREEXISTING_MEMBERSHIP,
            format!(
                "{who} was already a member of group {group}; the grant ends at {expires} and will not remove that membership"
            ),
        )
    } else {
        (
            GRANTED,
            format!("{who} is a member of group {group} until {expires}"),
        )
    };
    cur.write(next, &Verdict::new(GrantPhase::Active, reason, &message))
        .await?;
    info!(
        user = %who,
        group = %group,
        until = %expires,
        reason = %reason_text,
        preexisting,
        "access granted"
    );
    cur.event(
        ctx,
        EventType::Normal,
        reason,
        format!("{message} (reason: {reason_text})"),
    )
    .await;
    ctx.base.metrics.grant_granted();
    Ok(until(expires).map_or_else(|| Action::requeue(Duration::from_secs(1)), Action::requeue))
}

/// Active → Expired.
async fn expire(ctx: &GrantContext, cur: &mut Current<'_>) -> Result<Action, Error> {
    end_membership(ctx, cur).await?;
    let (who, group) = cur.who_and_where();
    let message = if cur.status.preexisting_membership == Some(true) {
        format!("the grant expired; {who} was a member of group {group} before it and stays one")
    } else {
        format!("the grant expired; {who} was removed from group {group}")
    };
    finish(ctx, cur, GrantPhase::Expired, EXPIRED, message, "expired").await?;
    Ok(Action::await_change())
}

/// Deletion: remove a membership this grant added, then let the object go.
async fn cleanup(
    obj: Arc<ConfluenceAccessGrant>,
    ctx: &GrantContext,
    api: &Api<ConfluenceAccessGrant>,
) -> Result<Action, Error> {
    let mut cur = Current::new(obj, api)?;
    let status = &cur.status;
    let holds_membership = match status.phase {
        Some(GrantPhase::Active) => true,
        Some(GrantPhase::Pending) | None => status.pending_change.is_some(),
        Some(_) => false,
    };
    if !holds_membership {
        return Ok(Action::await_change());
    }
    end_membership(ctx, &mut cur).await?;
    let (who, group) = cur.who_and_where();
    let message = if cur.status.preexisting_membership == Some(true) {
        format!(
            "the grant was deleted; {who} was a member of group {group} before it and stays one"
        )
    } else {
        format!("the grant was deleted; {who} was removed from group {group}")
    };
    finish(
        ctx,
        &mut cur,
        GrantPhase::Revoked,
        REVOKED,
        message,
        "deleted",
    )
    .await?;
    Ok(Action::await_change())
}

/// Removes the membership unless it predates the grant. The intent is written first;
/// a failure leaves it on record, so the removal is retried until it succeeds.
async fn end_membership(ctx: &GrantContext, cur: &mut Current<'_>) -> Result<(), Error> {
    if cur.status.preexisting_membership == Some(true) {
        return Ok(());
    }
    let (Some(group_id), Some(account_id)) =
        (cur.status.group_id.clone(), cur.status.account_id.clone())
    else {
        // Never resolved, so never added.
        return Ok(());
    };
    let connector = connector_of(&ctx.base, &cur.namespace, &cur.obj).await?;
    let client = match connector {
        Ok(connector) => client_of(&ctx.base, &cur.namespace, &connector).await?,
        Err(unusable) => Err(unusable),
    };
    let client = match client {
        Ok(client) => client,
        Err((_, message)) => {
            let why = format!(
                "{message}; the membership stays until the operator can remove it (to give up, remove the finalizer {REVOKE_FINALIZER})"
            );
            cur.event(ctx, EventType::Warning, "RevokeBlocked", why.clone())
                .await;
            return Err(Error::RevokeBlocked(why));
        }
    };
    if cur.status.pending_change != Some(MembershipChange::Remove) {
        let mut next = cur.status.clone();
        next.pending_change = Some(MembershipChange::Remove);
        let (who, group) = cur.who_and_where();
        let verdict = Verdict::new(
            GrantPhase::Active,
            REVOKING,
            format!("removing {who} from group {group}"),
        );
        cur.write(next, &verdict).await?;
    }
    remove(&client, &group_id, &account_id).await
}

async fn remove(client: &ConfluenceClient, group_id: &str, account_id: &str) -> Result<(), Error> {
    match client.remove_group_member(group_id, account_id).await {
        Ok(()) => Ok(()),
        // The group or the account is gone, and the membership with it.
        Err(e) if e.class() == ErrorClass::NotFound => Ok(()),
        Err(e) if e.class() == ErrorClass::PermissionDenied => Err(Error::RevokeBlocked(format!(
            "Confluence refused the removal ({e}); the connector's account must be a site administrator"
        ))),
        Err(e) => Err(Error::Confluence(e)),
    }
}

/// Writes a final phase after the membership ended, with Event, log and metrics.
async fn finish(
    ctx: &GrantContext,
    cur: &mut Current<'_>,
    phase: GrantPhase,
    reason: &'static str,
    message: String,
    cause: &str,
) -> Result<(), Error> {
    let mut next = cur.status.clone();
    next.pending_change = None;
    next.ended_at = Some(Time(truncate(Timestamp::now())));
    cur.write(next, &Verdict::new(phase, reason, &message))
        .await?;
    let (who, group) = cur.who_and_where();
    let reason_text = short(&cur.obj.spec.reason);
    info!(user = %who, group = %group, cause, reason = %reason_text, "access ended");
    cur.event(
        ctx,
        EventType::Normal,
        reason,
        format!("{message} (reason: {reason_text})"),
    )
    .await;
    ctx.base.metrics.grant_revoked(cause);
    Ok(())
}

/// Pending with a reason, looked at again later (or when the connector changes).
async fn wait(
    cur: &mut Current<'_>,
    reason: &'static str,
    message: String,
) -> Result<Action, Error> {
    cur.report(
        Verdict::new(GrantPhase::Pending, reason, message),
        Action::requeue(WAIT_FOR_CONNECTOR),
    )
    .await
}

/// Failed: only a new grant (or a fixed connector and a new grant) helps.
async fn fail(
    cur: &mut Current<'_>,
    reason: &'static str,
    message: String,
) -> Result<Action, Error> {
    let mut next = cur.status.clone();
    next.pending_change = None;
    cur.write(next, &Verdict::new(GrantPhase::Failed, reason, message))
        .await?;
    Ok(Action::await_change())
}

/// Reports a resolution verdict: Failed ends the grant, Pending waits.
async fn settle(cur: &mut Current<'_>, verdict: Verdict) -> Result<Action, Error> {
    if verdict.phase == GrantPhase::Failed {
        fail(cur, verdict.reason, verdict.message).await
    } else {
        wait(cur, verdict.reason, verdict.message).await
    }
}

/// A Confluence error while granting: what the user must fix fails the grant, the rest
/// is retried with back-off (the add on record is re-checked, never repeated blindly).
async fn confluence_failure(
    cur: &mut Current<'_>,
    error: ConfluenceError,
) -> Result<Action, Error> {
    match error.class() {
        ErrorClass::PermissionDenied => {
            let message = format!(
                "the connector's account may not change group membership ({error}); it must be a Confluence site administrator"
            );
            fail(cur, reasons::PERMISSION_DENIED, message).await
        }
        ErrorClass::NotFound => {
            let message = format!("Confluence no longer knows the group or the user ({error})");
            fail(cur, GROUP_NOT_FOUND, message).await
        }
        ErrorClass::Authentication => {
            let message = format!("Confluence rejected the connector's credentials ({error})");
            wait(cur, reasons::AUTHENTICATION_FAILED, message).await
        }
        _ => Err(Error::Confluence(error)),
    }
}

/// The connector's latest snapshot on this operator's disk, if it has one.
fn snapshot_of(ctx: &GrantContext, connector: &ConfluenceConnector) -> Option<std::path::PathBuf> {
    let file = &connector.status.as_ref()?.snapshot.as_ref()?.file;
    let path = ctx.base.settings.data_dir.join(file);
    path.is_file().then_some(path)
}

fn short(text: &str) -> String {
    if text.chars().count() <= MAX_REASON_IN_NOTE {
        return text.to_string();
    }
    let cut: String = text.chars().take(MAX_REASON_IN_NOTE).collect();
    format!("{cut}…")
}
