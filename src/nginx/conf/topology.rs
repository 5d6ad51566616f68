//! `cql_topology` and `cql_topology_node`: how the cluster is presented to clients, and
//! which proxy address fronts each node.

use std::net::SocketAddr;

use ngx::ffi::{ngx_command_t, NGX_CONF_1MORE, NGX_CONF_TAKE2};
use ngx::ngx_string;

use super::{duplicate, inherit, setting, Located, Reading, Refusal};
use crate::session::AuthMode;
use crate::topology::Topology;

/// `cql_topology`: how the cluster is presented to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    Off,
    /// The proxy is the cluster; the addresses of every proxy instance that stands for it.
    Proxy(Vec<SocketAddr>),
    /// One proxy address per node, mapped by `cql_topology_node`.
    Nodes,
}

/// The topology directives of a block; `None` is unset.
#[derive(Default)]
pub(super) struct TopologyConf {
    /// `cql_topology`.
    pub layout: Option<Located<Layout>>,
    /// `cql_topology_node`: each node's address and the proxy address that fronts it.
    pub nodes: Option<Located<Vec<(SocketAddr, SocketAddr)>>>,
}

pub(super) const COMMANDS: [ngx_command_t; 2] = [
    setting(ngx_string!("cql_topology"), NGX_CONF_1MORE, set_topology),
    setting(
        ngx_string!("cql_topology_node"),
        NGX_CONF_TAKE2,
        set_topology_node,
    ),
];

setting_handlers! {
    set_topology => topology: topology;
    set_topology_node => topology: topology_node;
}

/// `cql_topology off | proxy [IP:PORT ...] | nodes`
fn topology(conf: &mut TopologyConf, args: &[&str], reading: &Reading) -> Result<(), String> {
    if conf.layout.is_some() {
        return duplicate();
    }
    if let [layout @ ("off" | "nodes"), _, ..] = args {
        return Err(format!("\"{layout}\" takes no addresses"));
    }
    let layout = match args {
        ["off"] => Layout::Off,
        ["nodes"] => Layout::Nodes,
        ["proxy", addresses @ ..] => {
            let mut instances = Vec::with_capacity(addresses.len());
            for arg in addresses {
                let address = socket_address(arg)?;
                if instances.contains(&address) {
                    return Err(format!("lists {address} twice"));
                }
                instances.push(address);
            }
            Layout::Proxy(instances)
        }
        [other, ..] => {
            return Err(format!(
                "invalid value \"{other}\": expected off, proxy or nodes"
            ))
        }
        [] => return Err("takes a value".to_string()),
    };
    conf.layout = Some(reading.locate(layout));
    Ok(())
}

/// `cql_topology_node NODE_IP:PORT PROXY_IP:PORT`
fn topology_node(conf: &mut TopologyConf, args: &[&str], reading: &Reading) -> Result<(), String> {
    let [node, proxy] = args else {
        return Err("takes a node's address and the proxy address that fronts it".to_string());
    };
    let (node, proxy) = (socket_address(node)?, socket_address(proxy)?);
    let nodes = conf.nodes.get_or_insert_with(|| reading.locate(Vec::new()));
    if nodes.value.iter().any(|(n, _)| *n == node) {
        return Err(format!("maps node {node} twice"));
    }
    if let Some((other, _)) = nodes.value.iter().find(|(_, p)| *p == proxy) {
        return Err(format!(
            "maps {proxy} to node {node}, but it fronts node {other} already"
        ));
    }
    nodes.value.push((node, proxy));
    Ok(())
}

/// An `IP:PORT` of `cql_topology` or `cql_topology_node`; names are not resolved (drivers
/// are handed addresses, and a name could resolve differently later).
fn socket_address(arg: &str) -> Result<SocketAddr, String> {
    arg.parse().map_err(|_| {
        format!(
            "invalid address \"{arg}\": expected IP:PORT, e.g. 10.0.0.1:9042 or [2001:db8::1]:9042"
        )
    })
}

impl TopologyConf {
    /// Unset directives take the `stream` block's values.
    pub(super) fn inherit(&mut self, parent: &TopologyConf) {
        inherit(&mut self.layout, &parent.layout);
        inherit(&mut self.nodes, &parent.nodes);
    }

    /// `cql_topology nodes` needs its map; a map without it, or a layout without the gate
    /// that rewrites, would not do what it says.
    pub(super) fn check(&self, auth: AuthMode) -> Result<(), Refusal> {
        let layout = self.layout.as_ref();
        if let Some(layout) = layout.filter(|l| l.value != Layout::Off) {
            if auth == AuthMode::Off {
                return Err(Refusal::new(
                    Some(&layout.at),
                    "\"cql_topology\" needs \"cql_auth\": without it the proxy only watches and \
                     rewrites no answer"
                        .to_string(),
                ));
            }
        }
        match (layout.map(|l| &l.value), &self.nodes) {
            (Some(Layout::Nodes), None) => Err(Refusal::new(
                layout.map(|l| &l.at),
                "\"cql_topology nodes\" needs \"cql_topology_node\": without a map every peer \
                 would be left out"
                    .to_string(),
            )),
            (None, Some(nodes)) => Err(Refusal::new(
                Some(&nodes.at),
                "\"cql_topology_node\" needs \"cql_topology nodes\"".to_string(),
            )),
            _ => Ok(()),
        }
    }

    /// The topology sessions present: nothing is rewritten without the gate.
    pub(super) fn presented(&self, auth: AuthMode) -> Topology {
        if auth == AuthMode::Off {
            return Topology::Off;
        }
        match self.layout.as_ref().map(|l| &l.value) {
            None => Topology::default(),
            Some(Layout::Off) => Topology::Off,
            Some(Layout::Proxy(instances)) => Topology::Proxy {
                instances: instances.clone(),
            },
            Some(Layout::Nodes) => Topology::Nodes {
                map: self
                    .nodes
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_default(),
            },
        }
    }
}
