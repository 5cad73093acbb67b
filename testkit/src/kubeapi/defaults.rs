//! What the API server fills in on writes: Service cluster IPs, node ports and policies, the
//! Namespace phase and name label.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

/// Allocates Service addresses and node ports, as the real allocators would (never reusing
/// them, which the real ones do after a deletion).
#[derive(Debug)]
pub(crate) struct Allocator {
    next_cluster_ip: u32,
    next_node_port: u16,
}

/// The first address handed out: 10.96.0.1 is the `kubernetes` Service's in a real cluster.
const FIRST_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Node ports come from 30000–32767.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

impl Default for Allocator {
    fn default() -> Self {
        Allocator {
            next_cluster_ip: u32::from(FIRST_CLUSTER_IP),
            next_node_port: *NODE_PORTS.start(),
        }
    }
}

impl Allocator {
    fn cluster_ip(&mut self) -> String {
        let ip = Ipv4Addr::from(self.next_cluster_ip);
        // Stay inside 10.96.0.0/12.
        self.next_cluster_ip =
            if self.next_cluster_ip >= u32::from(Ipv4Addr::new(10, 111, 255, 254)) {
                u32::from(FIRST_CLUSTER_IP)
            } else {
                self.next_cluster_ip + 1
            };
        ip.to_string()
    }

    fn node_port(&mut self) -> u16 {
        let port = self.next_node_port;
        self.next_node_port = if port >= *NODE_PORTS.end() {
            *NODE_PORTS.start()
        } else {
            port + 1
        };
        port
    }
}

/// Fills in server-side defaults of an object of `kind` being written; `old` is the stored
/// object on updates, whose allocated values carry over when the new one leaves them out.
pub(crate) fn apply(kind: &str, object: &mut Value, old: Option<&Value>, alloc: &mut Allocator) {
    match kind {
        "Service" => service(object, old, alloc),
        "Namespace" => namespace(object),
        _ => {}
    }
}

fn service(object: &mut Value, old: Option<&Value>, alloc: &mut Allocator) {
    if !object.get("spec").is_some_and(Value::is_object) {
        object["spec"] = json!({});
    }
    let old_spec = old.and_then(|o| o.get("spec"));
    let spec = &mut object["spec"];
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    spec["type"] = json!(kind);
    default(spec, "sessionAffinity", json!("None"));
    if kind != "ExternalName" {
        let has_ip = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .is_some_and(|ip| !ip.is_empty());
        if !has_ip {
            let ip = old_spec
                .and_then(|s| s.get("clusterIP"))
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
                .map_or_else(|| alloc.cluster_ip(), str::to_string);
            spec["clusterIP"] = json!(ip);
        }
        let ip = spec["clusterIP"].clone();
        default(spec, "clusterIPs", json!([ip]));
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    let wants_node_ports = kind == "NodePort"
        || (kind == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"] != json!(false));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter(|p| p.is_object()) {
            default(port, "protocol", json!("TCP"));
            if let Some(number) = port.get("port").cloned() {
                default(port, "targetPort", number);
            }
            if wants_node_ports && port.get("nodePort").is_none_or(Value::is_null) {
                let previous = old_spec
                    .and_then(|s| s.get("ports"))
                    .and_then(Value::as_array)
                    .and_then(|ports| ports.iter().find(|p| same_port(p, port)))
                    .and_then(|p| p.get("nodePort"))
                    .filter(|n| n.is_u64())
                    .cloned();
                port["nodePort"] = previous.unwrap_or_else(|| json!(alloc.node_port()));
            }
        }
    }
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({ "loadBalancer": {} });
    }
}

/// Whether two Service ports are the same port (same number and protocol).
fn same_port(a: &Value, b: &Value) -> bool {
    let protocol = |p: &Value| {
        p.get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string()
    };
    a.get("port") == b.get("port") && protocol(a) == protocol(b)
}

fn namespace(object: &mut Value) {
    if let Some(name) = object.pointer("/metadata/name").cloned() {
        let metadata = &mut object["metadata"];
        if !metadata.get("labels").is_some_and(Value::is_object) {
            metadata["labels"] = json!({});
        }
        metadata["labels"]["kubernetes.io/metadata.name"] = name;
    }
    if !object.get("spec").is_some_and(Value::is_object) {
        object["spec"] = json!({});
    }
    default(&mut object["spec"], "finalizers", json!(["kubernetes"]));
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    default(&mut object["status"], "phase", json!("Active"));
}

/// Sets `object[key]` to `value` unless it holds something other than null.
fn default(object: &mut Value, key: &str, value: Value) {
    if object.get(key).is_none_or(Value::is_null) {
        object[key] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_balancer_service_gets_an_address_node_ports_and_an_empty_status() {
        let mut alloc = Allocator::default();
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer",
            "ports": [{"port": 80}]}});
        apply("Service", &mut svc, None, &mut alloc);
        assert_eq!(svc["spec"]["clusterIP"], json!("10.96.0.10"));
        assert_eq!(svc["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], json!(30000));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], json!(80));
        assert_eq!(svc["status"], json!({"loadBalancer": {}}));

        // An update that leaves the allocated values out keeps them.
        let mut update = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer",
            "ports": [{"port": 80, "protocol": "TCP"}]}});
        apply("Service", &mut update, Some(&svc), &mut alloc);
        assert_eq!(update["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
        assert_eq!(update["spec"]["ports"][0]["nodePort"], json!(30000));
    }
}
