//! The connector side of a grant: finding the connector, and a Confluence client with
//! its site and administrator credentials.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::api::{ConfluenceAccessGrant, ConfluenceConnector, reasons};
use crate::confluence::ConfluenceClient;
use crate::site::normalize_site;

use super::super::Error;
use super::super::context::Context;
use super::super::credentials::credentials_from_secret;
use super::super::sync_task::ApiMetrics;
use super::status::{CONNECTOR_NOT_FOUND, CONNECTOR_NOT_READY};

/// Requests in flight for one grant: it makes a handful of calls, one after another.
const REQUESTS_PER_GRANT: usize = 2;

/// Why a connector cannot serve a grant right now: a Ready reason and a message.
pub type Unusable = (&'static str, String);

/// The grant's connector, or why there is none.
pub async fn connector_of(
    ctx: &Context,
    namespace: &str,
    grant: &ConfluenceAccessGrant,
) -> Result<Result<ConfluenceConnector, Unusable>, Error> {
    let name = &grant.spec.connector_ref.name;
    let api: Api<ConfluenceConnector> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await.map_err(Error::Kube)? {
        Some(connector) => Ok(Ok(connector)),
        None => Ok(Err((
            CONNECTOR_NOT_FOUND,
            format!("ConfluenceConnector {name} does not exist in this namespace"),
        ))),
    }
}

/// `Ok(())` when the connector's Ready condition is True, else why not.
pub fn ready(connector: &ConfluenceConnector) -> Result<(), Unusable> {
    let ready = connector
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == reasons::READY));
    match ready {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err((
            CONNECTOR_NOT_READY,
            format!(
                "waiting for ConfluenceConnector {} to be Ready (now {}: {})",
                connector.metadata.name.as_deref().unwrap_or_default(),
                c.reason,
                c.message
            ),
        )),
        None => Err((
            CONNECTOR_NOT_READY,
            format!(
                "waiting for ConfluenceConnector {} to be Ready (not reported yet)",
                connector.metadata.name.as_deref().unwrap_or_default()
            ),
        )),
    }
}

/// A client for the connector's site with the credentials of its Secret (read with one
/// GET, never logged), or why none can be built.
pub async fn client_of(
    ctx: &Context,
    namespace: &str,
    connector: &ConfluenceConnector,
) -> Result<Result<ConfluenceClient, Unusable>, Error> {
    let origin = match normalize_site(&connector.spec.site, &ctx.settings.site_policy) {
        Ok(origin) => origin,
        Err(e) => return Ok(Err((reasons::INVALID_SITE, e.to_string()))),
    };
    let secret_ref = &connector.spec.credentials.secret_ref;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await
        .map_err(Error::Kube)?;
    let credentials = match credentials_from_secret(secret_ref, secret.as_ref()) {
        Ok(credentials) => credentials,
        Err(e) => return Ok(Err((e.reason(), e.to_string()))),
    };
    let observer = Arc::new(ApiMetrics(ctx.metrics.clone()));
    match ctx
        .settings
        .confluence_client(&origin, &credentials, REQUESTS_PER_GRANT, Some(observer))
    {
        Ok(client) => Ok(Ok(client)),
        Err(e) => Ok(Err((reasons::INVALID_SITE, e.to_string()))),
    }
}
