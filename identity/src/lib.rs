//! Who a client of the MQTT broker is, and what it may do there.
//!
//! Every client logs in with a credential: a device with its own id as the username, a
//! platform service (ingest) with a name under [`SERVICE_PREFIX`]. Secrets are random tokens
//! issued by cleanfleet and stored only as hashes, in the format of Mosquitto's password file
//! (PBKDF2-SHA512, `$7$`), so that the same records serve the embedded broker and a
//! Mosquitto at scale ([`mosquitto_password_line`]).
//!
//! **A device publishes only under its own kind and id and subscribes to nothing; only
//! ingest reads the data topics, and no device can take a service's client id**
//! ([`Principal`]).

mod secret;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use cleanfleet_model::{is_valid_device_id, DeviceKind, Stream, TOPIC_PREFIX};
use serde::{Deserialize, Serialize};

pub use secret::{hash_secret, new_secret, verify_secret, SecretFingerprint, HASH_ITERATIONS};

/// Usernames (and client ids) of platform services start with this; no device id may.
pub const SERVICE_PREFIX: &str = "cleanfleet-";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{0:?} is not a device id (1 to 64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)"
    )]
    InvalidDeviceId(String),
    #[error("{0:?} starts with {SERVICE_PREFIX:?}, which is kept for cleanfleet's own services")]
    ReservedName(String),
    #[error(
        "{0:?} is not a service name: it must start with {SERVICE_PREFIX:?} and be a valid id"
    )]
    InvalidServiceName(String),
    #[error("unknown credential role {0:?} (a device kind, or \"ingest\")")]
    UnknownRole(String),
    #[error("line {0} of the secrets file is not `username:secret`")]
    SecretsLine(usize),
}

/// What a credential is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A device of this kind, publishing its own data.
    Device(DeviceKind),
    /// The ingest service: reads every data topic, publishes nothing.
    Ingest,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device(kind) => kind.as_str(),
            Role::Ingest => "ingest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, IdentityError> {
        match s {
            "ingest" => Ok(Role::Ingest),
            _ => s
                .parse()
                .map(Role::Device)
                .map_err(|()| IdentityError::UnknownRole(s.to_owned())),
        }
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks that `username` may hold a credential of `role`.
pub fn check_username(username: &str, role: Role) -> Result<(), IdentityError> {
    match role {
        Role::Device(_) if !is_valid_device_id(username) => {
            Err(IdentityError::InvalidDeviceId(username.to_owned()))
        }
        Role::Device(_) if username.starts_with(SERVICE_PREFIX) => {
            Err(IdentityError::ReservedName(username.to_owned()))
        }
        Role::Ingest
            if !(username.starts_with(SERVICE_PREFIX)
                && username.len() > SERVICE_PREFIX.len()
                && is_valid_device_id(username)) =>
        {
            Err(IdentityError::InvalidServiceName(username.to_owned()))
        }
        _ => Ok(()),
    }
}

/// A logged-in client: the credential's username and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub username: String,
    pub role: Role,
}

/// Why a login could not be checked (not a wrong password: that is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthUnavailable(pub String);

/// Checks logins: who a username and password are, if anyone. The embedded broker asks it
/// at every CONNECT; the API asks it for an external broker (EMQX's HTTP authentication).
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Principal>, AuthUnavailable>;

    /// Who a username is when something else vouched for it (a client certificate the TLS
    /// layer verified, naming it; an external broker that logged it in): its live
    /// credential's principal, without a password.
    async fn certified(&self, username: &str) -> Result<Option<Principal>, AuthUnavailable>;
}

impl Principal {
    /// A device must connect with its own id as the client id, so that nobody else can take
    /// over its session; a service with a client id under [`SERVICE_PREFIX`], which no device
    /// can have.
    pub fn may_use_client_id(&self, client_id: &str) -> bool {
        match self.role {
            Role::Device(_) => client_id == self.username,
            Role::Ingest => client_id.starts_with(SERVICE_PREFIX),
        }
    }

