//! WIT interface names (`ns:pkg/iface@version`) and how imports are matched against them.

use std::fmt;

/// A parsed WIT instance name such as `wasi:keyvalue/store@0.2.0-draft`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName {
    pub namespace: String,
    pub package: String,
    pub interface: String,
    pub version: Option<String>,
}

impl InterfaceName {
    /// Parses `ns:pkg/iface[@version]`; `None` for names of another shape (e.g. a root function).
    pub fn parse(name: &str) -> Option<Self> {
        let (path, version) = match name.split_once('@') {
            Some((path, version)) => (path, Some(version.to_string())),
            None => (name, None),
        };
        let (namespace, rest) = path.split_once(':')?;
        let (package, interface) = rest.split_once('/')?;
        if [namespace, package, interface]
            .iter()
            .any(|part| part.is_empty())
        {
            return None;
        }
        Some(Self {
            namespace: namespace.into(),
            package: package.into(),
            interface: interface.into(),
            version,
        })
    }

    /// `ns:pkg/iface` without the version: the key wasmCloud links are resolved by.
    pub fn unversioned(&self) -> String {
        format!("{}:{}/{}", self.namespace, self.package, self.interface)
    }

    /// Whether `self` (a pattern, possibly without version) covers the import `other`.
    pub fn covers(&self, other: &InterfaceName) -> bool {
        self.namespace == other.namespace
            && self.package == other.package
            && self.interface == other.interface
            && (self.version.is_none() || self.version == other.version)
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.namespace, self.package, self.interface)?;
        if let Some(version) = &self.version {
            write!(f, "@{version}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let import = InterfaceName::parse("wasi:keyvalue/store@0.2.0-draft").unwrap();
        assert_eq!(import.unversioned(), "wasi:keyvalue/store");
        assert_eq!(import.to_string(), "wasi:keyvalue/store@0.2.0-draft");
        assert!(
            InterfaceName::parse("wasi:keyvalue/store")
                .unwrap()
                .covers(&import)
        );
        assert!(
            !InterfaceName::parse("wasi:keyvalue/store@0.1.0")
                .unwrap()
                .covers(&import)
        );
        assert!(InterfaceName::parse("run").is_none());
        assert!(InterfaceName::parse(":x/y").is_none());
    }
}
