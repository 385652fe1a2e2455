//! Building the Confluence client for a vetted site and an administrator's
//! credentials: the one place `sync` and `run` share.

use std::sync::Arc;

use secrecy::SecretString;

use crate::confluence::{ClientConfig, ConfluenceClient, ConfluenceError, RequestObserver};
use crate::site::{InvalidSite, SiteOrigin};

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The origin is not a usable URL.
    #[error(transparent)]
    InvalidSite(#[from] InvalidSite),
    /// The client refused its configuration.
    #[error(transparent)]
    Client(#[from] ConfluenceError),
}

/// A client for `origin` with `max_in_flight` requests at once; `observer` sees every
/// request (metrics).
pub fn client_for(
    origin: &SiteOrigin,
    username: &str,
    api_token: SecretString,
    max_in_flight: usize,
    observer: Option<Arc<dyn RequestObserver>>,
) -> Result<ConfluenceClient, ConnectError> {
    client_tuned(origin, username, api_token, |config| {
        config.max_in_flight = max_in_flight.max(1);
        config.observer = observer;
    })
}

/// A client for `origin` whose configuration `tune` adjusts from the defaults.
pub fn client_tuned(
    origin: &SiteOrigin,
    username: &str,
    api_token: SecretString,
    tune: impl FnOnce(&mut ClientConfig),
) -> Result<ConfluenceClient, ConnectError> {
    let mut config = ClientConfig::new(origin.url()?, username, api_token);
    tune(&mut config);
    Ok(ConfluenceClient::new(config)?)
}
