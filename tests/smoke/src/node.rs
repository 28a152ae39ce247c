//! The real Kubernetes node `./dev up node` runs (scripts/components/node.sh),
//! for the tests that run Polystream in pods: where it is, failing naming it
//! when it is not Ready, and getting the image `./dev image` built onto it.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

/// The image `./dev image` builds (`polystream:VERSION`).
pub fn image() -> String {
    format!("polystream:{}", env!("CARGO_PKG_VERSION"))
}

/// The node as `./dev env` describes it.
#[derive(Debug, Clone)]
pub struct RealNode {
    pub name: String,
    /// Its InternalIP: the pod bridge's gateway, where the relays put the
    /// host's servers (and Kafka's pod listener, CoreDNS).
    pub ip: String,
    /// The NoSchedule taint that keeps every other pod off it.
    pub taint: String,
    /// The node's containerd socket.
    pub containerd: String,
}

impl RealNode {
    /// The node once the kubelet reports it Ready; fails naming it (and how to
    /// start it) otherwise.
    pub async fn require(client: &kube::Client) -> Self {
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| {
                panic!(
                    "{k} is not set: the real Kubernetes node (kubelet, containerd) is not up; \
                     start it with `./dev up node`, then `source <(./dev env)`"
                )
            })
        };
        let node = Self {
            name: var("POLYSTREAM_NODE_NAME"),
            ip: var("POLYSTREAM_NODE_IP"),
            taint: var("POLYSTREAM_NODE_TAINT"),
            containerd: var("POLYSTREAM_NODE_CONTAINERD"),
        };
        let found = kube::Api::<Node>::all(client.clone()).get(&node.name).await;
        let ready = found.as_ref().ok().is_some_and(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        assert!(
            ready,
            "the real node {} (kubelet) is not Ready: start it with `./dev up node` \
             (./dev status; ./dev logs kubelet); the API server says: {:?}",
            node.name,
            found.map(|n| n.status.and_then(|s| s.conditions))
        );
        node
    }

    /// `image` from the local Docker Engine into the node's containerd (pods
    /// use `imagePullPolicy: Never`; nothing comes from a registry).
    pub fn import(&self, image: &str) {
        let docker_host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| {
            panic!(
                "DOCKER_HOST is not set: the Docker Engine that built {image} is not up (`./dev image`)"
            )
        });
        let out = Command::new("bash")
            .args([
                "-o",
                "pipefail",
                "-c",
                r#"/usr/bin/docker save "$1" | ctr --address "$2" --namespace k8s.io images import -"#,
                "import",
                image,
                &self.containerd,
            ])
            .env("DOCKER_HOST", docker_host)
            .output()
            .unwrap_or_else(|e| panic!("cannot run bash to import {image}: {e}"));
        assert!(
            out.status.success(),
            "cannot import {image} into the node's containerd (build it with `./dev image`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Pod scheduling (`nodeSelector`, `tolerations`) that puts a pod here.
    pub fn scheduling(&self) -> Value {
        json!({
            "nodeSelector": {"kubernetes.io/hostname": self.name},
            "tolerations": [{"key": self.taint, "operator": "Exists", "effect": "NoSchedule"}],
        })
    }

    /// A local server's URI as pods reach it (the relay at the node's address).
    pub fn from_pods(&self, local: &str) -> String {
        local
            .replace("127.0.0.1", &self.ip)
            .replace("localhost", &self.ip)
    }
}

/// Waits until a Service's `url` accepts connections: kube-proxy programs a
/// Service's rules a moment after its pods are Ready.
pub async fn wait_service(url: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{url}/health")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the Service at {url} does not answer within 30 s (kube-proxy: ./dev logs kube_proxy)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