    /// A device publishes only `cleanfleet/v1/{its kind}/{its id}/{stream}`; a service
    /// publishes nothing.
    pub fn may_publish(&self, topic: &str) -> bool {
        let Role::Device(kind) = self.role else {
            return false;
        };
        let Some(rest) = topic
            .strip_prefix(TOPIC_PREFIX)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        let mut levels = rest.split('/');
        let (Some(k), Some(id), Some(stream), None) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return false;
        };
        k == kind.as_str() && id == self.username && stream.parse::<Stream>().is_ok()
    }

    /// Only ingest subscribes, and only to the data topics (`cleanfleet/v1/...`), directly or
    /// in a shared subscription `$share/{group}/cleanfleet/v1/...`.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        if self.role != Role::Ingest {
            return false;
        }
        let filter = match filter.strip_prefix("$share/") {
            Some(shared) => match shared.split_once('/') {
                Some((group, rest)) if !group.is_empty() => rest,
                _ => return false,
            },
            None => filter,
        };
        filter
            .strip_prefix(TOPIC_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// One line of a Mosquitto password file for this credential (`username:$7$...`).
pub fn mosquitto_password_line(username: &str, secret_hash: &str) -> String {
    format!("{username}:{secret_hash}")
}

/// A Mosquitto ACL file with [`Principal`]'s rules for these credentials: a device writes
/// `cleanfleet/v1/{kind}/{id}/+` and reads nothing; an ingest service reads the data topics,
/// directly and in shared subscriptions. Mosquitto denies whatever is not granted.
pub fn mosquitto_acl(credentials: &[(String, Role)]) -> String {
    let mut acl = String::from(
        "# cleanfleet: `cleanfleet devices mosquitto-acl` wrote this from its credentials.\n",
    );
    for (username, role) in credentials {
        acl.push_str(&format!("\nuser {username}\n"));
        match role {
            Role::Device(kind) => {
                acl.push_str(&format!("topic write {TOPIC_PREFIX}/{kind}/{username}/+\n"));
            }
            Role::Ingest => {
                acl.push_str(&format!("topic read {TOPIC_PREFIX}/#\n"));
                acl.push_str(&format!("topic read $share/+/{TOPIC_PREFIX}/#\n"));
            }
        }
    }
    acl
}

/// A device's secrets as they are handed to its firmware (or to the simulator): one
/// `username:secret` per line; blank lines and `#` comments are ignored.
pub fn parse_secrets(text: &str) -> Result<BTreeMap<String, String>, IdentityError> {
    let mut secrets = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || IdentityError::SecretsLine(n + 1);
        let (username, secret) = line.split_once(':').ok_or_else(bad)?;
        if username.is_empty() || secret.is_empty() {
            return Err(bad());
        }
        secrets.insert(username.to_owned(), secret.to_owned());
    }
    Ok(secrets)
}

