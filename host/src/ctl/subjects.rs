//! Control-interface subjects: what this host subscribes to and how an incoming subject maps
//! to an operation. Prefix: `wasmbus.ctl.v1.{lattice}`.

/// Subject prefix of the control interface on `lattice`.
pub fn prefix(lattice: &str) -> String {
    format!("wasmbus.ctl.v1.{lattice}")
}

/// How one subscription is made.
pub struct Subscription {
    pub subject: String,
    pub queue_group: Option<String>,
}

/// Every subscription of a host: host-addressed subjects carry the host ID as the last token,
/// broadcasts reach every host, and lattice-state operations go to one host of a queue group.
pub fn subscriptions(lattice: &str, host_id: &str) -> Vec<Subscription> {
    let p = prefix(lattice);
    let plain = |subject: String| Subscription {
        subject,
        queue_group: None,
    };
    let queued = |subject: String, group: &str| Subscription {
        subject,
        queue_group: Some(format!("{p}.{group}")),
    };
    vec![
        plain(format!("{p}.host.ping")),
        plain(format!("{p}.trellis.stats")),
        plain(format!("{p}.host.*.{host_id}")),
        plain(format!("{p}.label.*.{host_id}")),
        plain(format!("{p}.component.*.{host_id}")),
        plain(format!("{p}.provider.*.{host_id}")),
        plain(format!("{p}.component.auction")),
        plain(format!("{p}.provider.auction")),
        plain(format!("{p}.registry.put")),
        queued(format!("{p}.link.*"), "link"),
        queued(format!("{p}.claims.get"), "claims"),
        queued(format!("{p}.config.>"), "config"),
    ]
}

/// A control operation named by a subject.
#[derive(Debug, PartialEq, Eq)]
pub enum Operation<'a> {
    HostPing,
    HostGet,
    HostStop,
    LabelPut,
    LabelDel,
    ComponentScale,
    ComponentUpdate,
    ComponentAuction,
    ProviderStart,
    ProviderStop,
    ProviderAuction,
    RegistryPut,
    LinkPut,
    LinkDel,
    LinkGet,
    ClaimsGet,
    ConfigPut(&'a str),
    ConfigGet(&'a str),
    ConfigDel(&'a str),
    /// Trellis's extension: every host answers with its components' call statistics.
    TrellisStats,
}

impl Operation<'_> {
    /// The subject-style name (`component.scale`) used in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::HostPing => "host.ping",
            Self::TrellisStats => "trellis.stats",
            Self::HostGet => "host.get",
            Self::HostStop => "host.stop",
            Self::LabelPut => "label.put",
            Self::LabelDel => "label.del",
            Self::ComponentScale => "component.scale",
            Self::ComponentUpdate => "component.update",
            Self::ComponentAuction => "component.auction",
            Self::ProviderStart => "provider.start",
            Self::ProviderStop => "provider.stop",
            Self::ProviderAuction => "provider.auction",
            Self::RegistryPut => "registry.put",
            Self::LinkPut => "link.put",
            Self::LinkDel => "link.del",
            Self::LinkGet => "link.get",
            Self::ClaimsGet => "claims.get",
            Self::ConfigPut(_) => "config.put",
            Self::ConfigGet(_) => "config.get",
            Self::ConfigDel(_) => "config.del",
        }
    }
}

/// Parses `subject` (received on one of [`subscriptions`]); `None` for anything unsupported.
/// Host-addressed operations must carry `host_id` as their last token.
pub fn parse<'a>(subject: &'a str, lattice: &str, host_id: &str) -> Option<Operation<'a>> {
    let rest = subject
        .strip_prefix("wasmbus.ctl.v1.")?
        .strip_prefix(lattice)?
        .strip_prefix('.')?;
    let (area, rest) = rest.split_once('.')?;
    let (verb, target) = match rest.split_once('.') {
        Some((verb, target)) => (verb, Some(target)),
        None => (rest, None),
    };
    let addressed = target == Some(host_id);
    use Operation::*;
    Some(match (area, verb, target) {
        ("host", "ping", None) => HostPing,
        ("trellis", "stats", None) => TrellisStats,
        ("host", "get", _) if addressed => HostGet,
        ("host", "stop", _) if addressed => HostStop,
        ("label", "put", _) if addressed => LabelPut,
        ("label", "del", _) if addressed => LabelDel,
        ("component", "scale", _) if addressed => ComponentScale,
        ("component", "update", _) if addressed => ComponentUpdate,
        ("component", "auction", None) => ComponentAuction,
        ("provider", "start", _) if addressed => ProviderStart,
        ("provider", "stop", _) if addressed => ProviderStop,
        ("provider", "auction", None) => ProviderAuction,
        ("registry", "put", None) => RegistryPut,
        ("link", "put", None) => LinkPut,
        ("link", "del", None) => LinkDel,
        ("link", "get", None) => LinkGet,
        ("claims", "get", None) => ClaimsGet,
        ("config", "put", Some(name)) => ConfigPut(name),
        ("config", "get", Some(name)) => ConfigGet(name),
        ("config", "del", Some(name)) => ConfigDel(name),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "NHOST";

    fn op(subject: &str) -> Option<Operation<'_>> {
        parse(subject, "lat", H)
    }

    #[test]
    fn parses_addressed_broadcast_and_queued_subjects() {
        assert_eq!(
            op("wasmbus.ctl.v1.lat.host.ping"),
            Some(Operation::HostPing)
        );
        assert_eq!(
            op("wasmbus.ctl.v1.lat.host.get.NHOST"),
            Some(Operation::HostGet)
        );
        assert_eq!(
            op("wasmbus.ctl.v1.lat.component.scale.NHOST"),
            Some(Operation::ComponentScale)
        );
        assert_eq!(op("wasmbus.ctl.v1.lat.link.get"), Some(Operation::LinkGet));
        assert_eq!(
            op("wasmbus.ctl.v1.lat.config.put.a.b"),
            Some(Operation::ConfigPut("a.b"))
        );
    }

    #[test]
    fn refuses_other_hosts_lattices_and_unknown_verbs() {
        assert_eq!(op("wasmbus.ctl.v1.lat.host.get.NOTHER"), None);
        assert_eq!(op("wasmbus.ctl.v1.other.host.ping"), None);
        assert_eq!(op("wasmbus.ctl.v1.lat.host.explode.NHOST"), None);
        assert_eq!(op("wasmbus.ctl.v1.lat.config.put"), None);
        assert_eq!(op("wasmbus.ctl.v1.latx.host.ping"), None);
    }
}
