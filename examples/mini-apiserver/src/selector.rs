//! `fieldSelector` and `labelSelector` of pod lists and watches, as kube-apiserver reads them
//! (`fields.ParseSelector` with the pod field labels, `labels.Parse`). `kubectl get pod NAME
//! -w` watches with `fieldSelector=metadata.name=NAME`; `kubectl get pods -l app=web` lists
//! with `labelSelector=app=web`.

use serde_json::Value;

use crate::policy::{split_term, split_terms, unescape_field_value};

/// The pod fields a field selector may name (Kubernetes' `PodToSelectableFields`, as JSON
/// pointers), absent ones reading as Go's zero value.
const POD_FIELDS: [(&str, &str); 10] = [
    ("metadata.name", "/metadata/name"),
    ("metadata.namespace", "/metadata/namespace"),
    ("spec.nodeName", "/spec/nodeName"),
    ("spec.restartPolicy", "/spec/restartPolicy"),
    ("spec.schedulerName", "/spec/schedulerName"),
    ("spec.serviceAccountName", "/spec/serviceAccountName"),
    ("spec.hostNetwork", "/spec/hostNetwork"),
    ("status.phase", "/status/phase"),
    ("status.podIP", "/status/podIP"),
    ("status.nominatedNodeName", "/status/nominatedNodeName"),
];

/// A field requirement: the field's JSON pointer, `=`/`==` (true) or `!=`, the value.
#[derive(Debug)]
struct Field {
    pointer: &'static str,
    equal: bool,
    value: String,
}

/// A label requirement (`labels.Requirement`).
#[derive(Debug, PartialEq)]
enum Label {
    Exists(String),
    DoesNotExist(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// The selectors of a list or watch request; empty ones select everything.
#[derive(Debug, Default)]
pub(crate) struct Selectors {
    fields: Vec<Field>,
    labels: Vec<Label>,
}

impl Selectors {
    /// Parses both selectors; the error is kube-apiserver's message (a 400).
    pub(crate) fn parse(fields: Option<&str>, labels: Option<&str>) -> Result<Self, String> {
        Ok(Self {
            fields: fields.map(parse_fields).transpose()?.unwrap_or_default(),
            labels: labels.map(parse_labels).transpose()?.unwrap_or_default(),
        })
    }

    /// Whether the pod matches every requirement.
    pub(crate) fn matches(&self, pod: &Value) -> bool {
        self.fields.iter().all(|f| {
            let actual = match pod.pointer(f.pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Null) | None if f.pointer == "/spec/hostNetwork" => "false".into(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == f.value) == f.equal
        }) && self.labels.iter().all(|l| label_matches(l, pod))
    }
}

fn parse_fields(selector: &str) -> Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    for term in split_terms(selector) {
        // `fields.ParseSelector`: an empty term (or selector) requires nothing.
        if term.is_empty() {
            continue;
        }
        let invalid = || format!("invalid selector: '{selector}'; can't understand '{term}'");
        let (key, op, value) = split_term(&term).ok_or_else(invalid)?;
        let value = unescape_field_value(value).ok_or_else(invalid)?;
        let pointer = POD_FIELDS
            .iter()
            .find(|(label, _)| *label == key)
            .map(|(_, pointer)| *pointer)
            .ok_or_else(|| format!("field label not supported: {key}"))?;
        fields.push(Field {
            pointer,
            equal: op != "!=",
            value,
        });
    }
    Ok(fields)
}

/// Splits at commas outside parentheses.
fn split_requirements(selector: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
}

/// A label key as Kubernetes reads one: optional `prefix/`, then name characters.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_labels(selector: &str) -> Result<Vec<Label>, String> {
    let mut labels = Vec::new();
    if selector.trim().is_empty() {
        return Ok(labels);
    }
    for part in split_requirements(selector) {
        let req = part.trim();
        let invalid = || format!("unable to parse requirement: {req:?}");
        let key_then = |key: &str| {
            let key = key.trim();
            valid_key(key).then(|| key.to_owned()).ok_or_else(invalid)
        };
        let label = if let Some(key) = req.strip_prefix('!') {
            Label::DoesNotExist(key_then(key)?)
        } else if let Some((key, rest)) = set_operation(req) {
            let (negated, values) = rest;
            let key = key_then(key)?;
            if negated {
                Label::NotIn(key, values)
            } else {
                Label::In(key, values)
            }
        } else if let Some((key, op, value)) = ["!=", "==", "=", ">", "<"]
            .iter()
            .find_map(|op| req.split_once(op).map(|(k, v)| (k, *op, v.trim())))
        {
            let key = key_then(key)?;
            match op {
                "!=" => Label::NotIn(key, vec![value.to_owned()]),
                "=" | "==" => Label::In(key, vec![value.to_owned()]),
                ">" => Label::GreaterThan(key, value.parse().map_err(|_| invalid())?),
                _ => Label::LessThan(key, value.parse().map_err(|_| invalid())?),
            }
        } else {
            Label::Exists(key_then(req)?)
        };
        labels.push(label);
    }
    Ok(labels)
}

