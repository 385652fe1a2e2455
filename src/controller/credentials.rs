//! Reading a connector's credentials out of its Secret. Pure: the caller fetches the
//! Secret; this decides what it means.

use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::api::{
    SecretRef,
    connector::{BASIC_AUTH_PASSWORD_KEY, DEFAULT_API_TOKEN_KEY},
    reasons,
};

/// The Secret type whose keys are `username` and `password`.
const BASIC_AUTH_TYPE: &str = "kubernetes.io/basic-auth";

/// An administrator's email and API token.
#[derive(Clone)]
pub struct Credentials {
    /// The Atlassian account email.
    pub username: String,
    /// The API token; only the HTTP client's Basic auth reads it.
    pub api_token: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("api_token", &"[REDACTED]")
            .finish()
    }
}

impl Credentials {
    /// A stable fingerprint of these credentials, so a rotation can be noticed without
    /// keeping the credentials. A truncated SHA-256 of a long random token reveals nothing
    /// usable about it.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"confluence-operator/credentials/v1\0");
        hash.update(self.username.as_bytes());
        hash.update(b"\0");
        hash.update(self.api_token.expose_secret().as_bytes());
        let digest = hash.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why a Secret gave no usable credentials. Messages name keys, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    /// The Secret does not exist (in the connector's namespace).
    #[error("Secret {name:?} not found in the connector's namespace")]
    SecretNotFound {
        /// Secret name.
        name: String,
    },
    /// A referenced key is absent.
    #[error("Secret {secret:?} has no key {key:?}")]
    KeyMissing {
        /// Secret name.
        secret: String,
        /// The missing key.
        key: String,
    },
    /// A referenced key holds nothing but whitespace.
    #[error("key {key:?} of Secret {secret:?} is empty")]
    EmptyValue {
        /// Secret name.
        secret: String,
        /// The empty key.
        key: String,
    },
    /// A referenced key is not UTF-8 text.
    #[error("key {key:?} of Secret {secret:?} is not UTF-8 text")]
    NotUtf8 {
        /// Secret name.
        secret: String,
        /// The offending key.
        key: String,
    },
}

impl CredentialsError {
    /// The condition and Event reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound { .. } => reasons::SECRET_NOT_FOUND,
            Self::KeyMissing { .. } | Self::EmptyValue { .. } | Self::NotUtf8 { .. } => {
                reasons::SECRET_KEY_MISSING
            }
        }
    }
}

/// The key the API token is read from: `apiTokenKey`, else `password` for a basic-auth
/// Secret, else `apiToken`.
pub fn api_token_key<'a>(secret_ref: &'a SecretRef, secret: &Secret) -> &'a str {
    match secret_ref.api_token_key.as_deref() {
        Some(key) => key,
        None if secret.type_.as_deref() == Some(BASIC_AUTH_TYPE) => BASIC_AUTH_PASSWORD_KEY,
        None => DEFAULT_API_TOKEN_KEY,
    }
}

/// Reads the referenced keys of `secret` (`None` when it does not exist).
pub fn credentials_from_secret(
    secret_ref: &SecretRef,
    secret: Option<&Secret>,
) -> Result<Credentials, CredentialsError> {
    let secret = secret.ok_or_else(|| CredentialsError::SecretNotFound {
        name: secret_ref.name.clone(),
    })?;
    let username = read_key(secret_ref, secret, secret_ref.username_key())?;
    let token_key = api_token_key(secret_ref, secret);
    let api_token = read_key(secret_ref, secret, token_key)?;
    Ok(Credentials {
        username,
        api_token: SecretString::from(api_token),
    })
}

