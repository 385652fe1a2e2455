//! Normalising and vetting `spec.site`.
//!
//! A connector's author chooses the host the operator will send an administrator's token
//! to, from inside the cluster. Anything but `https://<name>.atlassian.net` is therefore
//! refused (server-side request forgery), unless the operator's own flags allow a host
//! for tests or private deployments.

use std::fmt;

/// The only public domain Confluence Cloud sites live under.
const ATLASSIAN_DOMAIN: &str = "atlassian.net";

/// Which sites beyond `https://<name>.atlassian.net` the operator accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SitePolicy {
    /// Exact hosts (`127.0.0.1`, `wiki.example.internal`) or domain suffixes starting with
    /// a dot (`.wiki.example.internal`). Such sites may carry a port.
    pub allowed_suffixes: Vec<String>,
    /// Permit `http://` for sites allowed through `allowed_suffixes`.
    pub allow_insecure_http: bool,
}

/// A vetted site origin such as `https://acme.atlassian.net`, without path or slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteOrigin(String);

impl SiteOrigin {
    /// The origin as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The origin as a URL for the HTTP client.
    pub fn url(&self) -> Result<url::Url, InvalidSite> {
        url::Url::parse(&self.0).map_err(|e| InvalidSite::new(&self.0, e.to_string()))
    }
}

impl fmt::Display for SiteOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a site was refused. The message is safe to show in status and Events.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("site {shown:?} is not valid: {reason}")]
pub struct InvalidSite {
    shown: String,
    /// What is wrong, in a few words.
    pub reason: String,
}

impl InvalidSite {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        // Cut long input so a pasted blob cannot bloat status or Events.
        let shown: String = input.chars().take(100).collect();
        Self {
            shown,
            reason: reason.into(),
        }
    }
}

/// Turns `acme`, `acme.atlassian.net`, `https://acme.atlassian.net` or
/// `https://acme.atlassian.net/wiki/` into `https://acme.atlassian.net`, and refuses
/// everything the policy does not allow.
pub fn normalize_site(input: &str, policy: &SitePolicy) -> Result<SiteOrigin, InvalidSite> {
    let err = |reason: &str| InvalidSite::new(input, reason);
    let text = input.trim();
    if text.is_empty() {
        return Err(err("it is empty"));
    }
    if !text.is_ascii() {
        return Err(err(
            "it contains non-ASCII characters; write an internationalised name in its xn-- form",
        ));
    }
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, text),
    };
    if let Some(scheme) = &scheme
        && scheme != "https"
        && scheme != "http"
    {
        return Err(err("only https:// sites are supported"));
    }
    let authority_end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(err("it must not contain user information (`user@host`)"));
    }
    if path.contains(['?', '#']) {
        return Err(err("it must not contain a query or fragment"));
    }
    if !matches!(path, "" | "/" | "/wiki" | "/wiki/") {
        return Err(err("the only path allowed is /wiki"));
    }
    let (host, port) = split_port(authority).map_err(&err)?;
    let host = host.to_ascii_lowercase();
    if host.ends_with('.') {
        return Err(err("the host must not end with a dot"));
    }
    if host.starts_with('[') || host.contains(':') {
        if !policy_allows(&host, policy) {
            return Err(err(
                "IP addresses are not allowed; use https://<name>.atlassian.net",
            ));
        }
    } else {
        validate_host_name(&host).map_err(|reason| err(&reason))?;
    }

    // A bare name such as `acme` means `acme.atlassian.net`.
    let host = if scheme.is_none() && port.is_none() && !host.contains('.') && host != "localhost" {
        format!("{host}.{ATLASSIAN_DOMAIN}")
    } else {
        host
    };

    if policy_allows(&host, policy) {
        let scheme = scheme.unwrap_or_else(|| "https".to_string());
        if scheme == "http" && !policy.allow_insecure_http {
            return Err(err("http:// needs the operator flag --allow-insecure-http"));
        }
        return Ok(SiteOrigin(match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        }));
    }

    if scheme.as_deref() == Some("http") {
        return Err(err("only https:// is allowed for Confluence Cloud sites"));
    }
    if port.is_some() {
        return Err(err("a port is not allowed for Confluence Cloud sites"));
    }
    if is_ip_literal(&host) {
        return Err(err(
            "IP addresses are not allowed; use https://<name>.atlassian.net",
        ));
    }
    if host == ATLASSIAN_DOMAIN {
        return Err(err(
            "a Confluence Cloud site is <name>.atlassian.net with a single name",
        ));
    }
    match host
        .strip_suffix(ATLASSIAN_DOMAIN)
        .and_then(|name| name.strip_suffix('.'))
    {
        Some(name) if !name.is_empty() && !name.contains('.') => {
            Ok(SiteOrigin(format!("https://{host}")))
        }
        Some(_) => Err(err(
            "a Confluence Cloud site is <name>.atlassian.net with a single name",
        )),
        None => Err(err(
            "only <name>.atlassian.net sites are allowed (the operator's --allowed-site-suffix adds others)",
        )),
    }
}