/// `key in (a, b)` or `key notin (a, b)`: the key, and (negated, values).
fn set_operation(req: &str) -> Option<(&str, (bool, Vec<String>))> {
    let open = req.find('(')?;
    let inner = req.get(open + 1..)?.strip_suffix(')')?;
    let head = req.get(..open)?.trim_end();
    let (key, negated) = if let Some(key) = head.strip_suffix(" notin") {
        (key, true)
    } else {
        (head.strip_suffix(" in")?, false)
    };
    let values = inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .collect::<Vec<_>>();
    Some((key, (negated, values)))
}

fn label_matches(label: &Label, pod: &Value) -> bool {
    let get = |key: &str| {
        pod.pointer("/metadata/labels")
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
    };
    match label {
        Label::Exists(k) => get(k).is_some(),
        Label::DoesNotExist(k) => get(k).is_none(),
        Label::In(k, values) => get(k).is_some_and(|v| values.iter().any(|w| w == v)),
        Label::NotIn(k, values) => get(k).is_none_or(|v| values.iter().all(|w| w != v)),
        Label::GreaterThan(k, n) => get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v > *n),
        Label::LessThan(k, n) => get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v < *n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": labels},
               "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn field_selectors() {
        let web = pod("web", json!({}));
        let sel = |s: &str| Selectors::parse(Some(s), None);
        for (selector, want) in [
            ("metadata.name=web", true),
            ("metadata.name==web", true),
            ("metadata.name=db", false),
            ("metadata.name!=db", true),
            ("metadata.name=web,status.phase=Running", true),
            ("metadata.name=web,status.phase=Pending", false),
            ("spec.nodeName=node-1", true),
            ("spec.hostNetwork=false", true),
            ("status.podIP=", true),
            ("", true),
        ] {
            assert_eq!(sel(selector).unwrap().matches(&web), want, "{selector}");
        }
        assert_eq!(
            sel("metadata.labels=x").unwrap_err(),
            "field label not supported: metadata.labels"
        );
        assert!(
            sel("metadata.name")
                .unwrap_err()
                .starts_with("invalid selector")
        );
    }

    #[test]
    fn label_selectors() {
        let web = pod("web", json!({"app": "web", "tier": "front", "n": "5"}));
        let sel = |s: &str| Selectors::parse(None, Some(s));
        for (selector, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app in (web, db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("missing notin (db)", true),
            ("app=web,tier=front", true),
            ("app=web,tier in (back)", false),
            ("n>4", true),
            ("n<4", false),
            ("  ", true),
        ] {
            assert_eq!(sel(selector).unwrap().matches(&web), want, "{selector}");
        }
        assert!(sel("=web").is_err());
        assert!(sel("n>x").is_err());
    }
}
