//! [`AuthnConfig`]: the whole authentication policy as a YAML file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The authentication policy: which strategies run, with what files.
///
/// ```yaml
/// # authn.yaml
/// tokenAuthFile: /etc/kube-authn/tokens.csv     # token,user,uid,"group1,group2"
/// basicAuthFile: /etc/kube-authn/passwords.csv  # password,user,uid,"group1,group2"
/// anonymous:
///   enabled: true
///   conditions:                                  # optional: only these exact paths
///   - path: /healthz
/// apiAudiences: []
/// reload: true                                   # hot-reload files (default true)
/// ```
///
/// Unknown fields are refused, so a typo stops the server at start with the reason.
/// Anonymous access is **off** by default in the library (a router without authorization would
/// otherwise serve everyone); the mini API server turns it on, as kube-apiserver does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthnConfig {
    /// Anonymous access.
    pub anonymous: AnonymousConfig,
    /// Static token file (kube-apiserver `--token-auth-file`).
    pub token_auth_file: Option<PathBuf>,
    /// Static password file for HTTP basic (kube-apiserver's former `--basic-auth-file`).
    pub basic_auth_file: Option<PathBuf>,
    /// The server's API audiences (`--api-audiences`).
    pub api_audiences: Vec<String>,
    /// Whether files are watched and hot-reloaded (default true).
    pub reload: Reload,
    /// CA bundle for client certificates (kube-apiserver `--client-ca-file`): the common name
    /// is the user, each organization a group.
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<PathBuf>,
    /// The authenticating proxy (kube-apiserver `--requestheader-*`).
    pub request_header: Option<RequestHeaderFileConfig>,
}

/// The authenticating proxy: identity headers trusted from clients whose certificate verifies
/// against `clientCAFile` (and whose common name is in `allowedNames`, when set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RequestHeaderFileConfig {
    /// The proxy's CA bundle (`--requestheader-client-ca-file`).
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: PathBuf,
    /// Common names allowed to act as the proxy; empty means any (`--requestheader-allowed-names`).
    pub allowed_names: Vec<String>,
    /// Headers with the user name, first non-empty wins (`--requestheader-username-headers`).
    pub username_headers: Vec<String>,
    /// Headers with the uid (`--requestheader-uid-headers`).
    pub uid_headers: Vec<String>,
    /// Headers with groups, every value (`--requestheader-group-headers`).
    pub group_headers: Vec<String>,
    /// Prefixes of extra headers (`--requestheader-extra-headers-prefix`).
    pub extra_headers_prefix: Vec<String>,
}

/// Whether files are hot-reloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reload(pub bool);

impl<'de> Deserialize<'de> for Reload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Reload(plain_bool(d)?.unwrap_or(Reload::default().0)))
    }
}

/// A boolean as Kubernetes reads one from YAML (turned into JSON): a plain `true` or `false`
/// (or YAML 1.1's `yes`, `on`, ...), never a quoted string (`"true"` is a JSON string); null
/// (`~`, or nothing) is `None`, which leaves the default, as JSON's `null` does in Go.
fn plain_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct Plain;
    impl serde::de::Visitor<'_> for Plain {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Option<bool>, E> {
            Ok(Some(v))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Plain)
}

/// [`plain_bool`], null being `false` (the field's default).
fn plain_bool_or_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(plain_bool(d)?.unwrap_or(false))
}

impl Default for Reload {
    fn default() -> Self {
        Self(true)
    }
}

/// Anonymous access (the `anonymous` block of Kubernetes' `AuthenticationConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AnonymousConfig {
    /// Whether requests without credentials are authenticated as `system:anonymous`.
    #[serde(deserialize_with = "plain_bool_or_false")]
    pub enabled: bool,
    /// When non-empty, anonymous access is allowed only for these exact paths.
    pub conditions: Vec<AnonymousCondition>,
}

/// One allowed path for anonymous requests.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct AnonymousCondition {
    /// The exact request path, as the layer sees it (inside axum's `Router::nest`, without
    /// the nest's prefix; see [`Anonymous::with_paths`](crate::core::Anonymous::with_paths)).
    pub path: String,
}

