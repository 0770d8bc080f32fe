//! What a reload changed, as the log line and `Handle::reload` report it.

use std::fmt;
use std::net::SocketAddr;

/// One thing a reload changed (or could not change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `admin.listen`, `[issuer]` or `worker_threads` changed: kept until a restart.
    NeedsRestart(&'static str),
    CredentialAdded(String),
    CredentialChanged(String),
    CredentialRemoved(String),
    OutboundAdded {
        name: String,
        listen: SocketAddr,
    },
    OutboundMoved {
        name: String,
        listen: SocketAddr,
    },
    OutboundRemoved(String),
    ForwardProxyRemoved,
    /// New inbound key settings gave no keys in time: the running inbound stays.
    InboundKept,
    InboundChanged,
    InboundMoved(SocketAddr),
    InboundRemoved,
    Limits,
    /// Something changed that none of the above names.
    Settings,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::NeedsRestart(what) => write!(f, "{what}: needs a restart (not applied)"),
            Change::CredentialAdded(name) => write!(f, "credential {name}: added"),
            Change::CredentialChanged(name) => write!(f, "credential {name}: changed"),
            Change::CredentialRemoved(name) => write!(f, "credential {name}: removed"),
            Change::OutboundAdded { name, listen } => {
                write!(f, "outbound {name}: added on {listen}")
            }
            Change::OutboundMoved { name, listen } => {
                write!(f, "outbound {name}: moved to {listen}")
            }
            Change::OutboundRemoved(name) => write!(f, "outbound {name}: removed"),
            Change::ForwardProxyRemoved => f.write_str("forward_proxy: removed"),
            Change::InboundKept => f.write_str(
                "inbound: not changed (the new key settings gave no keys within jwks_timeout)",
            ),
            Change::InboundChanged => f.write_str("inbound: changed"),
            Change::InboundMoved(listen) => write!(f, "inbound: moved to {listen}"),
            Change::InboundRemoved => f.write_str("inbound: removed"),
            Change::Limits => f.write_str("limits: changed (new connections)"),
            Change::Settings => f.write_str("routes and settings updated"),
        }
    }
}
