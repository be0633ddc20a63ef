//! Typed ids: what a value names is in its type, not in a variable's name.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A device's id as its topics name it (`sw-0042`; `is_valid_device_id`). Shared, not
/// copied: a store reading many records of few devices hands out one allocation per device.
/// Compares, orders and serialises as its text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(Arc<str>);

impl DeviceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for DeviceId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for DeviceId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DeviceId {
    fn from(id: &str) -> Self {
        DeviceId(id.into())
    }
}

impl From<String> for DeviceId {
    fn from(id: String) -> Self {
        DeviceId(id.into())
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> Self {
        id.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for DeviceId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for DeviceId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(DeviceId::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_id_is_its_text() {
        let id = DeviceId::from("sw-0042");
        assert_eq!(id, "sw-0042");
        assert_eq!(id.to_string(), "sw-0042");
        assert_eq!(format!("{id:?}"), r#""sw-0042""#);
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""sw-0042""#);
        let back: DeviceId = serde_json::from_str(r#""sw-0042""#).unwrap();
        assert_eq!(back, id);
        let (ten, two) = (DeviceId::from("sw-10"), DeviceId::from("sw-2"));
        assert!(ten < two, "as text, not as number");
        let by_text: std::collections::HashSet<DeviceId> = [id.clone()].into();
        assert!(by_text.contains("sw-0042"));
    }
}
