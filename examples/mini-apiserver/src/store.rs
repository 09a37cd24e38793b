//! The in-memory pod store, its watch events, and the log simulator.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Lines kept per pod.
const MAX_LOG_LINES: usize = 1_000;
/// Watch events kept for `resourceVersion` resumption, and the bytes (JSON) they may hold.
const MAX_HISTORY: usize = 1_000;
const MAX_HISTORY_BYTES: usize = 64 << 20;
/// The pods the store holds at most, and their bytes (JSON): an in-memory demo server with a
/// quota, so that no client can grow it without bound.
pub(crate) const MAX_PODS: usize = 1_000;
pub(crate) const MAX_POD_BYTES: usize = 64 << 20;
/// The largest object stored (etcd's default request limit, 1.5 MiB), as completed by the
/// server.
const MAX_OBJECT_BYTES: usize = 3 << 19;
/// Watch events a slow watcher may leave unread before it is told it fell behind (410). They
/// are shared with the history; the ones the history has dropped stay while a watcher holds
/// them (at most this many, of at most 2 × 1.5 MiB each).
const EVENT_BUFFER: usize = 32;

/// A watch event: `ADDED`, `MODIFIED` or `DELETED` with the object.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) kind: &'static str,
    pub(crate) namespace: String,
    pub(crate) resource_version: u64,
    pub(crate) object: Value,
    /// The object before a `MODIFIED` event: a watch with selectors sees a pod leave (as
    /// `DELETED`) or enter (as `ADDED`) its selection.
    pub(crate) previous: Option<Value>,
}

impl Event {
    pub(crate) fn to_json(&self) -> Value {
        json!({"type": self.kind, "object": self.object})
    }
}

/// The start of a watch: the events before it (the current pods, or those after a resource
/// version), and the receiver of the ones to come.
pub(crate) type Watch = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// The pod a log follower follows: its uid, and the number of the last line it was sent.
#[derive(Clone, Debug)]
pub(crate) struct Followed {
    pub(crate) uid: String,
    pub(crate) last: u64,
}

fn uid_of(pod: &Value) -> String {
    pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A new log line of a pod.
#[derive(Clone, Debug)]
pub(crate) struct LogLine {
    pub(crate) namespace: String,
    pub(crate) pod: String,
    /// The line's number in the pod's log (from 1).
    pub(crate) number: u64,
    pub(crate) line: Arc<str>,
}

struct Pod {
    object: Value,
    /// The object's size as JSON.
    bytes: usize,
    logs: VecDeque<Arc<str>>,
    lines_written: u64,
}

#[derive(Default)]
struct Inner {
    pods: BTreeMap<(String, String), Pod>,
    resource_version: u64,
    history: VecDeque<(Arc<Event>, usize)>,
    history_bytes: usize,
    pod_bytes: usize,
    /// The newest resource version dropped from the history: a watch from an older one
    /// would miss events.
    compacted: u64,
}

/// A watch from a resource version older than the kept history.
#[derive(Debug)]
pub(crate) struct TooOld {
    pub(crate) requested: u64,
    pub(crate) oldest: u64,
}

impl TooOld {
    /// The `ERROR` watch event Kubernetes sends: 410 Expired.
    pub(crate) fn event(&self) -> Value {
        expired(&format!(
            "too old resource version: {} ({})",
            self.requested, self.oldest
        ))
    }
}

/// An `ERROR` watch event with a 410 `Expired` Status.
pub(crate) fn expired(message: &str) -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": "Expired", "code": 410}})
}

