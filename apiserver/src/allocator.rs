//! ClusterIP and NodePort allocation for Services. Every address and port in use is a key in the
//! store (`core/serviceipallocations/<ip>`, `core/servicenodeportallocations/<port>`, per logical
//! cluster), so a create of the key is the atomic "take it if free": two Services can never hold
//! the same one, and deleting a Service releases its keys. Plugged into the generic handler as
//! [`WriteHooks`] of the `services` resource.

use std::net::Ipv4Addr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use coxswain_storage::{ObjectKey, Preconditions, Store};
use rand::Rng;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Cause};

const IP_RESOURCE: &str = "core/serviceipallocations";
const PORT_RESOURCE: &str = "core/servicenodeportallocations";
/// Free slots tried (from a random start) before a range counts as full.
const ATTEMPTS: u32 = 256;

/// Resources that hold something outside their own object (addresses, ports): reserved before a
/// write, released after a delete or when an update gives them up.
#[async_trait]
pub trait WriteHooks: Send + Sync {
    /// Reserves what a new object needs, filling it in. Returns the keys held.
    async fn reserve_for_create(
        &self,
        store: &dyn Store,
        cluster: &str,
        object: &mut Value,
    ) -> ApiResult<Vec<ObjectKey>>;

    /// Reserves what an update newly needs (returned first) and names what it gives up (second,
    /// to release once the update is written).
    async fn reserve_for_update(
        &self,
        store: &dyn Store,
        cluster: &str,
        old: &Value,
        new: &mut Value,
    ) -> ApiResult<(Vec<ObjectKey>, Vec<ObjectKey>)>;

    /// What a stored object holds (released when it is deleted).
    fn held(&self, cluster: &str, object: &Value) -> Vec<ObjectKey>;
}

/// Releases reservations; a key already gone is fine.
pub async fn release(store: &dyn Store, keys: &[ObjectKey]) {
    for key in keys {
        match store.delete(key, &Preconditions::none()).await {
            Ok(_) | Err(coxswain_storage::Error::NotFound { .. }) => {}
            Err(err) => tracing::warn!(%key, error = %err, "could not release an allocation"),
        }
    }
}

/// The service network: an IPv4 CIDR for ClusterIPs and an inclusive NodePort range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceNetwork {
    base: u32,
    prefix: u8,
    pub node_ports: (u16, u16),
}

impl Default for ServiceNetwork {
    fn default() -> Self {
        Self {
            base: u32::from(Ipv4Addr::new(10, 96, 0, 0)),
            prefix: 12,
            node_ports: (30000, 32767),
        }
    }
}

