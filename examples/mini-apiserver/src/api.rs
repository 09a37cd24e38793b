//! The API: discovery, SelfSubjectReview, pods with watch and logs (chunked HTTP and websocket),
//! health and metrics.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use futures_util::stream::{self, Stream, StreamExt};
use kube_authn::UserInfo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::store::{Store, StoreError};

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) metrics: Arc<metrics_exporter_prometheus::PrometheusHandle>,
    pub(crate) server_address: String,
}

/// The routes behind authentication and the default policy.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/metrics", get(metrics))
        .route("/version", get(version))
        .route("/version/", get(version))
        .route("/api", get(api_versions))
        .route("/api/v1", get(core_v1))
        .route("/apis", get(api_groups))
        .route("/apis/authentication.k8s.io", get(authentication_group))
        .route(
            "/apis/authentication.k8s.io/{version}",
            get(authentication_resources),
        )
        .route(
            "/apis/authentication.k8s.io/{version}/selfsubjectreviews",
            post(self_subject_review),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods",
            get(list_pods).post(create_pod),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(get_pod).put(replace_pod).delete(delete_pod),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route("/api/v1/pods", get(list_all_pods))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Whether the client gets pretty-printed Status bodies (Kubernetes' `isPrettyPrint`: `?pretty`,
/// or a curl, wget or browser user agent), as the authentication layer's 401 does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pretty(pub(crate) bool);

impl<S: Send + Sync> FromRequestParts<S> for Pretty {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(kube_authn::core::status::is_pretty_print(
            &parts.uri,
            &parts.headers,
        )))
    }
}

/// `metav1.Status` in Kubernetes' field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: serde_json::Map<String, Value>,
    status: &'static str,
    message: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    code: u16,
}

/// `metav1.StatusDetails` in Kubernetes' field order (empty fields left out).
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
}

impl Details {
    fn pod(name: &str) -> Self {
        Self {
            name: Some(name.to_owned()),
            group: None,
            kind: Some("pods".to_owned()),
        }
    }
}

/// A Kubernetes `Status` error response: compact with a final newline (Go's `json.Encoder`), or
/// pretty-printed without one, as kube-apiserver writes them.
pub(crate) fn status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Details>,
    pretty: Pretty,
) -> Response {
    let body = StatusBody {
        kind: "Status",
        api_version: "v1",
        metadata: serde_json::Map::new(),
        status: "Failure",
        message,
        reason,
        details,
        code: code.as_u16(),
    };
    let bytes = if pretty.0 {
        serde_json::to_vec_pretty(&body)
    } else {
        serde_json::to_vec(&body).map(|mut v| {
            v.push(b'\n');
            v
        })
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        bytes.unwrap_or_default(),
    )
        .into_response()
}

fn store_error(e: StoreError, name: &str, pretty: Pretty) -> Response {
    match e {
        StoreError::NotFound => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{name}\" not found"),
            Some(Details::pod(name)),
            pretty,
        ),
        StoreError::TooLarge => status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "etcdserver: request is too large",
            None,
            pretty,
        ),
        StoreError::StorageQuotaExceeded { requested, used } => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "pods \"{name}\" is forbidden: exceeded quota: mini-apiserver, requested: storage={requested}, used: storage={used}, limited: storage={}",
                crate::store::MAX_POD_BYTES
            ),
            Some(Details::pod(name)),
            pretty,
        ),
        StoreError::QuotaExceeded { used } => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "pods \"{name}\" is forbidden: exceeded quota: mini-apiserver, requested: pods=1, used: pods={used}, limited: pods={}",
                crate::store::MAX_PODS
            ),
            Some(Details::pod(name)),
            pretty,
        ),
        StoreError::Conflict => status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on pods \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(Details::pod(name)),
            pretty,
        ),
        StoreError::AlreadyExists => status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("pods \"{name}\" already exists"),
            Some(Details::pod(name)),
            pretty,
        ),
        StoreError::Invalid(why) => status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("Pod \"{name}\" is invalid: {why}"),
            None,
            pretty,
        ),
        StoreError::BadRequest(why) => {
            status(StatusCode::BAD_REQUEST, "BadRequest", &why, None, pretty)
        }
    }
}