/// Why a write was refused.
#[derive(Debug)]
pub(crate) enum StoreError {
    AlreadyExists,
    NotFound,
    /// An update of an object that changed since the client read it (`metadata.resourceVersion`
    /// is not the current one).
    Conflict,
    /// The store's quota of pods (count or bytes) would be exceeded.
    QuotaExceeded {
        used: usize,
    },
    /// The store's quota of bytes would be exceeded (sizes as JSON).
    StorageQuotaExceeded {
        requested: usize,
        used: usize,
    },
    /// The completed object is over [`MAX_OBJECT_BYTES`].
    TooLarge,
    Invalid(&'static str),
    /// The body is not a Pod (a field of the wrong JSON type): Kubernetes' decoding error.
    BadRequest(String),
}

/// Kubernetes' message for a Pod field of the wrong JSON type (Go's `encoding/json`).
fn wrong_type(field: &str, go_type: &str, value: &Value) -> StoreError {
    let got = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    StoreError::BadRequest(format!(
        "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal {got} into \
         Go struct field Pod.{field} of type {go_type}"
    ))
}

/// The pods of every namespace.
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Mutex<Inner>>,
    /// Shared with the history: a receiver's copy of an event is a reference count.
    events: broadcast::Sender<Arc<Event>>,
    logs: broadcast::Sender<LogLine>,
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Formats seconds since the epoch as RFC 3339 UTC (civil-from-days, Howard Hinnant's algorithm).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

impl Store {
    pub(crate) fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (logs, _) = broadcast::channel(4096);
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            events,
            logs,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an event; `bytes` is the size of the objects it holds.
    fn record(
        &self,
        inner: &mut Inner,
        kind: &'static str,
        namespace: &str,
        (object, previous): (Value, Option<Value>),
        bytes: usize,
    ) {
        let event = Arc::new(Event {
            kind,
            namespace: namespace.to_owned(),
            resource_version: inner.resource_version,
            object,
            previous,
        });
        inner.history.push_back((Arc::clone(&event), bytes));
        inner.history_bytes += bytes;
        while inner.history.len() > MAX_HISTORY || inner.history_bytes > MAX_HISTORY_BYTES {
            let Some((dropped, size)) = inner.history.pop_front() else {
                break;
            };
            inner.history_bytes -= size;
            inner.compacted = dropped.resource_version;
        }
        let _ = self.events.send(event);
    }

    /// Lists the pods of a namespace (`None`: of every namespace) and the current resource
    /// version.
    pub(crate) fn list(&self, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .pods
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|n| ns == n))
            .map(|(_, p)| p.object.clone())
            .collect();
        (items, inner.resource_version)
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|p| p.object.clone())
    }

    /// Creates (or with `replace`, updates) a pod from a client's object.
    pub(crate) fn put(
        &self,
        namespace: &str,
        mut object: Value,
        replace: Option<&str>,
    ) -> Result<Value, StoreError> {
        if !object.is_object() {
            return Err(StoreError::Invalid("the body must be a Pod object"));
        }
        // The fields this store writes into must be objects when present (null is absent).
        for (field, go_type) in [
            ("metadata", "v1.ObjectMeta"),
            ("spec", "v1.PodSpec"),
            ("status", "v1.PodStatus"),
        ] {
            match object.get(field) {
                None | Some(Value::Null | Value::Object(_)) => {}
                Some(other) => return Err(wrong_type(field, go_type, other)),
            }
        }
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(ToOwned::to_owned)
            .ok_or(StoreError::Invalid(
                "metadata.name: Required value: name is required",
            ))?;
        if let Some(path_name) = replace
            && path_name != name
        {
            {
                return Err(StoreError::Invalid(
                    "metadata.name: Invalid value: the name of the object does not match the name on the URL",
                ));
            }
        }
        // As kube-apiserver: an object naming another namespace than the request's is refused.
        if let Some(ns) = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            && !ns.is_empty()
            && ns != namespace
        {
            return Err(StoreError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .to_owned(),
            ));
        }
        match object.pointer("/spec/containers").and_then(Value::as_array) {
            None => return Err(StoreError::Invalid("spec.containers: Required value")),
            Some(containers) if containers.is_empty() => {
                return Err(StoreError::Invalid("spec.containers: Required value"));
            }
            Some(containers)
                if containers
                    .iter()
                    .any(|c| c["name"].as_str().is_none_or(str::is_empty)) =>
            {
                return Err(StoreError::Invalid(
                    "spec.containers[].name: Required value",
                ));
            }
            Some(_) => {}
        }
        let mut inner = self.lock();
        let key = (namespace.to_owned(), name.clone());
        let existing = inner.pods.get(&key).map(|p| p.object.clone());
        match (&existing, replace) {
            (Some(_), None) => return Err(StoreError::AlreadyExists),
            (None, Some(_)) => return Err(StoreError::NotFound),
            _ => {}
        }
        // An update with a resourceVersion applies to that version only (optimistic
        // concurrency); without one it applies to the current object.
        if let (Some(old), Some(rv)) = (
            &existing,
            object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|rv| !rv.is_empty()),
        ) && old
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            != Some(rv)
        {
            return Err(StoreError::Conflict);
        }
        // The version this write gets if it is taken (the object is completed first: the
        // quota counts what is stored).
        let rv = inner.resource_version + 1;
        object["apiVersion"] = json!("v1");
        object["kind"] = json!("Pod");
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(namespace);
        meta["resourceVersion"] = json!(rv.to_string());
        match &existing {
            Some(old) => {
                meta["uid"] = old["metadata"]["uid"].clone();
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
            }
            None => {
                meta["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
                meta["creationTimestamp"] = json!(now_rfc3339());
            }
        }
        if object["status"]["phase"].as_str().is_none() {
            object["status"]["phase"] = json!("Running");
        }
        if object["status"]["containerStatuses"].is_null() {
            let statuses: Vec<Value> = object["spec"]["containers"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": format!("{}@sha256:{:064x}", c["image"].as_str().unwrap_or(""), 0), "containerID": format!("containerd://{rv:064x}"), "ready": true, "restartCount": 0, "started": true, "state": {"running": {"startedAt": now_rfc3339()}}}))
                        .collect()
                })
                .unwrap_or_default();
            object["status"]["containerStatuses"] = json!(statuses);
        }
        // Kubernetes' defaults of the fields a field selector may name.
        for (field, default) in [
            ("restartPolicy", "Always"),
            ("schedulerName", "default-scheduler"),
            ("serviceAccountName", "default"),
        ] {
            if object["spec"][field].as_str().is_none_or(str::is_empty) {
                object["spec"][field] = json!(default);
            }
        }
        let bytes = serde_json::to_vec(&object).map_or(usize::MAX, |v| v.len());
        if bytes > MAX_OBJECT_BYTES {
            return Err(StoreError::TooLarge);
        }
        let replaced = inner.pods.get(&key).map_or(0, |p| p.bytes);
        let count = inner.pods.len() + usize::from(existing.is_none());
        if count > MAX_PODS {
            return Err(StoreError::QuotaExceeded {
                used: inner.pods.len(),
            });
        }
        if inner.pod_bytes - replaced + bytes > MAX_POD_BYTES {
            return Err(StoreError::StorageQuotaExceeded {
                requested: bytes,
                used: inner.pod_bytes - replaced,
            });
        }
        inner.resource_version = rv;
        let kind = if existing.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let previous_logs = inner.pods.remove(&key);
        let (logs, lines_written) = previous_logs
            .map(|p| (p.logs, p.lines_written))
            .unwrap_or_default();
        inner.pod_bytes = inner.pod_bytes - replaced + bytes;
        inner.pods.insert(
            key,
            Pod {
                object: object.clone(),
                bytes,
                logs,
                lines_written,
            },
        );
        let previous = existing.map(|old| (old, replaced));
        let event_bytes = bytes + previous.as_ref().map_or(0, |(_, size)| *size);
        self.record(
            &mut inner,
            kind,
            namespace,
            (object.clone(), previous.map(|(old, _)| old)),
            event_bytes,
        );
        Ok(object)
    }

    pub(crate) fn delete(&self, namespace: &str, name: &str) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        let pod = inner
            .pods
            .remove(&(namespace.to_owned(), name.to_owned()))
            .ok_or(StoreError::NotFound)?;
        inner.resource_version += 1;
        inner.pod_bytes -= pod.bytes;
        let mut object = pod.object;
        object["metadata"]["resourceVersion"] = json!(inner.resource_version.to_string());
        self.record(
            &mut inner,
            "DELETED",
            namespace,
            (object.clone(), None),
            pod.bytes,
        );
        Ok(object)
    }

    /// Events of `namespace` (`None`: of every namespace) after `resource_version` that are
    /// still in the history, and a receiver for later ones (subscribed under the same lock, so
    /// none is missed).
    pub(crate) fn watch(
        &self,
        namespace: Option<&str>,
        since: Option<u64>,
    ) -> Result<Watch, TooOld> {
        let inner = self.lock();
        if let Some(rv) = since.filter(|rv| *rv != 0 && *rv < inner.compacted) {
            return Err(TooOld {
                requested: rv,
                oldest: inner.compacted,
            });
        }
        let rx = self.events.subscribe();
        let initial = match since {
            // "0" or absent: the current state as synthetic ADDED events.
            None | Some(0) => inner
                .pods
                .iter()
                .filter(|((ns, _), _)| namespace.is_none_or(|n| ns == n))
                .map(|((ns, _), p)| {
                    Arc::new(Event {
                        kind: "ADDED",
                        namespace: ns.clone(),
                        resource_version: inner.resource_version,
                        object: p.object.clone(),
                        previous: None,
                    })
                })
                .collect(),
            Some(rv) => inner
                .history
                .iter()
                .map(|(e, _)| e)
                .filter(|e| namespace.is_none_or(|n| e.namespace == n) && e.resource_version > rv)
                .cloned()
                .collect(),
        };
        Ok((initial, rx))
    }

    /// The pod's lines so far (the last `tail` if given) and a receiver for new ones.
    pub(crate) fn logs(
        &self,
        namespace: &str,
        name: &str,
        tail: Option<usize>,
    ) -> Option<(Vec<Arc<str>>, Followed, broadcast::Receiver<LogLine>)> {
        let inner = self.lock();
        let pod = inner.pods.get(&(namespace.to_owned(), name.to_owned()))?;
        let skip = tail.map_or(0, |t| pod.logs.len().saturating_sub(t));
        let lines = pod.logs.iter().skip(skip).cloned().collect();
        let followed = Followed {
            uid: uid_of(&pod.object),
            last: pod.lines_written,
        };
        Some((lines, followed, self.logs.subscribe()))
    }

    /// Whether the pod `uid` is still there (not deleted, nor replaced by a new one of the
    /// same name).
    pub(crate) fn is_current(&self, namespace: &str, name: &str, uid: &str) -> bool {
        self.lock()
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .is_some_and(|p| uid_of(&p.object) == uid)
    }

    /// The pod's kept lines after line `after`, with the number of the last one: what a
    /// follower that fell behind the live lines missed (`None` when the pod is gone).
    pub(crate) fn lines_after(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        after: u64,
    ) -> Option<(Vec<Arc<str>>, u64)> {
        let inner = self.lock();
        let pod = inner
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .filter(|p| uid_of(&p.object) == uid)?;
        let missed = usize::try_from(pod.lines_written.saturating_sub(after)).unwrap_or(usize::MAX);
        let skip = pod.logs.len().saturating_sub(missed);
        Some((
            pod.logs.iter().skip(skip).cloned().collect(),
            pod.lines_written,
        ))
    }

    /// Writes one line for every running pod.
    fn tick(&self) {
        let mut inner = self.lock();
        let now = now_rfc3339();
        for ((ns, name), pod) in inner.pods.iter_mut() {
            if pod.object["status"]["phase"] != "Running" {
                continue;
            }
            pod.lines_written += 1;
            let line: Arc<str> = format!("{now} {name}: line {}\n", pod.lines_written).into();
            pod.logs.push_back(Arc::clone(&line));
            if pod.logs.len() > MAX_LOG_LINES {
                pod.logs.pop_front();
            }
            let _ = self.logs.send(LogLine {
                namespace: ns.clone(),
                pod: name.clone(),
                number: pod.lines_written,
                line,
            });
        }
    }

    /// Runs the log simulator until the process ends.
    pub(crate) fn spawn_simulator(&self, every: Duration) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
            loop {
                ticker.tick().await;
                store.tick();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_older_than_the_history_is_expired() {
        let s = Store::new();
        s.put("default", pod_named("p"), None).unwrap();
        for _ in 0..(MAX_HISTORY + 10) {
            s.put("default", pod_named("p"), Some("p")).unwrap();
        }
        let err = s.watch(Some("default"), Some(3)).unwrap_err();
        assert_eq!(err.event()["object"]["code"], 410);
        assert!(s.watch(Some("default"), Some(20)).is_ok());
        assert!(s.watch(Some("default"), Some(0)).is_ok());
    }

    #[test]
    fn fields_of_the_wrong_type_are_refused_and_change_nothing() {
        let s = Store::new();
        s.put("default", pod_named("p"), None).unwrap();
        let bodies = [
            (
                json!({"metadata": {"name": "p2"}, "status": "bogus"}),
                "string into Go struct field Pod.status of type v1.PodStatus",
            ),
            (
                json!({"metadata": {"name": "p2"}, "status": ["x"]}),
                "array into Go struct field Pod.status of type v1.PodStatus",
            ),
            (
                json!({"metadata": {"name": "p2"}, "spec": 1}),
                "number into Go struct field Pod.spec of type v1.PodSpec",
            ),
            (
                json!({"metadata": "p2"}),
                "string into Go struct field Pod.metadata of type v1.ObjectMeta",
            ),
        ];
        for (body, want) in bodies {
            for replace in [None, Some("p")] {
                match s.put("default", body.clone(), replace) {
                    Err(StoreError::BadRequest(m)) => assert!(m.ends_with(want), "{m}"),
                    other => panic!("{body}: {other:?}"),
                }
            }
        }
        assert_eq!(
            s.list(Some("default")).1,
            1,
            "no resource version was spent"
        );
        assert!(s.get("default", "p2").is_none());
        // null is an absent field.
        let mut p3 = pod_named("p3");
        p3["status"] = Value::Null;
        s.put("default", p3, None).unwrap();
    }

    fn pod_named(name: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    }

    /// The store is bounded: MAX_PODS pods, MAX_POD_BYTES of them, the history by count and
    /// bytes; a refused pod changes nothing, and a deleted one frees its room.
    #[test]
    fn the_store_has_a_quota() {
        let s = Store::new();
        for i in 0..MAX_PODS {
            s.put("default", pod_named(&format!("p{i}")), None).unwrap();
        }
        let rv = s.list(Some("default")).1;
        assert!(matches!(
            s.put("default", pod_named("one-more"), None),
            Err(StoreError::QuotaExceeded { used: MAX_PODS })
        ));
        assert_eq!(s.list(Some("default")).1, rv);
        // Updates of existing pods still go through; a deletion makes room.
        s.put("default", pod_named("p0"), Some("p0")).unwrap();
        s.delete("default", "p1").unwrap();
        s.put("default", pod_named("one-more"), None).unwrap();

        // Bytes: a few large pods fill the byte quota before the count.
        let s = Store::new();
        let mut big = pod_named("big0");
        big["metadata"]["annotations"] = json!({"a": "x".repeat(1 << 20)});
        let mut stored = 0;
        for i in 0..100 {
            big["metadata"]["name"] = json!(format!("big{i}"));
            match s.put("default", big.clone(), None) {
                Ok(_) => stored += 1,
                Err(StoreError::StorageQuotaExceeded { .. }) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(
            stored > 0 && stored <= MAX_POD_BYTES / (1 << 20),
            "{stored}"
        );
        {
            let inner = s.lock();
            assert!(inner.pod_bytes <= MAX_POD_BYTES);
        }

        // What is counted is the object as stored: 60,000 containers of a few bytes each
        // become 60,000 generated container statuses, over the object limit.
        let mut many = pod_named("many");
        many["spec"]["containers"] = json!(vec![json!({"name": "c"}); 60_000]);
        assert!(serde_json::to_vec(&many).unwrap().len() < MAX_OBJECT_BYTES);
        assert!(matches!(
            Store::new().put("default", many, None),
            Err(StoreError::TooLarge)
        ));
    }

    /// What a follower that fell behind missed: the kept lines after the last it sent, and
    /// the number of the newest; the live lines carry their numbers.
    #[test]
    fn lines_after_fill_a_followers_gap() {
        let s = Store::new();
        s.put("default", pod_named("p"), None).unwrap();
        let (_, followed, mut rx) = s.logs("default", "p", None).unwrap();
        assert_eq!(followed.last, 0);
        let uid = followed.uid;
        for _ in 0..5 {
            s.tick();
        }
        let numbers: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|l| l.number)
            .collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        let (missed, newest) = s.lines_after("default", "p", &uid, 2).unwrap();
        assert_eq!(newest, 5);
        let ends: Vec<&str> = missed
            .iter()
            .map(|l| l.trim_end().rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(ends, ["3", "4", "5"]);
        // Beyond what is kept: the kept lines only.
        for _ in 0..MAX_LOG_LINES {
            s.tick();
        }
        let (missed, newest) = s.lines_after("default", "p", &uid, 0).unwrap();
        assert_eq!(
            (missed.len(), newest),
            (MAX_LOG_LINES, 5 + MAX_LOG_LINES as u64)
        );
        assert!(s.lines_after("default", "gone", &uid, 0).is_none());
        // A new pod of the same name is another pod: its lines are not the follower's.
        assert!(s.is_current("default", "p", &uid));
        s.delete("default", "p").unwrap();
        assert!(!s.is_current("default", "p", &uid));
        s.put("default", pod_named("p"), None).unwrap();
        assert!(!s.is_current("default", "p", &uid));
        assert!(s.lines_after("default", "p", &uid, 0).is_none());
    }

    #[test]
    fn kubernetes_defaults_are_applied() {
        let s = Store::new();
        let p = s.put("default", pod_named("p"), None).unwrap();
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let mut unnamed = pod_named("q");
        unnamed["spec"]["containers"] = json!([{"image": "busybox"}]);
        assert!(matches!(
            s.put("default", unnamed, None),
            Err(StoreError::Invalid(
                "spec.containers[].name: Required value"
            ))
        ));
    }

    /// As kube-apiserver: no containers is a 422, another namespace in the object a 400, an
    /// update of a version that is not the current one a 409 (and nothing changes).
    #[test]
    fn invalid_and_stale_objects_are_refused() {
        let s = Store::new();
        assert!(matches!(
            s.put("default", json!({"metadata": {"name": "run"}}), None),
            Err(StoreError::Invalid("spec.containers: Required value"))
        ));
        let mut other_ns = pod_named("p");
        other_ns["metadata"]["namespace"] = json!("kube-system");
        assert!(matches!(
            s.put("default", other_ns, None),
            Err(StoreError::BadRequest(m)) if m == "the namespace of the provided object does not match the namespace sent on the request"
        ));
        let created = s.put("default", pod_named("p"), None).unwrap();
        let first = created["metadata"]["resourceVersion"].clone();
        // An update of the current version, then one of the version it replaced.
        let mut update = created.clone();
        update["metadata"]["labels"] = json!({"a": "1"});
        let updated = s.put("default", update.clone(), Some("p")).unwrap();
        assert_ne!(updated["metadata"]["resourceVersion"], first);
        update["metadata"]["labels"] = json!({"a": "2"});
        assert!(matches!(
            s.put("default", update.clone(), Some("p")),
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            s.get("default", "p").unwrap()["metadata"]["labels"]["a"],
            "1"
        );
        // Without a resourceVersion, the update applies to the current object.
        update["metadata"]["resourceVersion"] = json!("");
        assert!(s.put("default", update, Some("p")).is_ok());
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_305_600 + 3_723), "2026-11-22T01:02:03Z");
    }

    #[test]
    fn create_update_delete_emit_events() {
        let s = Store::new();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let created = s.put("default", pod.clone(), None).unwrap();
        assert_eq!(created["metadata"]["resourceVersion"], "1");
        assert_eq!(created["status"]["phase"], "Running");
        assert!(matches!(
            s.put("default", pod.clone(), None),
            Err(StoreError::AlreadyExists)
        ));
        s.put("default", pod.clone(), Some("p")).unwrap();
        s.delete("default", "p").unwrap();
        let (events, _) = s.watch(Some("default"), Some(1)).unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["MODIFIED", "DELETED"]);
        // The update holds the pod as it was before.
        assert_eq!(
            events[0].previous.as_ref().unwrap()["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        assert!(s.list(Some("default")).0.is_empty());
    }
}
