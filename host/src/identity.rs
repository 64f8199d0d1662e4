//! Who this host is on the lattice: its nkeys server key (the host ID), friendly name, version
//! and the built-in `hostcore.*` labels.

use std::collections::BTreeMap;

use nkeys::{KeyPair, KeyPairType};

/// Label keys under this prefix are set by the host itself and cannot be changed at runtime.
pub const RESERVED_LABEL_PREFIX: &str = "hostcore.";

/// Why an identity could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid host seed: {0}")]
    InvalidSeed(String),
    #[error("host seed must be an nkeys server seed (`SN…`), got a {0:?} key")]
    WrongKeyType(KeyPairType),
}

/// The host's identity for its whole run.
pub struct Identity {
    key: KeyPair,
    pub friendly_name: String,
    /// Semver (wadm drops heartbeats whose version does not parse as semver).
    pub version: &'static str,
}

impl Identity {
    /// Uses `seed` (an `SN…` server seed) if given, else a fresh key; `name` overrides the
    /// generated friendly name.
    pub fn new(seed: Option<&str>, name: Option<String>) -> Result<Self, IdentityError> {
        let key = match seed {
            Some(seed) => {
                let key = KeyPair::from_seed(seed)
                    .map_err(|e| IdentityError::InvalidSeed(e.to_string()))?;
                match key.key_pair_type() {
                    KeyPairType::Server => key,
                    other => return Err(IdentityError::WrongKeyType(other)),
                }
            }
            None => KeyPair::new_server(),
        };
        Ok(Self {
            key,
            friendly_name: name.unwrap_or_else(friendly_name),
            version: env!("CARGO_PKG_VERSION"),
        })
    }

    /// The host ID: the server key's public key (`N…`, 56 characters).
    pub fn host_id(&self) -> String {
        self.key.public_key()
    }
}

/// The labels every host carries, describing the platform it was built for.
pub fn builtin_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "hostcore.arch".to_string(),
            std::env::consts::ARCH.to_string(),
        ),
        ("hostcore.os".to_string(), std::env::consts::OS.to_string()),
        (
            "hostcore.osfamily".to_string(),
            std::env::consts::FAMILY.to_string(),
        ),
    ])
}

/// Whether `key` is reserved for the host (case-insensitive `hostcore.` prefix).
pub fn is_reserved_label(key: &str) -> bool {
    key.len() >= RESERVED_LABEL_PREFIX.len()
        && key[..RESERVED_LABEL_PREFIX.len()].eq_ignore_ascii_case(RESERVED_LABEL_PREFIX)
}

const ADJECTIVES: &[&str] = &[
    "amber",
    "autumn",
    "billowing",
    "bold",
    "brisk",
    "calm",
    "crimson",
    "damp",
    "dawn",
    "dry",
    "floral",
    "fragrant",
    "frosty",
    "gentle",
    "hidden",
    "icy",
    "lively",
    "misty",
    "muddy",
    "nameless",
    "patient",
    "proud",
    "quiet",
    "rough",
    "shy",
    "silent",
    "snowy",
    "sparkling",
    "still",
    "summer",
    "twilight",
    "wandering",
    "weathered",
    "wild",
    "winter",
    "young",
];

const NOUNS: &[&str] = &[
    "bird", "breeze", "brook", "bush", "cloud", "dew", "dream", "dust", "feather", "field", "fire",
    "flower", "fog", "forest", "frog", "glade", "grass", "haze", "hill", "lake", "leaf", "meadow",
    "moon", "morning", "night", "pine", "pond", "rain", "river", "sea", "shadow", "sky", "snow",
    "sound", "star", "sun", "thunder", "tree", "violet", "water", "wave", "wind",
];

/// A random `adjective-noun-NNNN` name (number 0001–9999).
pub fn friendly_name() -> String {
    let adjective = ADJECTIVES[fastrand::usize(..ADJECTIVES.len())];
    let noun = NOUNS[fastrand::usize(..NOUNS.len())];
    format!("{adjective}-{noun}-{:04}", fastrand::u16(1..=9999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_is_a_server_key() {
        let identity = Identity::new(None, None).unwrap();
        let id = identity.host_id();
        assert!(id.starts_with('N') && id.len() == 56, "{id}");
        let parts: Vec<&str> = identity.friendly_name.split('-').collect();
        assert_eq!(parts.len(), 3, "{}", identity.friendly_name);
        assert_eq!(parts[2].len(), 4);
    }

    #[test]
    fn seed_must_be_a_server_seed() {
        let server = KeyPair::new_server();
        let again = Identity::new(Some(&server.seed().unwrap()), None).unwrap();
        assert_eq!(again.host_id(), server.public_key());
        let account = KeyPair::new_account().seed().unwrap();
        assert!(matches!(
            Identity::new(Some(&account), None),
            Err(IdentityError::WrongKeyType(_))
        ));
        assert!(Identity::new(Some("nonsense"), None).is_err());
    }

    #[test]
    fn reserved_labels_are_case_insensitive() {
        assert!(is_reserved_label("hostcore.os"));
        assert!(is_reserved_label("HostCore.anything"));
        assert!(!is_reserved_label("hostcore"));
        assert!(!is_reserved_label("zone"));
    }
}
