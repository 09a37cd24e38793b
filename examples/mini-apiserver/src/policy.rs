//! The default policy until authorization is built: authenticated users may do everything;
//! anonymous users may only read what Kubernetes' `system:public-info-viewer` role grants
//! (`/healthz`, `/livez`, `/readyz`, `/version`). Denials are `403` with the Kubernetes
//! `Status` body and message.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use kube_authn::UserInfo;
use serde_json::json;

const PUBLIC: [&str; 5] = ["/healthz", "/livez", "/readyz", "/version", "/version/"];

/// Whether the server was started with `--disable-authentication` (the benchmark baseline):
/// then requests carry no user and the policy lets them through. Server state rather than a
/// per-request marker, so the baseline does no work that the authenticated server does not.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AuthenticationDisabled(pub(crate) bool);

pub(crate) async fn default_policy(
    State(AuthenticationDisabled(disabled)): State<AuthenticationDisabled>,
    request: Request,
    next: Next,
) -> Response {
    let Some(user) = request.extensions().get::<UserInfo>() else {
        if disabled {
            return next.run(request).await;
        }
        // The authentication layer is missing in front of the policy: a server bug.
        return crate::api::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "no user on the request",
            None,
        );
    };
    if !user.is_anonymous() {
        return next.run(request).await;
    }
    let path = request.uri().path();
    if request.method() == Method::GET && PUBLIC.contains(&path) {
        return next.run(request).await;
    }
    let (message, details) = forbidden_message(
        &user.username,
        request.method(),
        path,
        request.uri().query(),
    );
    crate::api::status(StatusCode::FORBIDDEN, "Forbidden", &message, Some(details))
}

/// The message kube-apiserver's authorizer gives, from the request attributes.
fn forbidden_message(
    user: &str,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> (String, serde_json::Value) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
        _ => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [r] => (Some(*r), None, None),
        [r, n] => (Some(*r), Some(*n), None),
        [r, n, s] => (Some(*r), Some(*n), Some(*s)),
        _ => (None, None, None),
    };
    let Some(resource) =
        resource.filter(|_| path.starts_with("/api/") || path.starts_with("/apis/"))
    else {
        let verb = method.as_str().to_ascii_lowercase();
        return (
            format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""),
            json!({}),
        );
    };
    let verb = match (method.as_str(), name, watch) {
        ("GET", None, true) => "watch",
        ("GET", None, false) => "list",
        ("GET", Some(_), _) => "get",
        ("POST", ..) => "create",
        ("PUT", ..) => "update",
        ("PATCH", ..) => "patch",
        ("DELETE", None, _) => "deletecollection",
        ("DELETE", ..) => "delete",
        _ => "unknown",
    };
    let full = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_owned(),
    };
    let qualified = if group.is_empty() {
        full.clone()
    } else {
        format!("{full}.{group}")
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let mut details = json!({"kind": resource});
    if let Some(n) = name {
        details["name"] = json!(n);
    }
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    (
        format!(
            "{qualified} is forbidden: User \"{user}\" cannot {verb} resource \"{full}\" in API group \"{group}\" {scope}"
        ),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_kube_apiserver() {
        let m = |method: Method, path: &str, q: Option<&str>| {
            forbidden_message("system:anonymous", &method, path, q).0
        };
        assert_eq!(
            m(Method::GET, "/api/v1/namespaces/default/pods", None),
            "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            m(
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=true")
            ),
            "pods is forbidden: User \"system:anonymous\" cannot watch resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            m(Method::GET, "/api/v1/namespaces/ns1/pods/p/log", None),
            "pods/log is forbidden: User \"system:anonymous\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"ns1\""
        );
        assert_eq!(
            m(
                Method::POST,
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                None
            ),
            "selfsubjectreviews.authentication.k8s.io is forbidden: User \"system:anonymous\" cannot create resource \"selfsubjectreviews\" in API group \"authentication.k8s.io\" at the cluster scope"
        );
        assert_eq!(
            m(Method::GET, "/api", None),
            "forbidden: User \"system:anonymous\" cannot get path \"/api\""
        );
        assert_eq!(
            m(Method::GET, "/metrics", None),
            "forbidden: User \"system:anonymous\" cannot get path \"/metrics\""
        );
    }
}
