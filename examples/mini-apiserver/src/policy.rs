//! The default policy until authorization is built: authenticated users may do everything;
//! anonymous users may only read what Kubernetes' `system:public-info-viewer` role grants
//! (`/healthz`, `/livez`, `/readyz`, `/version`). Denials are `403` with the Kubernetes
//! `Status` body and message.

use std::borrow::Cow;

use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};

use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use futures_util::future::Either;
use kube_authn::UserInfo;
use tower_service::Service;

use crate::api::Details;

const PUBLIC: [&str; 5] = ["/healthz", "/livez", "/readyz", "/version", "/version/"];

/// The policy around the whole router (one service rather than `Router::layer` with
/// `middleware::from_fn`, which wraps every route and boxes a future of ~1 KiB per request).
///
/// `disabled`: the server was started with `--disable-authentication` (the benchmark
/// baseline); then requests carry no user and the policy lets them through. Server state
/// rather than a per-request marker, so the baseline does no work that the authenticated
/// server does not.
#[derive(Clone, Debug)]
pub(crate) struct Policy<S> {
    inner: S,
    disabled: bool,
}

impl<S> Policy<S> {
    pub(crate) fn new(inner: S, disabled: bool) -> Self {
        Self { inner, disabled }
    }
}

impl<S, B> Service<Request<B>> for Policy<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match decide(&request, self.disabled) {
            None => Either::Right(self.inner.call(request)),
            Some(denied) => Either::Left(std::future::ready(Ok(denied))),
        }
    }
}

/// `None` when the request may go on; else the response that refuses it.
fn decide<B>(request: &Request<B>, disabled: bool) -> Option<Response> {
    let Some(user) = request.extensions().get::<UserInfo>() else {
        if disabled {
            return None;
        }
        // The authentication layer is missing in front of the policy: a server bug.
        return Some(crate::api::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "no user on the request",
            None,
            crate::api::Pretty(false),
        ));
    };
    if !user.is_anonymous() {
        return None;
    }
    let path = request.uri().path();
    if request.method() == Method::GET && PUBLIC.contains(&path) {
        return None;
    }
    let (message, details) = forbidden_message(
        &user.username,
        request.method(),
        path,
        request.uri().query(),
    );
    let pretty = crate::api::Pretty(kube_authn::core::status::is_pretty_print(
        request.uri(),
        request.headers(),
    ));
    Some(crate::api::status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &message,
        Some(details),
        pretty,
    ))
}

/// The message and details of kube-apiserver's 403 (`responsewriters.Forbidden`), from the
/// request attributes its `RequestInfoFactory` derives from the method, path and query.
fn forbidden_message(
    user: &str,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> (String, Details) {
    let Some(info) = resource_info(method, path, query) else {
        let verb = method.as_str().to_ascii_lowercase();
        return (
            format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""),
            Details::default(),
        );
    };
    let ResourceInfo {
        verb,
        group,
        namespace,
        resource,
        name,
        subresource,
    } = info;
    // forbiddenMessage: the resource with its subresource.
    let full = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let reason = format!(
        "User \"{user}\" cannot {verb} resource \"{full}\" in API group \"{group}\" {scope}"
    );
    // NewForbidden: the group-qualified resource (no subresource), and the name when there is one.
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    let message = match &name {
        Some(name) => format!("{qualified} \"{name}\" is forbidden: {reason}"),
        None => format!("{qualified} is forbidden: {reason}"),
    };
    let details = Details {
        name: name.map(Cow::into_owned),
        group: (!group.is_empty()).then(|| group.to_owned()),
        kind: Some(resource.to_owned()),
    };
    (message, details)
}

/// The name a field selector requires exactly, as Kubernetes reads it (`fields.ParseSelector`,
/// then `RequiresExactMatch("metadata.name")` and `IsValidPathSegmentName`): terms split at
/// unescaped commas and sorted, each `key=value`, `key==value` or `key!=value` with the value
/// unescaped (`\\`, `\,`, `\=`); a selector that does not parse requires nothing.
fn selected_name(selector: &str) -> Option<String> {
    let mut terms = split_terms(selector);
    terms.sort_unstable();
    let mut name = None;
    for term in terms {
        let (key, op, value) = split_term(&term)?;
        let value = unescape_field_value(value)?;
        if name.is_none() && key == "metadata.name" && op != "!=" {
            name = Some(value);
        }
    }
    name.filter(|n| !n.is_empty() && !matches!(n.as_str(), "." | "..") && !n.contains(['/', '%']))
}