impl ServiceNetwork {
    /// Parses `10.96.0.0/12` and `30000-32767`.
    pub fn parse(cidr: &str, ports: &str) -> Result<Self, String> {
        let (address, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("service IP range {cidr:?} is not a CIDR such as 10.96.0.0/12"))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("service IP range {cidr:?}: only IPv4 ranges are supported"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("service IP range {cidr:?}: the prefix must be between /8 and /30"))?;
        let mask = u32::MAX << (32 - prefix);
        let (low, high) = ports
            .split_once('-')
            .and_then(|(l, h)| Some((l.trim().parse::<u16>().ok()?, h.trim().parse::<u16>().ok()?)))
            .filter(|(l, h)| l <= h && *l > 0)
            .ok_or_else(|| format!("node port range {ports:?} is not a range such as 30000-32767"))?;
        Ok(Self {
            base: u32::from(address) & mask,
            prefix,
            node_ports: (low, high),
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// Whether `ip` is an assignable address of the range (not its network or broadcast address).
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(self.base);
        u32::from(ip) >= self.base && offset >= 1 && offset < self.size() - 1
    }

    fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Services' ClusterIPs and NodePorts.
#[derive(Debug, Clone)]
pub struct ServiceAllocator {
    network: ServiceNetwork,
}

impl ServiceAllocator {
    pub fn new(network: ServiceNetwork) -> Arc<Self> {
        Arc::new(Self { network })
    }
}

fn invalid(object: &Value, cause: Cause) -> ApiError {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    ApiError::invalid("Service", "", name, vec![cause])
}

fn owner(object: &Value) -> String {
    let field = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    format!("{}/{}", field("/metadata/namespace"), field("/metadata/name"))
}

/// Takes `name` under `resource` if nobody holds it.
async fn take(
    store: &dyn Store,
    cluster: &str,
    resource: &str,
    name: &str,
    holder: &str,
) -> ApiResult<Option<ObjectKey>> {
    let key = ObjectKey::new(cluster, resource, "", name);
    let value = json!({ "metadata": { "name": name }, "holder": holder });
    match store
        .create(&key, Bytes::from(serde_json::to_vec(&value).unwrap_or_default()))
        .await
    {
        Ok(_) => Ok(Some(key)),
        Err(coxswain_storage::Error::AlreadyExists { .. }) => Ok(None),
        Err(err) => Err(ApiError::storage(
            err,
            &crate::registry::GroupResource::new("", "services"),
            holder,
        )),
    }
}

fn needs_node_ports(object: &Value) -> bool {
    matches!(
        object.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

fn cluster_ip(object: &Value) -> Option<&str> {
    object
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
}

fn node_port(port: &Value) -> Option<i64> {
    port.get("nodePort").and_then(Value::as_i64).filter(|p| *p != 0)
}

impl ServiceAllocator {
    async fn allocate_ip(
        &self,
        store: &dyn Store,
        cluster: &str,
        object: &mut Value,
        held: &mut Vec<ObjectKey>,
    ) -> ApiResult<()> {
        let holder = owner(object);
        let size = self.network.size();
        let start = rand::rng().random_range(1..size - 1);
        for attempt in 0..ATTEMPTS.min(size - 2) {
            let offset = 1 + (start - 1 + attempt) % (size - 2);
            let ip = Ipv4Addr::from(self.network.base + offset).to_string();
            if let Some(key) = take(store, cluster, IP_RESOURCE, &ip, &holder).await? {
                held.push(key);
                object["spec"]["clusterIP"] = json!(ip);
                object["spec"]["clusterIPs"] = json!([ip]);
                return Ok(());
            }
        }
        Err(ApiError::internal(format!(
            "failed to allocate a serviceIP: range is full ({})",
            self.network.cidr()
        )))
    }

    async fn reserve_ip(
        &self,
        store: &dyn Store,
        cluster: &str,
        object: &mut Value,
        held: &mut Vec<ObjectKey>,
    ) -> ApiResult<()> {
        let Some(requested) = cluster_ip(object).map(str::to_string) else {
            return self.allocate_ip(store, cluster, object, held).await;
        };
        if requested == "None" {
            object["spec"]["clusterIPs"] = json!(["None"]);
            return Ok(());
        }
        let ip: Ipv4Addr = requested.parse().map_err(|_| {
            invalid(
                object,
                Cause::invalid(
                    "spec.clusterIPs[0]",
                    &requested,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ),
            )
        })?;
        if !self.network.contains(ip) {
            return Err(invalid(
                object,
                Cause::invalid(
                    "spec.clusterIPs[0]",
                    &requested,
                    format!(
                        "failed to allocate IP {requested}: provided IP is not in the valid range. The range of valid IPs is {}",
                        self.network.cidr()
                    ),
                ),
            ));
        }
        match take(store, cluster, IP_RESOURCE, &requested, &owner(object)).await? {
            Some(key) => {
                held.push(key);
                object["spec"]["clusterIPs"] = json!([requested]);
                Ok(())
            }
            None => Err(invalid(
                object,
                Cause::invalid(
                    "spec.clusterIPs[0]",
                    &requested,
                    format!("failed to allocate IP {requested}: provided IP is already allocated"),
                ),
            )),
        }
    }

    /// Gives every port a NodePort: the requested one, the one it had before, or a free one.
    async fn reserve_ports(
        &self,
        store: &dyn Store,
        cluster: &str,
        object: &mut Value,
        previous: &[i64],
        held: &mut Vec<ObjectKey>,
    ) -> ApiResult<()> {
        let holder = owner(object);
        let (low, high) = self.network.node_ports;
        let count = object
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for index in 0..count {
            let requested = object
                .pointer(&format!("/spec/ports/{index}"))
                .and_then(node_port);
            match requested {
                Some(port) if previous.contains(&port) => {}
                Some(port) => {
                    let field = format!("spec.ports[{index}].nodePort");
                    if port < i64::from(low) || port > i64::from(high) {
                        return Err(invalid(
                            object,
                            Cause {
                                reason: "FieldValueInvalid",
                                message: format!(
                                    "Invalid value: {port}: provided port is not in the valid range. The range of valid ports is {low}-{high}"
                                ),
                                field,
                            },
                        ));
                    }
                    match take(store, cluster, PORT_RESOURCE, &port.to_string(), &holder).await? {
                        Some(key) => held.push(key),
                        None => {
                            return Err(invalid(
                                object,
                                Cause {
                                    reason: "FieldValueInvalid",
                                    message: format!(
                                        "Invalid value: {port}: provided port is already allocated"
                                    ),
                                    field,
                                },
                            ));
                        }
                    }
                }
                None => {
                    let span = u32::from(high - low) + 1;
                    let start = rand::rng().random_range(0..span);
                    let mut found = None;
                    for attempt in 0..ATTEMPTS.min(span) {
                        let port = u32::from(low) + (start + attempt) % span;
                        if let Some(key) =
                            take(store, cluster, PORT_RESOURCE, &port.to_string(), &holder).await?
                        {
                            held.push(key);
                            found = Some(port);
                            break;
                        }
                    }
                    let port = found.ok_or_else(|| {
                        ApiError::internal(format!(
                            "failed to allocate a nodePort: range is full ({low}-{high})"
                        ))
                    })?;
                    object["spec"]["ports"][index]["nodePort"] = json!(port);
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl WriteHooks for ServiceAllocator {
    async fn reserve_for_create(
        &self,
        store: &dyn Store,
        cluster: &str,
        object: &mut Value,
    ) -> ApiResult<Vec<ObjectKey>> {
        let mut held = Vec::new();
        if object.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
            return Ok(held);
        }
        let result = async {
            self.reserve_ip(store, cluster, object, &mut held).await?;
            if needs_node_ports(object) {
                self.reserve_ports(store, cluster, object, &[], &mut held).await?;
            }
            Ok::<_, ApiError>(())
        }
        .await;
        match result {
            Ok(()) => Ok(held),
            Err(err) => {
                release(store, &held).await;
                Err(err)
            }
        }
    }

    async fn reserve_for_update(
        &self,
        store: &dyn Store,
        cluster: &str,
        old: &Value,
        new: &mut Value,
    ) -> ApiResult<(Vec<ObjectKey>, Vec<ObjectKey>)> {
        // The ClusterIP stays; an update that leaves it out keeps it.
        match (
            cluster_ip(old).map(str::to_string),
            cluster_ip(new).map(str::to_string),
        ) {
            (Some(before), None) => {
                new["spec"]["clusterIP"] = json!(before);
                if let Some(ips) = old.pointer("/spec/clusterIPs") {
                    new["spec"]["clusterIPs"] = ips.clone();
                }
            }
            (Some(before), Some(after)) if before != after => {
                return Err(invalid(
                    new,
                    Cause::invalid("spec.clusterIPs[0]", &after, "may not change once set"),
                ));
            }
            _ => {}
        }
        let previous: Vec<i64> = old
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ports| ports.iter().filter_map(node_port).collect())
            .unwrap_or_default();
        let mut held = Vec::new();
        if needs_node_ports(new) {
            // A port that had a NodePort keeps it unless the update names another.
            if let (Some(Value::Array(ports)), Some(Value::Array(old_ports))) = (
                new.pointer_mut("/spec/ports").map(|p| p.take()),
                old.pointer("/spec/ports"),
            ) {
                let mut ports = ports;
                for port in ports.iter_mut() {
                    if node_port(port).is_none()
                        && let Some(same) = old_ports.iter().find(|o| o.get("port") == port.get("port"))
                        && let Some(kept) = node_port(same)
                    {
                        port["nodePort"] = json!(kept);
                    }
                }
                new["spec"]["ports"] = Value::Array(ports);
            }
            if let Err(err) = self
                .reserve_ports(store, cluster, new, &previous, &mut held)
                .await
            {
                release(store, &held).await;
                return Err(err);
            }
        } else if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.remove("nodePort");
            }
        }
        let still: Vec<i64> = new
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ports| ports.iter().filter_map(node_port).collect())
            .unwrap_or_default();
        let given_up = previous
            .into_iter()
            .filter(|port| !still.contains(port))
            .map(|port| ObjectKey::new(cluster, PORT_RESOURCE, "", port.to_string()))
            .collect();
        Ok((held, given_up))
    }

    fn held(&self, cluster: &str, object: &Value) -> Vec<ObjectKey> {
        let mut keys = Vec::new();
        if let Some(ip) = cluster_ip(object).filter(|ip| *ip != "None") {
            keys.push(ObjectKey::new(cluster, IP_RESOURCE, "", ip));
        }
        for port in object
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(node_port)
        {
            keys.push(ObjectKey::new(cluster, PORT_RESOURCE, "", port.to_string()));
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_exclude_network_and_broadcast() {
        let network = ServiceNetwork::parse("10.0.0.0/24", "30000-30010").unwrap();
        assert!(!network.contains(Ipv4Addr::new(10, 0, 0, 0)));
        assert!(network.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(!network.contains(Ipv4Addr::new(10, 0, 0, 255)));
        assert!(!network.contains(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(network.node_ports, (30000, 30010));
        assert!(ServiceNetwork::parse("fd00::/108", "1-2").is_err());
        assert!(ServiceNetwork::parse("10.0.0.0/24", "3-1").is_err());
        assert_eq!(ServiceNetwork::default().cidr(), "10.96.0.0/12");
    }
}
