//! The validating admission webhook (`POST /validate` over TLS, `--admission-listen`): the API
//! server asks before it stores an `IPAddressPool` or `L2Advertisement`, and the answer is
//! [`pools::admit`] on the set in the reconciler's caches, so `kubectl apply` of a pool that
//! overlaps another is refused with the message `ferrolb validate` prints. Every replica
//! answers, the leader or not.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::post;
use ferrolb_core::config::Options;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tokio::sync::watch;

use crate::pools::{self, PoolCaches, PoolObject};

/// What the handler needs.
#[derive(Clone, Debug)]
struct Webhook {
    caches: PoolCaches,
    options: Options,
}

/// Decides on one request, given the set in force (or why it is not known).
pub fn review(
    current: Result<Vec<PoolObject>, String>,
    req: &AdmissionRequest<DynamicObject>,
    options: &Options,
) -> AdmissionResponse {
    let answer = AdmissionResponse::from(req);
    let Some((kind, _)) = pools::KINDS.iter().find(|(k, _)| *k == req.kind.kind) else {
        return answer;
    };
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return answer;
    }
    let Some(object) = &req.object else {
        return answer.deny("the request carries no object");
    };
    let mut incoming = PoolObject::from_dynamic(kind, object);
    if incoming.namespace.is_empty() {
        incoming = PoolObject::from_dynamic(
            kind,
            &object
                .clone()
                .within(req.namespace.as_deref().unwrap_or_default()),
        );
    }
    let current = match current {
        Ok(c) => c,
        Err(why) => return answer.deny(format!("ferrolb cannot validate it yet ({why}); retry")),
    };
    let decision = pools::admit(&current, incoming, options);
    let mut answer = if decision.allowed {
        answer
    } else {
        answer.deny(decision.message)
    };
    if !decision.warnings.is_empty() {
        answer.warnings = Some(decision.warnings);
    }
    answer
}

async fn validate(
    State(w): State<Webhook>,
    Json(body): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req: AdmissionRequest<DynamicObject> = match body.try_into() {
        Ok(r) => r,
        Err(e) => return Json(AdmissionResponse::invalid(e.to_string()).into_review()),
    };
    let caches = w.caches.clone();
    let options = w.options.clone();
    // Validation is CPU work; it runs off the runtime's thread like the controller's.
    let answer = tokio::task::spawn_blocking(move || review(caches.objects(), &req, &options))
        .await
        .unwrap_or_else(|e| AdmissionResponse::invalid(format!("validation failed: {e}")));
    Json(answer.into_review())
}

/// The webhook's routes.
pub fn router(caches: PoolCaches, options: Options) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .with_state(Webhook { caches, options })
}

/// Serves the webhook over TLS on `listener` until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: ferrolb_daemon::http::TlsAcceptor,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let limits = ferrolb_daemon::http::Limits::default();
    ferrolb_daemon::http::serve_tls(listener, tls, app, limits, shutdown).await
}

/// Binds the webhook's listener.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on --admission-listen {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(
        operation: &str,
        kind: &str,
        object: serde_json::Value,
    ) -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "metallb.io", "version": "v1beta1", "kind": kind},
                "resource": {"group": "metallb.io", "version": "v1beta1", "resource": "ipaddresspools"},
                "operation": operation,
                "namespace": "metallb-system",
                "name": "b",
                "userInfo": {"username": "admin"},
                "object": object,
            }
        }))
        .expect("a review");
        review.try_into().expect("a request")
    }

    fn pool(name: &str, range: &str) -> serde_json::Value {
        json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": name},
            "spec": {"addresses": [range]}
        })
    }

    fn current() -> Vec<PoolObject> {
        let req = request("CREATE", "IPAddressPool", pool("a", "10.250.0.0/24"));
        let obj = req.object.expect("object").within("metallb-system");
        vec![PoolObject::from_dynamic("IPAddressPool", &obj)]
    }

    #[test]
    fn an_overlapping_pool_is_denied_with_the_validators_message_and_the_uid() {
        let req = request("CREATE", "IPAddressPool", pool("b", "10.250.0.5/32"));
        let answer = review(Ok(current()), &req, &Options::default());
        assert!(!answer.allowed);
        assert_eq!(answer.uid, "u-1");
        assert!(
            answer.result.message.starts_with(
                r#"metallb-system: error: IPAddressPool "b": address range 10.250.0.5/32 overlaps 10.250.0.0/24"#
            ),
            "{}",
            answer.result.message
        );
        let req = request("CREATE", "IPAddressPool", pool("b", "10.250.1.5/32"));
        assert!(review(Ok(current()), &req, &Options::default()).allowed);
    }

    #[test]
    fn deletions_and_other_kinds_pass_and_an_unknown_set_is_refused() {
        let req = request("DELETE", "IPAddressPool", pool("b", "10.250.0.5/32"));
        assert!(review(Ok(current()), &req, &Options::default()).allowed);
        let req = request("CREATE", "ConfigMap", json!({"metadata": {"name": "x"}}));
        assert!(review(Ok(current()), &req, &Options::default()).allowed);
        let req = request("CREATE", "IPAddressPool", pool("b", "10.250.1.5/32"));
        let answer = review(Err("not listed yet".into()), &req, &Options::default());
        assert!(!answer.allowed);
        assert!(answer.result.message.contains("not listed yet"));
    }
}