/// The terms of a selector: split at commas not escaped by a backslash (escapes kept).
pub(crate) fn split_terms(selector: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut term = String::new();
    let mut escaped = false;
    for c in selector.chars() {
        if escaped {
            term.push(c);
            escaped = false;
        } else if c == '\\' {
            term.push(c);
            escaped = true;
        } else if c == ',' {
            terms.push(std::mem::take(&mut term));
        } else {
            term.push(c);
        }
    }
    terms.push(term);
    terms
}

/// A term's key, operator and (escaped) value: at the first position where `!=`, `==` or `=`
/// starts.
pub(crate) fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    (0..term.len()).find_map(|i| {
        let rest = term.get(i..)?;
        ["!=", "==", "="].into_iter().find_map(|op| {
            let value = rest.strip_prefix(op)?;
            Some((term.get(..i)?, op, value))
        })
    })
}

/// Go's `fields.UnescapeValue`: `\\`, `\,` and `\=` are the only escapes, and an unescaped
/// `,` or `=` is an error.
pub(crate) fn unescape_field_value(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                e @ ('\\' | ',' | '=') => out.push(e),
                _ => return None,
            },
            ',' | '=' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// The attributes of a resource request (Kubernetes `RequestInfo`).
#[derive(Debug, PartialEq, Eq)]
struct ResourceInfo<'a> {
    verb: &'static str,
    group: &'a str,
    namespace: Option<&'a str>,
    resource: &'a str,
    name: Option<Cow<'a, str>>,
    subresource: Option<&'a str>,
}