/// The line [`parse_secrets`] reads.
pub fn secrets_line(username: &str, secret: &str) -> String {
    format!("{username}:{secret}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, kind: DeviceKind) -> Principal {
        Principal {
            username: id.into(),
            role: Role::Device(kind),
        }
    }

    fn ingest() -> Principal {
        Principal {
            username: "cleanfleet-ingest".into(),
            role: Role::Ingest,
        }
    }

    #[test]
    fn a_device_publishes_under_its_own_kind_and_id_only() {
        let sweeper = device("sw-01", DeviceKind::Sweeper);
        assert!(sweeper.may_publish("cleanfleet/v1/sweeper/sw-01/fixes"));
        assert!(sweeper.may_publish("cleanfleet/v1/sweeper/sw-01/status"));
        for topic in [
            "cleanfleet/v1/sweeper/sw-02/fixes",
            "cleanfleet/v1/flusher/sw-01/fixes",
            "cleanfleet/v1/sweeper/sw-01/nonsense",
            "cleanfleet/v1/sweeper/sw-01/fixes/more",
            "cleanfleet/v1/sweeper/sw-01",
            "cleanfleet/v1/sweeper/+/fixes",
            "cleanfleet/v1/sweeper/sw-01/#",
            "cleanfleet/v2/sweeper/sw-01/fixes",
            "other/sweeper/sw-01/fixes",
            "",
        ] {
            assert!(!sweeper.may_publish(topic), "{topic}");
        }
        assert!(!ingest().may_publish("cleanfleet/v1/sweeper/sw-01/fixes"));
    }

    #[test]
    fn only_ingest_subscribes_and_only_to_the_data_topics() {
        let ingest = ingest();
        for filter in [
            "cleanfleet/v1/#",
            "cleanfleet/v1/sweeper/+/fixes",
            "$share/cleanfleet/cleanfleet/v1/#",
        ] {
            assert!(ingest.may_subscribe(filter), "{filter}");
        }
        for filter in [
            "#",
            "+/v1/#",
            "cleanfleet/v1",
            "$SYS/#",
            "$share//cleanfleet/v1/#",
            "$share/g",
        ] {
            assert!(!ingest.may_subscribe(filter), "{filter}");
        }
        let sweeper = device("sw-01", DeviceKind::Sweeper);
        for filter in [
            "#",
            "cleanfleet/v1/#",
            "cleanfleet/v1/sweeper/sw-01/fixes",
            "$share/cleanfleet/cleanfleet/v1/#",
        ] {
            assert!(!sweeper.may_subscribe(filter), "{filter}");
        }
    }

    #[test]
    fn nobody_but_a_service_takes_a_service_client_id() {
        let sweeper = device("sw-01", DeviceKind::Sweeper);
        assert!(sweeper.may_use_client_id("sw-01"));
        assert!(!sweeper.may_use_client_id("sw-02"));
        assert!(!sweeper.may_use_client_id("cleanfleet-ingest"));
        assert!(ingest().may_use_client_id("cleanfleet-ingest"));
        assert!(ingest().may_use_client_id("cleanfleet-ingest-2"));
        assert!(!ingest().may_use_client_id("sw-01"));
        // No device can be named like a service.
        assert_eq!(
            check_username("cleanfleet-ingest", Role::Device(DeviceKind::Sweeper)),
            Err(IdentityError::ReservedName("cleanfleet-ingest".into()))
        );
        assert!(check_username("cleanfleet-ingest", Role::Ingest).is_ok());
        assert!(check_username("ingest", Role::Ingest).is_err());
        assert!(check_username("cleanfleet-", Role::Ingest).is_err());
        assert!(check_username("has space", Role::Device(DeviceKind::Bin)).is_err());
    }

    #[test]
    fn the_mosquitto_acl_grants_what_principals_may() {
        let acl = mosquitto_acl(&[
            ("sw-01".into(), Role::Device(DeviceKind::Sweeper)),
            ("cleanfleet-ingest".into(), Role::Ingest),
        ]);
        assert!(
            acl.contains("\nuser sw-01\ntopic write cleanfleet/v1/sweeper/sw-01/+\n"),
            "{acl}"
        );
        assert!(
            acl.contains("\nuser cleanfleet-ingest\ntopic read cleanfleet/v1/#\n"),
            "{acl}"
        );
        assert_eq!(
            acl.matches("topic read").count(),
            2,
            "only ingest reads: {acl}"
        );
    }

    #[test]
    fn secrets_files_round_trip() {
        let text = format!(
            "# fleet of 2026-12-02\n{}\n\n{}\n",
            secrets_line("sw-01", "abc"),
            secrets_line("bin-001", "d:e")
        );
        let secrets = parse_secrets(&text).unwrap();
        assert_eq!(secrets["sw-01"], "abc");
        assert_eq!(
            secrets["bin-001"], "d:e",
            "the secret is what follows the first colon"
        );
        assert_eq!(parse_secrets("sw-01\n"), Err(IdentityError::SecretsLine(1)));
        assert_eq!(
            parse_secrets("ok:1\n:x\n"),
            Err(IdentityError::SecretsLine(2))
        );
    }

    #[test]
    fn roles_round_trip() {
        for role in DeviceKind::ALL
            .into_iter()
            .map(Role::Device)
            .chain([Role::Ingest])
        {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
