//! Checks the types alone do not make: value ranges, peer addresses, and the RPC and metrics
//! addresses (loopback unless `allow_remote`), with the address parsers they use.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::error::ConfigError;
use super::schema::NodeConfig;

impl NodeConfig {
    /// Checks ranges and addresses that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::BadValue {
            key: key.to_string(),
            message,
        };
        let max = crate::crypto::MAX_BATCH;
        if self.verify.batch_max == 0 || self.verify.batch_max > max {
            return Err(bad(
                "verify.batch_max",
                format!("expected an integer in 1..={max}"),
            ));
        }
        if self.node.shards > 1024 {
            return Err(bad("node.shards", "expected an integer in 0..=1024".into()));
        }
        if let Some(peers) = &self.node.peers {
            for p in peers {
                split_host_port(p).ok_or_else(|| {
                    bad(
                        "node.peers",
                        format!("{p:?} is not HOST:PORT with a port in 1..=65535"),
                    )
                })?;
            }
        }
        let io = &self.io;
        if !io.recv_buffers.is_power_of_two() || io.recv_buffers > 32768 {
            return Err(bad(
                "io.recv_buffers",
                "expected a power of two ≤ 32768".into(),
            ));
        }
        if io.recv_buffer_size == 0 || io.recv_buffer_size > (1 << 24) {
            return Err(bad(
                "io.recv_buffer_size",
                "expected an integer in 1..=16777216".into(),
            ));
        }
        if !(8..=32768).contains(&io.ring_entries) {
            return Err(bad(
                "io.ring_entries",
                "expected an integer in 8..=32768".into(),
            ));
        }
        if io.backlog <= 0 {
            return Err(bad("io.backlog", "expected a positive integer".into()));
        }
        if io.command_queue == 0 {
            return Err(bad(
                "io.command_queue",
                "expected a positive integer".into(),
            ));
        }
        let l = &self.limits;
        for (key, v) in [
            (
                "limits.max_connections_per_shard",
                l.max_connections_per_shard,
            ),
            ("limits.max_outbound_per_shard", l.max_outbound_per_shard),
            ("limits.send_queue_messages", l.send_queue_messages),
            ("limits.send_queue_bytes", l.send_queue_bytes),
        ] {
            if v == 0 {
                return Err(bad(key, "expected a positive integer".into()));
            }
        }
        if l.max_connections_per_shard > (1 << 20) {
            return Err(bad(
                "limits.max_connections_per_shard",
                "expected an integer in 1..=1048576".into(),
            ));
        }
        if l.max_outbound_per_shard > (1 << 20) {
            return Err(bad(
                "limits.max_outbound_per_shard",
                "expected an integer in 1..=1048576".into(),
            ));
        }
        self.rpc_addr()?;
        self.metrics_addr()?;
        Ok(())
    }

    /// The RPC listen address, if enabled.
    pub fn rpc_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        server_addr(&self.rpc.address, self.rpc.allow_remote, "rpc")
    }

    /// The metrics listen address, if enabled.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        server_addr(&self.metrics.address, self.metrics.allow_remote, "metrics")
    }
}

/// `HOST:PORT` → (host, port); IPv6 hosts in brackets.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

/// Parses `ADDR:PORT`, or a bare `PORT` as 127.0.0.1:PORT.
pub fn parse_bind(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().ok()
}

fn server_addr(
    address: &Option<String>,
    allow_remote: bool,
    section: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(text) = address else {
        return Ok(None);
    };
    let key = format!("{section}.address");
    let addr = parse_bind(text).ok_or_else(|| ConfigError::BadValue {
        key: key.clone(),
        message: format!("{text:?} is not ADDR:PORT or PORT"),
    })?;
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(ConfigError::RemoteBind {
            key,
            section: section.to_string(),
            addr,
        });
    }
    Ok(Some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_bind() {
        assert_eq!(
            split_host_port("peering.nano.org:7075"),
            Some(("peering.nano.org", 7075))
        );
        assert_eq!(split_host_port("[::1]:7075"), Some(("::1", 7075)));
        assert_eq!(split_host_port("::1:7075"), None);
        assert_eq!(split_host_port("host:0"), None);
        assert_eq!(split_host_port(":7075"), None);
        assert_eq!(parse_bind("7076"), Some("127.0.0.1:7076".parse().unwrap()));
        assert_eq!(parse_bind("[::1]:1"), Some("[::1]:1".parse().unwrap()));
        assert_eq!(parse_bind("nope"), None);
    }
}
