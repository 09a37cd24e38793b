//! Warnings for the client (`Warning: 299 - "<text>"` response headers), as Kubernetes'
//! `warning.AddWarning` during authentication.

use std::borrow::Cow;

use http::HeaderValue;
use http::request::Parts;

/// Warnings collected while authenticating a request; the layer turns each into a
/// `Warning: 299 - "<text>"` response header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthnWarnings(Vec<Cow<'static, str>>);

impl AuthnWarnings {
    /// The messages, in the order they were added (no duplicates).
    pub fn messages(&self) -> &[Cow<'static, str>] {
        &self.0
    }

    /// The `Warning` header values (agent `-`, as Kubernetes writes them).
    pub fn header_values(&self) -> impl Iterator<Item = HeaderValue> + '_ {
        self.0.iter().filter_map(|m| {
            let escaped = m.replace('\\', "\\\\").replace('"', "\\\"");
            HeaderValue::from_str(&format!("299 - \"{escaped}\"")).ok()
        })
    }
}

/// Adds a warning to the request being authenticated (de-duplicated, as Kubernetes does).
pub fn add_warning(parts: &mut Parts, message: impl Into<Cow<'static, str>>) {
    let message = message.into();
    let warnings = parts.extensions.get_or_insert_default::<AuthnWarnings>();
    if !warnings.0.contains(&message) {
        warnings.0.push(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_deduplicates() {
        let mut parts = http::Request::new(()).into_parts().0;
        add_warning(&mut parts, "a \"quoted\" text");
        add_warning(&mut parts, "a \"quoted\" text");
        let w = parts.extensions.get::<AuthnWarnings>().unwrap();
        let values: Vec<_> = w.header_values().collect();
        assert_eq!(
            values,
            [HeaderValue::from_static("299 - \"a \\\"quoted\\\" text\"")]
        );
    }
}
