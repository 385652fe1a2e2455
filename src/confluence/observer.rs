//! A hook through which the caller sees every request the client makes, e.g. to feed
//! metrics. Only route templates, status codes and durations pass through it: never a
//! URL, an id or a credential.

use std::time::Duration;

/// Receives one call per HTTP attempt and per retry decision.
pub trait RequestObserver: Send + Sync {
    /// One attempt ended: `status` is the HTTP status, `None` when the transport failed
    /// (connection, timeout, broken or oversized body).
    fn request(&self, route: &'static str, status: Option<u16>, elapsed: Duration);
    /// The client decided to repeat a request; `reason` is `rate_limited`, `transient`
    /// or `malformed_response`.
    fn retry(&self, reason: &'static str);
}