/// kube-apiserver's limit on request bodies (`MaxRequestBodyBytes`, 3 MiB).
pub(crate) const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// A body that could not be read: too large (413, kube-apiserver's message), else 400.
fn body_rejection(error: &axum::Error, pretty: Pretty) -> Response {
    let too_large = std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .any(|e| e.is::<http_body_util::LengthLimitError>());
    if too_large {
        return status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("Request entity too large: limit is {MAX_BODY_BYTES}"),
            None,
            pretty,
        );
    }
    status(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &format!("unable to read the request body: {error}"),
        None,
        pretty,
    )
}

async fn not_found(pretty: Pretty) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        Some(Details::default()),
        pretty,
    )
}

async fn method_not_allowed(pretty: Pretty) -> Response {
    status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        Some(Details::default()),
        pretty,
    )
}

/// A query that does not parse (`timeoutSeconds=abc`): 400 with a Status, as Kubernetes answers.
fn bad_query(rejection: &QueryRejection, pretty: Pretty) -> Response {
    status(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &rejection.body_text(),
        None,
        pretty,
    )
}

async fn ok() -> &'static str {
    "ok"
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn version() -> Json<Value> {
    Json(json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-authn",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-11-23T00:00:00Z", "goVersion": "rust", "compiler": "rustc",
        "platform": "linux/amd64",
    }))
}

async fn api_versions(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": s.server_address}],
    }))
}

async fn core_v1() -> Json<Value> {
    Json(json!({
        "kind": "APIResourceList", "groupVersion": "v1",
        "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": ["create", "delete", "get", "list", "update", "watch"], "shortNames": ["po"], "categories": ["all"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
        ],
    }))
}

fn authentication_group_json() -> Value {
    json!({
        "name": "authentication.k8s.io",
        "versions": [{"groupVersion": "authentication.k8s.io/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "authentication.k8s.io/v1", "version": "v1"},
    })
}

async fn api_groups() -> Json<Value> {
    Json(
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [authentication_group_json()]}),
    )
}

async fn authentication_group() -> Json<Value> {
    let mut g = authentication_group_json();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Json(g)
}

async fn authentication_resources(Path(version): Path<String>, pretty: Pretty) -> Response {
    if !matches!(version.as_str(), "v1" | "v1beta1") {
        return not_found(pretty).await;
    }
    Json(json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("authentication.k8s.io/{version}"),
        "resources": [{"name": "selfsubjectreviews", "singularName": "selfsubjectreview", "namespaced": false,
                        "kind": "SelfSubjectReview", "verbs": ["create"]}],
    }))
    .into_response()
}