impl AnonymousCondition {
    /// A condition allowing anonymous requests to `path`.
    pub fn new(path: impl Into<String>) -> Self {
        Self { path: path.into() }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("unable to read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown or mistyped fields.
    #[error("invalid configuration {}: {}", path.display(), tidy(source))]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The YAML error (with line and column).
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A semantic error.
    #[error("invalid configuration {}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: &'static str,
    },
}

impl AuthnConfig {
    /// Reads and validates a YAML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(path, &text)
    }

    /// Parses and validates YAML; `path` is only used in messages. Relative file paths in the
    /// configuration are resolved against the directory of `path`.
    pub fn from_yaml(path: impl AsRef<Path>, yaml: &str) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let mut config: AuthnConfig = if yaml.trim().is_empty() {
            AuthnConfig::default()
        } else {
            serde_saphyr::from_str_with_options(yaml, yaml_options()).map_err(|source| {
                ConfigError::Yaml {
                    path: path.to_owned(),
                    source: Box::new(source),
                }
            })?
        };
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        if let Some(dir) = path.parent() {
            let proxy_ca = config
                .request_header
                .as_mut()
                .map(|r| &mut r.client_ca_file);
            for file in [
                &mut config.token_auth_file,
                &mut config.basic_auth_file,
                &mut config.client_ca_file,
            ]
            .into_iter()
            .flatten()
            .chain(proxy_ca)
            {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), &'static str> {
        if !self.anonymous.enabled && !self.anonymous.conditions.is_empty() {
            return Err(
                "anonymous.conditions: Invalid value: enabled should be set to true when conditions are defined",
            );
        }
        if self.anonymous.conditions.iter().any(|c| c.path.is_empty()) {
            return Err("anonymous.conditions[].path: Required value");
        }
        if self
            .request_header
            .as_ref()
            .is_some_and(|r| r.client_ca_file.as_os_str().is_empty())
        {
            return Err("requestHeader.clientCAFile: Required value");
        }
        if self.api_audiences.iter().any(|a| a.is_empty()) {
            return Err("apiAudiences: Invalid value: an audience must not be empty");
        }
        Ok(())
    }
}

/// The YAML error without the parser's advice to its own users.
fn tidy(e: &serde_saphyr::Error) -> String {
    e.to_string()
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
}