/// Kubernetes `RequestInfoFactory.NewRequestInfo` for `/api/v1/...` and `/apis/GROUP/VERSION/...`;
/// `None` for a non-resource request.
fn resource_info<'a>(
    method: &Method,
    path: &'a str,
    query: Option<&str>,
) -> Option<ResourceInfo<'a>> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, mut parts) = match parts.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest.to_vec()),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest.to_vec()),
        _ => return None,
    };
    let mut verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    // The special verbs of the path (`/api/v1/watch/...`, `/api/v1/proxy/...`).
    if let [special @ ("watch" | "proxy"), rest @ ..] = parts.as_slice() {
        if rest.is_empty() {
            return None;
        }
        verb = if *special == "watch" {
            "watch"
        } else {
            "proxy"
        };
        parts = rest.to_vec();
    }
    let mut namespace = None;
    if parts.first() == Some(&"namespaces")
        && let Some(ns) = parts.get(1)
    {
        namespace = Some(*ns);
        // /namespaces/NS/RESOURCE...: relative to the resource, unless it is one of the
        // namespace's own subresources.
        if parts.len() > 2 && !matches!(parts.get(2), Some(&("status" | "finalize"))) {
            parts.drain(..2);
        }
    }
    let resource = *parts.first()?;
    // An empty segment (`/pods//log`) is no name, as Go's `len(Name) == 0` reads it.
    let mut name = parts
        .get(1)
        .filter(|n| !n.is_empty())
        .map(|n| Cow::Borrowed(*n));
    let subresource = parts.get(2).filter(|_| verb != "proxy").copied();
    if name.is_none() {
        match verb {
            "get" => {
                // The query as Go decodes it; `?watch` alone is an empty value, which is true.
                let param =
                    |key| query.and_then(|q| kube_authn::core::status::first_query_value(q, key));
                let watch = crate::api::truthy(param("watch").as_deref());
                verb = if watch { "watch" } else { "list" };
                // `kubectl get pod NAME -w` lists with fieldSelector=metadata.name=NAME.
                name = param("fieldSelector")
                    .and_then(|selector| selected_name(&selector))
                    .map(Cow::Owned);
            }
            "delete" => verb = "deletecollection",
            _ => {}
        }
    }
    Some(ResourceInfo {
        verb,
        group,
        namespace,
        resource,
        name,
        subresource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(method: Method, path: &str, q: Option<&str>) -> String {
        forbidden_message("system:anonymous", &method, path, q).0
    }

    #[test]
    fn messages_match_kube_apiserver() {
        let cases: &[(Method, &str, Option<&str>, &str)] = &[
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                None,
                "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=true"),
                "pods is forbidden: User \"system:anonymous\" cannot watch resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("limit=1&watch"),
                "pods is forbidden: User \"system:anonymous\" cannot watch resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=false&watch=true"),
                "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=%30"),
                "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=0;x&watch=1"),
                "pods is forbidden: User \"system:anonymous\" cannot watch resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("fieldSelector=metadata.name%3Dfoo&watch=true"),
                "pods \"foo\" is forbidden: User \"system:anonymous\" cannot watch resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("fieldSelector=status.phase%3DRunning,metadata.name%3D%3Dfoo"),
                "pods \"foo\" is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("fieldSelector=metadata.name!%3Dfoo"),
                "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("fieldSelector=metadata.name%3Da%2Fb"),
                "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns1/pods//log",
                None,
                "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods/log\" in API group \"\" in the namespace \"ns1\"",
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/default/pods",
                None,
                "pods is forbidden: User \"system:anonymous\" cannot watch resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            // NewForbidden: the name in quotes, the resource without its subresource.
            (
                Method::GET,
                "/api/v1/namespaces/ns1/pods/p/log",
                None,
                "pods \"p\" is forbidden: User \"system:anonymous\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"ns1\"",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns1/pods/p",
                None,
                "pods \"p\" is forbidden: User \"system:anonymous\" cannot delete resource \"pods\" in API group \"\" in the namespace \"ns1\"",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns1/pods",
                None,
                "pods is forbidden: User \"system:anonymous\" cannot deletecollection resource \"pods\" in API group \"\" in the namespace \"ns1\"",
            ),
            (
                Method::HEAD,
                "/api/v1/namespaces/ns1/pods/p",
                None,
                "pods \"p\" is forbidden: User \"system:anonymous\" cannot get resource \"pods\" in API group \"\" in the namespace \"ns1\"",
            ),
            // A namespace is its own namespace; its status is a subresource, not a resource.
            (
                Method::GET,
                "/api/v1/namespaces/default",
                None,
                "namespaces \"default\" is forbidden: User \"system:anonymous\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/default/status",
                None,
                "namespaces \"default\" is forbidden: User \"system:anonymous\" cannot update resource \"namespaces/status\" in API group \"\" in the namespace \"default\"",
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                None,
                "namespaces is forbidden: User \"system:anonymous\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope",
            ),
            (
                Method::POST,
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                None,
                "selfsubjectreviews.authentication.k8s.io is forbidden: User \"system:anonymous\" cannot create resource \"selfsubjectreviews\" in API group \"authentication.k8s.io\" at the cluster scope",
            ),
            (
                Method::GET,
                "/api",
                None,
                "forbidden: User \"system:anonymous\" cannot get path \"/api\"",
            ),
            (
                Method::GET,
                "/api/v1",
                None,
                "forbidden: User \"system:anonymous\" cannot get path \"/api/v1\"",
            ),
            (
                Method::GET,
                "/apis/authentication.k8s.io/v1",
                None,
                "forbidden: User \"system:anonymous\" cannot get path \"/apis/authentication.k8s.io/v1\"",
            ),
            (
                Method::GET,
                "/metrics",
                None,
                "forbidden: User \"system:anonymous\" cannot get path \"/metrics\"",
            ),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(
                m(method.clone(), path, *query),
                *want,
                "{method} {path} {query:?}"
            );
        }
    }

    #[test]
    fn field_selectors_are_read_as_kubernetes_reads_them() {
        let cases = [
            ("metadata.name=foo", Some("foo")),
            ("metadata.name==foo", Some("foo")),
            ("metadata.name!=foo", None),
            ("metadata.name=", None),
            (" metadata.name=foo", None),
            ("metadata.name=a\\,b", Some("a,b")),
            ("metadata.name=b,metadata.name=a", Some("a")),
            ("metadata.name=x=y", None),
            ("metadata.name=a\\qb", None),
            ("status.phase=Running,metadata.name=web", Some("web")),
            ("metadata.name=a/b", None),
            ("metadata.name=..", None),
            ("nonsense", None),
        ];
        for (selector, want) in cases {
            assert_eq!(selected_name(selector).as_deref(), want, "{selector}");
        }
    }

    #[test]
    fn details_name_the_object() {
        let (_, d) = forbidden_message("u", &Method::GET, "/api/v1/namespaces/ns/pods/p/log", None);
        assert_eq!(
            d,
            Details {
                name: Some("p".into()),
                group: None,
                kind: Some("pods".into())
            }
        );
        let (_, d) = forbidden_message(
            "u",
            &Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            None,
        );
        assert_eq!(
            d,
            Details {
                name: None,
                group: Some("authentication.k8s.io".into()),
                kind: Some("selfsubjectreviews".into())
            }
        );
        assert_eq!(
            forbidden_message("u", &Method::GET, "/metrics", None).1,
            Details::default()
        );
    }
}