/// `kubectl auth whoami`: any body (kubectl sends protobuf), JSON back, 201. The body is read
/// (within the limit) before the answer, as kube-apiserver decodes it: an HTTP/2 answer sent
/// while the client is still sending ends the stream with a reset, which some clients (curl)
/// report as an error.
async fn self_subject_review(
    Path(version): Path<String>,
    pretty: Pretty,
    user: UserInfo,
    body: Body,
) -> Response {
    if !matches!(version.as_str(), "v1" | "v1beta1") {
        return not_found(pretty).await;
    }
    if let Err(e) = axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        return body_rejection(&e, pretty);
    }
    /// `SelfSubjectReview` in Kubernetes' field order (`userInfo` keeps `UserInfo`'s).
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Review {
        kind: &'static str,
        api_version: String,
        metadata: Value,
        status: ReviewStatus,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ReviewStatus {
        user_info: UserInfo,
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let body = Review {
        kind: "SelfSubjectReview",
        api_version: format!("authentication.k8s.io/{version}"),
        metadata: json!({"creationTimestamp": crate::store::rfc3339(now)}),
        status: ReviewStatus { user_info: user },
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    watch: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<i64>,
    field_selector: Option<String>,
    label_selector: Option<String>,
}

/// A boolean query parameter as Kubernetes decodes one (`Convert_Slice_string_To_bool`): absent
/// is false, `0` and `false` (any case) are false, anything else (even empty) is true.
pub(crate) fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

async fn list_pods(
    State(s): State<AppState>,
    Path(ns): Path<String>,
    pretty: Pretty,
    headers: axum::http::HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    list_or_watch(s, Some(ns), pretty, headers, query, ws).await
}

/// `GET /api/v1/pods` (`kubectl get pods -A`): the pods of every namespace.
async fn list_all_pods(
    State(s): State<AppState>,
    pretty: Pretty,
    headers: axum::http::HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    list_or_watch(s, None, pretty, headers, query, ws).await
}

/// Lists or watches the pods of `ns` (`None`: of every namespace).
async fn list_or_watch(
    s: AppState,
    ns: Option<String>,
    pretty: Pretty,
    headers: axum::http::HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => return bad_query(&rejection, pretty),
    };
    let selectors = match crate::selector::Selectors::parse(
        q.field_selector.as_deref(),
        q.label_selector.as_deref(),
    ) {
        Ok(selectors) => std::sync::Arc::new(selectors),
        Err(why) => return status(StatusCode::BAD_REQUEST, "BadRequest", &why, None, pretty),
    };
    if truthy(q.watch.as_deref()) {
        let since = q.resource_version.as_deref().and_then(|v| v.parse().ok());
        let events: std::pin::Pin<Box<dyn Stream<Item = Value> + Send>> =
            match s.store.watch(ns.as_deref(), since) {
                Ok((initial, rx)) => Box::pin(watch_stream(
                    initial,
                    rx,
                    ns,
                    watch_timeout(q.timeout_seconds),
                    selectors,
                )),
                Err(too_old) => Box::pin(stream::iter([too_old.event()])),
            };
        return match ws.ok() {
            Some(ws) => watch_websocket(ws, &headers, events, pretty),
            None => chunked(
                "application/json",
                events.map(|v| Bytes::from(format!("{v}\n"))),
            ),
        };
    }
    let (mut items, rv) = s.store.list(ns.as_deref());
    items.retain(|pod| selectors.matches(pod));
    Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()}, "items": items}))
        .into_response()
}

/// kube-apiserver's `--min-request-timeout` default: a watch without `timeoutSeconds` ends then.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// The longest watch: a `timeoutSeconds` beyond it (up to Go's int64) is this.
const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 86_400);

/// How long a watch lasts, as kube-apiserver reads `timeoutSeconds`: absent or 0 is the
/// default (it does not tell them apart), a negative value ends the watch at once.
fn watch_timeout(seconds: Option<i64>) -> Duration {
    match seconds {
        None | Some(0) => DEFAULT_WATCH_TIMEOUT,
        Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0)).min(MAX_WATCH_TIMEOUT),
    }
}

/// The event a watch with `selectors` sees for `e`, as kube-apiserver's watch cache
/// (`convertToWatchEvent`): a pod that enters the selection is `ADDED`, one that leaves it
/// `DELETED` (its previous state, at the new resource version); others pass as they are when
/// they match.
fn selected(e: &crate::store::Event, selectors: &crate::selector::Selectors) -> Option<Value> {
    let now = selectors.matches(&e.object);
    let before = e.previous.as_ref().is_some_and(|p| selectors.matches(p));
    match (e.kind, now, before) {
        ("MODIFIED", true, false) => Some(json!({"type": "ADDED", "object": e.object})),
        ("MODIFIED", false, true) => {
            let mut previous = e.previous.clone().unwrap_or_default();
            previous["metadata"]["resourceVersion"] =
                e.object["metadata"]["resourceVersion"].clone();
            Some(json!({"type": "DELETED", "object": previous}))
        }
        (_, true, _) => Some(e.to_json()),
        _ => None,
    }
}