fn split_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    // An IPv6 literal keeps its colons inside brackets.
    let split_at = if authority.starts_with('[') {
        authority
            .find(']')
            .map(|end| end + 1)
            .ok_or("the IPv6 address is not closed")?
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(split_at);
    if host.is_empty() {
        return Err("it has no host");
    }
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok((host, None)),
        None => Err("the host is malformed"),
        Some(digits) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err("the port is not a number");
            }
            let port: u16 = digits.parse().map_err(|_| "the port is out of range")?;
            if port == 0 {
                return Err("the port is out of range");
            }
            Ok((host, Some(port)))
        }
    }
}

fn validate_host_name(host: &str) -> Result<(), String> {
    if host.len() > 253 {
        return Err("the host name is too long".into());
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("the host name has an empty label".into());
        }
        if label.len() > 63 {
            return Err("a host name label is longer than 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("the host name may contain only letters, digits, dots and hyphens".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a host name label must not start or end with a hyphen".into());
        }
    }
    Ok(())
}

fn is_ip_literal(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || host.starts_with('[')
        // Shorthand forms such as `127.1` or a bare decimal `2130706433` reach loopback
        // through some resolvers; treat all-numeric hosts as addresses.
        || host.split('.').all(|label| label.bytes().all(|b| b.is_ascii_digit()))
}