/// How the configuration is read: as Kubernetes reads its YAML (`sigs.k8s.io/yaml`, YAML 1.1
/// turned into JSON): a plain `123` or `true` is a number or a boolean, not a string
/// (`tokenAuthFile: 123` is refused, not read as the file `123`); errors on one line, which
/// [`ConfigError`] prefixes with the file.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.no_schema = true;
    options.with_snippet = false;
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_ca_and_request_header() {
        let c = AuthnConfig::from_yaml(
            "/etc/k/authn.yaml",
            "clientCAFile: ca.crt\nrequestHeader:\n  clientCAFile: /p/front-proxy-ca.crt\n  allowedNames: [front-proxy-client]\n  usernameHeaders: [X-Remote-User]\n  groupHeaders: [X-Remote-Group]\n  extraHeadersPrefix: [X-Remote-Extra-]\n",
        )
        .unwrap();
        assert_eq!(
            c.client_ca_file.as_deref(),
            Some(Path::new("/etc/k/ca.crt"))
        );
        let rh = c.request_header.unwrap();
        assert_eq!(rh.client_ca_file, Path::new("/p/front-proxy-ca.crt"));
        assert_eq!(rh.allowed_names, ["front-proxy-client"]);
        let e = AuthnConfig::from_yaml(
            "a.yaml",
            "requestHeader:\n  usernameHeaders: [X-Remote-User]\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("requestHeader.clientCAFile: Required value"),
            "{e}"
        );
    }

    #[test]
    fn parses_the_documented_example() {
        let c = AuthnConfig::from_yaml(
            "/etc/kube-authn/authn.yaml",
            "tokenAuthFile: tokens.csv\nbasicAuthFile: /abs/passwords.csv\nanonymous:\n  enabled: true\n  conditions:\n  - path: /healthz\nreload: false\n",
        )
        .unwrap();
        assert_eq!(
            c.token_auth_file.as_deref(),
            Some(Path::new("/etc/kube-authn/tokens.csv"))
        );
        assert_eq!(
            c.basic_auth_file.as_deref(),
            Some(Path::new("/abs/passwords.csv"))
        );
        assert!(c.anonymous.enabled);
        assert_eq!(
            c.anonymous.conditions,
            [AnonymousCondition::new("/healthz")]
        );
        assert_eq!(c.reload, Reload(false));
    }

    #[test]
    fn empty_file_is_the_default_and_anonymous_is_off() {
        let c = AuthnConfig::from_yaml("a.yaml", "").unwrap();
        assert_eq!(c, AuthnConfig::default());
        assert!(!c.anonymous.enabled);
        assert!(c.reload.0);
    }

    #[test]
    fn refuses_unknown_fields_with_the_reason() {
        let e = AuthnConfig::from_yaml("a.yaml", "tokenFile: x\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("invalid configuration a.yaml:"), "{msg}");
        assert!(msg.contains("tokenFile"), "{msg}");
        assert!(msg.contains("line 1, column 1"), "{msg}");
        // A bad value names its line (and the column of its key).
        let e = AuthnConfig::from_yaml("a.yaml", "reload: true\nanonymous:\n  enabled: maybe\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid configuration a.yaml:") && e.contains("line 3, column 3"),
            "{e}"
        );
    }

    #[test]
    fn refuses_conditions_without_enabled() {
        let e = AuthnConfig::from_yaml("a.yaml", "anonymous:\n  conditions:\n  - path: /x\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("enabled should be set to true when conditions are defined"),
            "{e}"
        );
    }

    #[test]
    fn refuses_wrong_types() {
        let e = AuthnConfig::from_yaml("a.yaml", "anonymous: yes-please\n").unwrap_err();
        assert!(matches!(e, ConfigError::Yaml { .. }), "{e}");
    }

    /// Values are typed as Kubernetes types them (its YAML becomes JSON): plain scalars are
    /// numbers and booleans, quoted ones strings; each refusal is one line naming the file,
    /// line and column.
    #[test]
    fn yaml_values_are_typed_as_kubernetes_types_them() {
        let reload = |yaml: &str| AuthnConfig::from_yaml("dir/a.yaml", yaml).map(|c| c.reload);
        for (yaml, expected) in [
            ("reload: true\n", true),
            ("reload: False\n", false),
            ("reload: yes\n", true),
            ("reload: off\n", false),
        ] {
            assert_eq!(reload(yaml).unwrap(), Reload(expected), "{yaml}");
        }
        let enabled = AuthnConfig::from_yaml("a.yaml", "anonymous:\n  enabled: on\n").unwrap();
        assert!(enabled.anonymous.enabled);
        // Null leaves the default, as JSON's null does in Go.
        for yaml in ["reload: ~\n", "reload:\n", "reload: null\n"] {
            assert_eq!(reload(yaml).unwrap(), Reload(true), "{yaml}");
        }
        let null = AuthnConfig::from_yaml("a.yaml", "anonymous:\n  enabled: ~\n").unwrap();
        assert!(!null.anonymous.enabled);
        for (yaml, message) in [
            (
                "reload: \"yes\"\n",
                "invalid type: string \"yes\", expected a boolean at line 1, column 1",
            ),
            (
                "anonymous:\n  enabled: \"true\"\n",
                "invalid type: string \"true\", expected a boolean at line 2, column 3",
            ),
            (
                "reload: 1\n",
                "invalid type: integer `1`, expected a boolean at line 1, column 1",
            ),
            (
                "tokenAuthFile: 123\n",
                "The string value [123] must be quoted at line 1, column 16",
            ),
            (
                "apiAudiences: [1]\n",
                "The string value [1] must be quoted at line 1, column 16",
            ),
            (
                "tokenAuthFile: a\ntokenAuthFile: b\n",
                "duplicate mapping key: tokenAuthFile at line 2, column 1",
            ),
        ] {
            let err = reload(yaml).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("invalid configuration dir/a.yaml: {message}"),
                "{yaml}"
            );
        }
        // Quoted, a string is a string.
        let c = AuthnConfig::from_yaml("a.yaml", "tokenAuthFile: \"123\"\n").unwrap();
        assert_eq!(c.token_auth_file.as_deref(), Some(Path::new("123")));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_text(text in "\\PC{0,200}") {
            let _ = AuthnConfig::from_yaml("a.yaml", &text);
        }

        #[test]
        fn never_panics_on_yaml_like_text(text in "[a-zA-Z:\\- \n\\[\\]{}\"'#/.,0-9]{0,200}") {
            let _ = AuthnConfig::from_yaml("a.yaml", &text);
        }
    }
}