fn watch_stream(
    initial: Vec<std::sync::Arc<crate::store::Event>>,
    rx: broadcast::Receiver<std::sync::Arc<crate::store::Event>>,
    ns: Option<String>,
    timeout: Duration,
    selectors: std::sync::Arc<crate::selector::Selectors>,
) -> impl Stream<Item = Value> + Send + 'static {
    let deadline = tokio::time::Instant::now() + timeout;
    let initial: Vec<Value> = initial
        .iter()
        .filter_map(|e| selected(e, &selectors))
        .collect();
    let live = stream::unfold(Some((rx, ns)), move |state| {
        let selectors = std::sync::Arc::clone(&selectors);
        async move {
            let (mut rx, ns) = state?;
            loop {
                let Ok(next) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                    return None;
                };
                match next {
                    Ok(e) if ns.as_deref().is_none_or(|n| e.namespace == n) => {
                        match selected(&e, &selectors) {
                            Some(event) => return Some((event, Some((rx, ns)))),
                            None => continue,
                        }
                    }
                    Ok(_) => continue,
                    // This watcher fell behind: tell it, as Kubernetes does, and end the stream.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some((
                            crate::store::expired(
                                "too old resource version: the watch fell behind",
                            ),
                            None,
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    stream::iter(initial).chain(live)
}

async fn create_pod(
    State(s): State<AppState>,
    Path(ns): Path<String>,
    pretty: Pretty,
    body: Body,
) -> Response {
    // Read here, with kube-apiserver's limit (a router-wide `DefaultBodyLimit` layer would
    // wrap every route, and cost every request).
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => return body_rejection(&e, pretty),
    };
    let Ok(object) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a JSON Pod",
            None,
            pretty,
        );
    };
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match s.store.put(&ns, object, None) {
        Ok(pod) => (StatusCode::CREATED, Json(pod)).into_response(),
        Err(e) => store_error(e, &name, pretty),
    }
}

async fn replace_pod(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    pretty: Pretty,
    body: Body,
) -> Response {
    // Read here, with kube-apiserver's limit (a router-wide `DefaultBodyLimit` layer would
    // wrap every route, and cost every request).
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => return body_rejection(&e, pretty),
    };
    let Ok(object) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a JSON Pod",
            None,
            pretty,
        );
    };
    match s.store.put(&ns, object, Some(&name)) {
        Ok(pod) => Json(pod).into_response(),
        Err(e) => store_error(e, &name, pretty),
    }
}

async fn get_pod(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    pretty: Pretty,
) -> Response {
    match s.store.get(&ns, &name) {
        Some(pod) => Json(pod).into_response(),
        None => store_error(StoreError::NotFound, &name, pretty),
    }
}