fn policy_allows(host: &str, policy: &SitePolicy) -> bool {
    policy.allowed_suffixes.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        match entry.strip_prefix('.') {
            Some(_) => host.len() > entry.len() && host.ends_with(&entry),
            None => !entry.is_empty() && host == entry,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(input: &str) -> Result<String, InvalidSite> {
        normalize_site(input, &SitePolicy::default()).map(|o| o.0)
    }

    fn dev(input: &str) -> Result<String, InvalidSite> {
        let policy = SitePolicy {
            allowed_suffixes: vec!["127.0.0.1".into(), ".wiki.example.internal".into()],
            allow_insecure_http: true,
        };
        normalize_site(input, &policy).map(|o| o.0)
    }

    #[test]
    fn accepted_forms_normalise_to_the_origin() {
        for input in [
            "acme",
            "acme.atlassian.net",
            "https://acme.atlassian.net",
            "https://acme.atlassian.net/",
            "https://acme.atlassian.net/wiki",
            "https://acme.atlassian.net/wiki/",
            "ACME.Atlassian.NET",
            "HTTPS://acme.atlassian.net",
            "  acme.atlassian.net\n",
            "acme.atlassian.net/wiki",
        ] {
            assert_eq!(
                strict(input).as_deref(),
                Ok("https://acme.atlassian.net"),
                "{input:?}"
            );
        }
        assert_eq!(
            strict("my-team2").as_deref(),
            Ok("https://my-team2.atlassian.net")
        );
        assert_eq!(
            strict("xn--bcher-kva.atlassian.net").as_deref(),
            Ok("https://xn--bcher-kva.atlassian.net")
        );
    }

    #[test]
    fn everything_else_is_refused_by_default() {
        let cases = [
            ("", "empty"),
            ("http://acme.atlassian.net", "https"),
            ("ftp://acme.atlassian.net", "https"),
            ("https://acme.atlassian.net:8443", "port"),
            ("acme.atlassian.net:443", "port"),
            ("https://acme.atlassian.net@evil.com", "user information"),
            ("https://user:pass@acme.atlassian.net", "user information"),
            ("acme.atlassian.net.evil.com", "atlassian.net"),
            ("evilatlassian.net", "atlassian.net"),
            ("atlassian.net", "single name"),
            ("a.b.atlassian.net", "single name"),
            ("https://acme.atlassian.net/wiki/rest/api", "path"),
            ("https://acme.atlassian.net/confluence", "path"),
            ("https://acme.atlassian.net?x=1", "query"),
            ("https://acme.atlassian.net/wiki#frag", "query"),
            ("acme.atlassian.net.", "dot"),
            ("127.0.0.1", "IP"),
            ("https://169.254.169.254", "IP"),
            ("https://[::1]", "IP"),
            ("http://[::ffff:127.0.0.1]:80", "IP"),
            ("https://2130706433", "IP"),
            ("https://127.1", "IP"),
            ("localhost", "atlassian.net"),
            ("https://localhost:8080", "port"),
            ("bücher.atlassian.net", "non-ASCII"),
            ("acme_corp.atlassian.net", "letters, digits"),
            ("-acme.atlassian.net", "hyphen"),
            ("https://acme.atlassian.net\\@evil.com", "path"),
            ("https://", "no host"),
            ("https://acme.atlassian.net:99999", "range"),
        ];
        for (input, why) in cases {
            match strict(input) {
                Ok(origin) => panic!("{input:?} was accepted as {origin}"),
                Err(e) => assert!(
                    e.reason.contains(why),
                    "{input:?}: {:?} lacks {why:?}",
                    e.reason
                ),
            }
        }
    }

    #[test]
    fn operator_flags_allow_exact_hosts_and_suffixes_with_ports() {
        assert_eq!(
            dev("http://127.0.0.1:8080").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        assert_eq!(
            dev("http://127.0.0.1:8080/wiki/").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        assert_eq!(
            dev("127.0.0.1:8080").as_deref(),
            Ok("https://127.0.0.1:8080")
        );
        assert_eq!(
            dev("https://team.wiki.example.internal:8443").as_deref(),
            Ok("https://team.wiki.example.internal:8443")
        );
        // Still strict for everything the flags do not name.
        assert!(dev("http://127.0.0.2:8080").is_err());
        assert!(
            dev("wiki.example.internal").is_err(),
            "a suffix needs a name before it"
        );
        assert!(dev("http://evil.com:80").is_err());
        assert!(dev("https://acme.atlassian.net:8443").is_err());
        assert_eq!(dev("acme").as_deref(), Ok("https://acme.atlassian.net"));
    }

    #[test]
    fn http_needs_its_own_flag() {
        let policy = SitePolicy {
            allowed_suffixes: vec!["127.0.0.1".into()],
            allow_insecure_http: false,
        };
        let err = normalize_site("http://127.0.0.1:8080", &policy).unwrap_err();
        assert!(err.reason.contains("--allow-insecure-http"));
        assert!(normalize_site("https://127.0.0.1:8080", &policy).is_ok());
    }

    #[test]
    fn message_names_the_site_and_cuts_long_input() {
        let long = "x".repeat(500);
        let message = strict(&long).unwrap_err().to_string();
        assert!(message.len() < 300, "{message}");
        assert!(
            strict("evil.com")
                .unwrap_err()
                .to_string()
                .contains("\"evil.com\"")
        );
    }
}