fn read_key(
    secret_ref: &SecretRef,
    secret: &Secret,
    key: &str,
) -> Result<String, CredentialsError> {
    let secret_name = || secret_ref.name.clone();
    // `stringData` is folded into `data` by the API server; it is read too so objects built
    // in code (and tests) behave the same.
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|data| data.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| CredentialsError::KeyMissing {
            secret: secret_name(),
            key: key.into(),
        })?;
    let text = String::from_utf8(bytes).map_err(|_| CredentialsError::NotUtf8 {
        secret: secret_name(),
        key: key.into(),
    })?;
    // Values written with `echo` carry a trailing newline that would break Basic auth.
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(CredentialsError::EmptyValue {
            secret: secret_name(),
            key: key.into(),
        });
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(type_: Option<&str>, data: &[(&str, &[u8])]) -> Secret {
        Secret {
            type_: type_.map(str::to_string),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    fn reference(username_key: Option<&str>, api_token_key: Option<&str>) -> SecretRef {
        SecretRef {
            name: "confluence-credentials".into(),
            username_key: username_key.map(str::to_string),
            api_token_key: api_token_key.map(str::to_string),
        }
    }

    #[test]
    fn default_keys() {
        let s = secret(
            None,
            &[
                ("username", b"admin@example.com"),
                ("apiToken", b"tok-123\n"),
            ],
        );
        let creds = credentials_from_secret(&reference(None, None), Some(&s)).unwrap();
        assert_eq!(creds.username, "admin@example.com");
        assert_eq!(creds.api_token.expose_secret(), "tok-123");
    }

    #[test]
    fn custom_keys() {
        let s = secret(None, &[("email", b"a@b.c"), ("token", b"t")]);
        let creds =
            credentials_from_secret(&reference(Some("email"), Some("token")), Some(&s)).unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.api_token.expose_secret()),
            ("a@b.c", "t")
        );
    }

    #[test]
    fn basic_auth_secret_uses_password() {
        let s = secret(
            Some("kubernetes.io/basic-auth"),
            &[("username", b"a@b.c"), ("password", b"pw")],
        );
        let creds = credentials_from_secret(&reference(None, None), Some(&s)).unwrap();
        assert_eq!(creds.api_token.expose_secret(), "pw");
        // An explicit key still wins on a basic-auth Secret.
        let s = secret(
            Some("kubernetes.io/basic-auth"),
            &[("username", b"a"), ("password", b"pw"), ("tok", b"x")],
        );
        let creds = credentials_from_secret(&reference(None, Some("tok")), Some(&s)).unwrap();
        assert_eq!(creds.api_token.expose_secret(), "x");
    }

    #[test]
    fn string_data_is_read() {
        let s = Secret {
            string_data: Some(BTreeMap::from([
                ("username".to_string(), "a@b.c".to_string()),
                ("apiToken".to_string(), "t".to_string()),
            ])),
            ..Secret::default()
        };
        assert!(credentials_from_secret(&reference(None, None), Some(&s)).is_ok());
    }

    #[test]
    fn typed_errors_with_reasons() {
        let r = reference(None, None);
        let missing = credentials_from_secret(&r, None).unwrap_err();
        assert_eq!(
            missing,
            CredentialsError::SecretNotFound {
                name: "confluence-credentials".into()
            }
        );
        assert_eq!(missing.reason(), "SecretNotFound");

        let s = secret(None, &[("username", b"a@b.c")]);
        let err = credentials_from_secret(&r, Some(&s)).unwrap_err();
        assert_eq!(
            err,
            CredentialsError::KeyMissing {
                secret: "confluence-credentials".into(),
                key: "apiToken".into()
            }
        );
        assert_eq!(err.reason(), "SecretKeyMissing");

        let s = secret(None, &[("username", b"a@b.c"), ("apiToken", b"  \n")]);
        assert!(matches!(
            credentials_from_secret(&r, Some(&s)),
            Err(CredentialsError::EmptyValue { .. })
        ));

        let s = secret(None, &[("username", &[0xff, 0xfe]), ("apiToken", b"t")]);
        let err = credentials_from_secret(&r, Some(&s)).unwrap_err();
        assert!(matches!(err, CredentialsError::NotUtf8 { ref key, .. } if key == "username"));
        assert_eq!(err.reason(), "SecretKeyMissing");

        let s = Secret::default();
        assert!(matches!(
            credentials_from_secret(&r, Some(&s)),
            Err(CredentialsError::KeyMissing { .. })
        ));
    }

    #[test]
    fn token_never_printed() {
        let s = secret(
            None,
            &[("username", b"a@b.c"), ("apiToken", b"super-secret-token")],
        );
        let creds = credentials_from_secret(&reference(None, None), Some(&s)).unwrap();
        let shown = format!("{creds:?} {:?}", creds.api_token);
        assert!(!shown.contains("super-secret-token"), "{shown}");
        assert!(!creds.fingerprint().contains("super-secret-token"));
        // Error texts name keys only.
        let s = secret(None, &[("username", b"super-secret-token")]);
        let err = credentials_from_secret(&reference(None, None), Some(&s)).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("super-secret-token"));
    }

    #[test]
    fn fingerprint_changes_with_rotation_only() {
        let a = secret(None, &[("username", b"a@b.c"), ("apiToken", b"one")]);
        let b = secret(None, &[("username", b"a@b.c"), ("apiToken", b"two")]);
        let r = reference(None, None);
        let fa = credentials_from_secret(&r, Some(&a)).unwrap().fingerprint();
        assert_eq!(
            fa,
            credentials_from_secret(&r, Some(&a)).unwrap().fingerprint()
        );
        assert_ne!(
            fa,
            credentials_from_secret(&r, Some(&b)).unwrap().fingerprint()
        );
        assert_eq!(fa.len(), 16);
    }
}