/// The body (`DeleteOptions`, which kubectl sends) is read before the answer, as
/// kube-apiserver does (see [`self_subject_review`]); its options are not applied.
async fn delete_pod(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    pretty: Pretty,
    body: Body,
) -> Response {
    if let Err(e) = axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        return body_rejection(&e, pretty);
    }
    match s.store.delete(&ns, &name) {
        Ok(pod) => Json(pod).into_response(),
        Err(e) => store_error(e, &name, pretty),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogParams {
    follow: Option<String>,
    tail_lines: Option<usize>,
}

async fn pod_log(
    State(s): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    pretty: Pretty,
    headers: axum::http::HeaderMap,
    query: Result<Query<LogParams>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => return bad_query(&rejection, pretty),
    };
    let Some((lines, followed, rx)) = s.store.logs(&ns, &name, q.tail_lines) else {
        return store_error(StoreError::NotFound, &name, pretty);
    };
    let past = stream::iter(
        lines
            .into_iter()
            .map(|l| Bytes::from(l.as_bytes().to_vec())),
    );
    let body: std::pin::Pin<Box<dyn Stream<Item = Bytes> + Send>> = if truthy(q.follow.as_deref()) {
        let store = s.store.clone();
        // `last`: the number of the last line sent; the live lines up to it were in the
        // backlog, and after a lag the kept lines fill the gap (none is dropped while kept).
        // The follow ends when the pod goes, or is replaced by another of the same name
        // (checked at most once a second, whatever the other pods write).
        let live = stream::unfold(
            (rx, store, ns, name, followed, tokio::time::Instant::now()),
            |(mut rx, store, ns, name, mut followed, mut checked)| async move {
                loop {
                    let next = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
                    if checked.elapsed() >= Duration::from_secs(1) {
                        if !store.is_current(&ns, &name, &followed.uid) {
                            return None;
                        }
                        checked = tokio::time::Instant::now();
                    }
                    match next {
                        Ok(Ok(l))
                            if l.namespace == ns && l.pod == name && l.number > followed.last =>
                        {
                            followed.last = l.number;
                            let line = Bytes::from(l.line.as_bytes().to_vec());
                            return Some((line, (rx, store, ns, name, followed, checked)));
                        }
                        Ok(Ok(_)) | Err(_) => continue,
                        Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                            let (missed, newest) =
                                store.lines_after(&ns, &name, &followed.uid, followed.last)?;
                            followed.last = newest;
                            if missed.is_empty() {
                                continue;
                            }
                            let chunk: String = missed.iter().map(|l| &**l).collect();
                            return Some((
                                Bytes::from(chunk),
                                (rx, store, ns, name, followed, checked),
                            ));
                        }
                        Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    }
                }
            },
        );
        Box::pin(past.chain(live))
    } else {
        Box::pin(past)
    };
    match ws.ok() {
        Some(ws) => websocket(ws, &headers, body),
        None => chunked("text/plain", body),
    }
}

fn chunked(
    content_type: &'static str,
    body: impl Stream<Item = Bytes> + Send + 'static,
) -> Response {
    let mut r = Response::new(Body::from_stream(body.map(Ok::<_, Infallible>)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The subprotocols this server speaks for streams.
pub(crate) const STREAM_PROTOCOLS: [&str; 2] = ["base64.binary.k8s.io", "binary.k8s.io"];

/// The first subprotocol the client offered that this server speaks (Kubernetes' `wsstream`
/// handshake: the client's order decides).
fn chosen_protocol(headers: &axum::http::HeaderMap) -> Option<&'static str> {
    offered_protocols(headers)
        .find_map(|offered| STREAM_PROTOCOLS.into_iter().find(|p| *p == offered))
}

/// The subprotocols the client offered, in its order, empty entries and bearer-token entries
/// left out: the authentication layer removes the token entry when it is what authenticated
/// the request, but a request authenticated otherwise (a bearer header, a client certificate)
/// may still carry one, and a token is never echoed.
fn offered_protocols(headers: &axum::http::HeaderMap) -> impl Iterator<Item = &str> {
    use kube_authn::core::credentials::WEBSOCKET_BEARER_PROTOCOL_PREFIX as TOKEN;
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with(TOKEN))
}

/// Streams `body` over a websocket: binary frames, or base64 text frames with
/// `base64.binary.k8s.io` (what browsers use). The selected protocol is echoed; a token entry
/// never is (it is never among the protocols this server speaks).
fn websocket(
    ws: WebSocketUpgrade,
    headers: &axum::http::HeaderMap,
    body: impl Stream<Item = Bytes> + Send + 'static,
) -> Response {
    ws.protocols(chosen_protocol(headers))
        .on_upgrade(move |socket| send_stream(socket, body))
}

/// A watch over a websocket, as kube-apiserver serves it (`WatchServer.HandleWS` behind
/// `golang.org/x/net/websocket`): each event is a JSON text frame; the subprotocol the client
/// offered (a token entry aside) is echoed when there is exactly one, and more than one is a
/// bad handshake (400).
fn watch_websocket(
    ws: WebSocketUpgrade,
    headers: &axum::http::HeaderMap,
    events: impl Stream<Item = Value> + Send + 'static,
    pretty: Pretty,
) -> Response {
    let offered: Vec<String> = offered_protocols(headers).map(ToOwned::to_owned).collect();
    if offered.len() > 1 {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "websocket: the client offered more than one subprotocol",
            None,
            pretty,
        );
    }
    ws.protocols(offered)
        .on_upgrade(move |mut socket| async move {
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    event = events.next() => {
                        let Some(event) = event else { break };
                        if socket.send(Message::Text(format!("{event}\n").into())).await.is_err() {
                            return;
                        }
                    }
                    // The client sends nothing but a close; stop when it goes away.
                    incoming = socket.recv() => match incoming {
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                        Some(Ok(_)) => {}
                    },
                }
            }
            let _ = socket.send(Message::Close(None)).await;
        })
}

async fn send_stream(mut socket: WebSocket, body: impl Stream<Item = Bytes> + Send + 'static) {
    let base64 = socket
        .protocol()
        .is_some_and(|p| p.as_bytes() == b"base64.binary.k8s.io");
    let mut body = std::pin::pin!(body);
    loop {
        tokio::select! {
            item = body.next() => {
                let Some(bytes) = item else { break };
                let msg = if base64 {
                    Message::Text(base64::engine::general_purpose::STANDARD.encode(&bytes).into())
                } else {
                    Message::Binary(bytes)
                };
                if socket.send(msg).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watch with a selector sees a pod enter its selection as ADDED and leave it as
    /// DELETED (the previous object at the new version), as kube-apiserver's watch cache.
    #[test]
    fn selected_events_follow_the_selection() {
        let pod = |app: &str, rv: &str| json!({"metadata": {"name": "p", "labels": {"app": app}, "resourceVersion": rv}});
        let sel = crate::selector::Selectors::parse(None, Some("app=web")).unwrap();
        let event = |kind, object, previous| crate::store::Event {
            kind,
            namespace: "default".into(),
            resource_version: 2,
            object,
            previous,
        };
        let cases = [
            (
                event("MODIFIED", pod("web", "2"), Some(pod("web", "1"))),
                Some("MODIFIED"),
            ),
            (
                event("MODIFIED", pod("web", "2"), Some(pod("db", "1"))),
                Some("ADDED"),
            ),
            (
                event("MODIFIED", pod("db", "2"), Some(pod("web", "1"))),
                Some("DELETED"),
            ),
            (
                event("MODIFIED", pod("db", "2"), Some(pod("db", "1"))),
                None,
            ),
            (event("ADDED", pod("web", "2"), None), Some("ADDED")),
            (event("ADDED", pod("db", "2"), None), None),
            (event("DELETED", pod("web", "2"), None), Some("DELETED")),
        ];
        for (e, want) in cases {
            let got = selected(&e, &sel);
            assert_eq!(
                got.as_ref().map(|v| v["type"].as_str().unwrap()),
                want,
                "{e:?}"
            );
            if want == Some("DELETED") && e.kind == "MODIFIED" {
                let object = &got.unwrap()["object"];
                assert_eq!(object["metadata"]["labels"]["app"], "web");
                assert_eq!(object["metadata"]["resourceVersion"], "2");
            }
        }
    }

    /// `timeoutSeconds` as kube-apiserver reads it, any int64 (it once panicked the handler
    /// beyond what an `Instant` holds).
    #[test]
    fn watch_timeouts() {
        assert_eq!(watch_timeout(None), DEFAULT_WATCH_TIMEOUT);
        assert_eq!(watch_timeout(Some(0)), DEFAULT_WATCH_TIMEOUT);
        assert_eq!(watch_timeout(Some(5)), Duration::from_secs(5));
        assert_eq!(watch_timeout(Some(-1)), Duration::ZERO);
        assert_eq!(watch_timeout(Some(i64::MIN)), Duration::ZERO);
        assert_eq!(watch_timeout(Some(i64::MAX)), MAX_WATCH_TIMEOUT);
        // The deadline a watch computes from it never overflows.
        let _ = tokio::time::Instant::now() + watch_timeout(Some(i64::MAX));
    }
}
