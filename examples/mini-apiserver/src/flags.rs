//! Command-line flags, with kube-apiserver's names and meanings.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

/// kube-apiserver's default `--cert-dir`.
pub(crate) const DEFAULT_CERT_DIR: &str = "/var/run/kubernetes";

/// A small kube-apiserver look-alike that authenticates with kube-authn.
#[derive(Debug, Parser)]
#[command(
    name = "mini-apiserver",
    version,
    // As pflag: a flag given twice takes the last value (lists append).
    args_override_self = true,
    about,
    long_about = None,
    after_help = format!(
        "Logs go to stderr. RUST_LOG sets the filter; without it: {} (info, plus why a \
         request got 401 and why a client or proxy certificate was refused, never the \
         credential).",
        crate::DEFAULT_LOG_FILTER
    )
)]
pub(crate) struct Flags {
    /// The port on which to serve HTTPS with authentication and authorization.
    #[arg(long, default_value_t = 6443)]
    pub(crate) secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind_address: IpAddr,
    /// File containing the default x509 certificate for HTTPS (CA cert, if any, concatenated
    /// after server cert). When absent, a self-signed CA and serving certificate are generated
    /// into --cert-dir.
    #[arg(long)]
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// File containing the default x509 private key matching --tls-cert-file.
    #[arg(long)]
    pub(crate) tls_private_key_file: Option<PathBuf>,
    /// The directory where the TLS certs are located (and generated when --tls-cert-file is not given).
    #[arg(long, default_value = DEFAULT_CERT_DIR)]
    pub(crate) cert_dir: PathBuf,
    /// If set, the file will be used to secure the secure port of the API server via token authentication.
    #[arg(long)]
    pub(crate) token_auth_file: Option<PathBuf>,
    /// If set, the file will be used to admit requests to the secure port of the API server via http basic authentication.
    #[arg(long)]
    pub(crate) basic_auth_file: Option<PathBuf>,
    /// Enables anonymous requests to the secure port of the API server. Requests that are not
    /// rejected by another authentication method are treated as anonymous requests. With
    /// --config, refused when the file has an `anonymous` block (the file decides then).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub(crate) anonymous_auth: bool,
    /// The kube-authn YAML configuration (tokenAuthFile, basicAuthFile, clientCAFile,
    /// requestHeader, anonymous, apiAudiences, reload). Anonymous access follows
    /// --anonymous-auth (default true) unless the file has an `anonymous` block.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Identifiers of the API. Tokens authenticated for other audiences only are rejected.
    #[arg(long, value_delimiter = ',')]
    pub(crate) api_audiences: Vec<String>,
    /// How often the log simulator writes a line for each running pod, in milliseconds (not a kube-apiserver flag).
    #[arg(long, default_value_t = 250, hide = true)]
    pub(crate) log_line_interval_ms: u64,

    /// If set, any request presenting a client certificate signed by one of the authorities in
    /// the client-ca-file is authenticated with an identity corresponding to the CommonName of
    /// the client certificate.
    #[arg(long)]
    pub(crate) client_ca_file: Option<PathBuf>,
    /// Root certificate bundle to use to verify client certificates on incoming requests before
    /// trusting usernames in headers specified by --requestheader-username-headers.
    #[arg(long)]
    pub(crate) requestheader_client_ca_file: Option<PathBuf>,
    /// List of client certificate common names to allow to provide usernames in headers
    /// specified by --requestheader-username-headers. If empty, any client certificate
    /// validated by the authorities in --requestheader-client-ca-file is allowed.
    #[arg(long, value_delimiter = ',')]
    pub(crate) requestheader_allowed_names: Vec<String>,
    /// List of request headers to inspect for usernames. X-Remote-User is common.
    #[arg(long, value_delimiter = ',')]
    pub(crate) requestheader_username_headers: Vec<String>,
    /// List of request headers to inspect for UIDs. X-Remote-Uid is suggested.
    #[arg(long, value_delimiter = ',')]
    pub(crate) requestheader_uid_headers: Vec<String>,
    /// List of request headers to inspect for groups. X-Remote-Group is suggested.
    #[arg(long, value_delimiter = ',')]
    pub(crate) requestheader_group_headers: Vec<String>,
    /// List of request header prefixes to inspect. X-Remote-Extra- is suggested.
    #[arg(long, value_delimiter = ',')]
    pub(crate) requestheader_extra_headers_prefix: Vec<String>,

    /// A set of key=value pairs that describe feature gates. This server knows one:
    /// UnauthenticatedHTTP2DOSMitigation=true|false (default true): an HTTP/2 connection that
    /// got a 401, or served an anonymous user, is closed once it is answered.
    /// Given more than once, the settings add up (Kubernetes' `MapStringBool`).
    #[arg(long, value_parser = parse_feature_gates, action = clap::ArgAction::Append)]
    pub(crate) feature_gates: Vec<GateSettings>,

    /// Serves without any authentication layer, as kube-apiserver does with no authenticator
    /// ("Authentication is disabled"): the baseline of the load benchmark (not a kube-apiserver flag).
    #[arg(long, hide = true)]
    pub(crate) disable_authentication: bool,

    #[command(flatten)]
    pub(crate) later: NotYetBuilt,
}

/// A boolean flag's value as Go's `strconv.ParseBool` (what kube-apiserver's flags use) reads it.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {value:?}: invalid syntax"
        )),
    }
}

/// The feature gates this server knows (`--feature-gates`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FeatureGates {
    pub(crate) unauthenticated_http2_dos_mitigation: bool,
}

/// The gates one `--feature-gates` sets, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GateSettings(Vec<(Gate, bool)>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    UnauthenticatedHttp2DosMitigation,
}

impl Flags {
    /// The gates: their defaults, then every `--feature-gates` setting in order.
    pub(crate) fn feature_gates(&self) -> FeatureGates {
        let mut gates = FeatureGates {
            unauthenticated_http2_dos_mitigation: true,
        };
        for &(gate, enabled) in self.feature_gates.iter().flat_map(|s| &s.0) {
            match gate {
                Gate::UnauthenticatedHttp2DosMitigation => {
                    gates.unauthenticated_http2_dos_mitigation = enabled;
                }
            }
        }
        gates
    }
}

/// `--feature-gates` as Kubernetes' `MapStringBool` reads it (comma-separated `Name=bool`,
/// spaces trimmed, values as `strconv.ParseBool`), with its messages; a gate this server does
/// not know is refused as kube-apiserver refuses one it does not know.
fn parse_feature_gates(value: &str) -> Result<GateSettings, String> {
    let mut settings = Vec::new();
    for pair in value.split(',') {
        if pair.trim().is_empty() {
            continue;
        }
        let Some((name, v)) = pair.split_once('=') else {
            return Err("malformed pair, expect string=bool".to_owned());
        };
        let (name, v) = (name.trim(), v.trim());
        let enabled =
            parse_bool(v).map_err(|e| format!("invalid value of {name}={v}, err: {e}"))?;
        let gate = match name {
            "UnauthenticatedHTTP2DOSMitigation" => Gate::UnauthenticatedHttp2DosMitigation,
            _ => return Err(format!("unrecognized feature gate: {name}")),
        };
        settings.push((gate, enabled));
    }
    Ok(GateSettings(settings))
}

impl Flags {
    /// Whether --anonymous-auth was given explicitly (refused when the --config file has an
    /// `anonymous` block; otherwise the flag, default true, decides).
    pub(crate) fn anonymous_auth_given(&self) -> bool {
        given("--anonymous-auth")
    }
}

/// Whether `flag` is on the command line (`--flag value` or `--flag=value`). Arguments that
/// are not UTF-8 (a path) are looked at as bytes: `std::env::args` would panic on them.
pub(crate) fn given(flag: &str) -> bool {
    std::env::args_os().any(|a| {
        let a = a.as_encoded_bytes();
        a == flag.as_bytes()
            || a.strip_prefix(flag.as_bytes())
                .is_some_and(|rest| rest.starts_with(b"="))
    })
}

/// Flags of strategies that are not built yet: accepted by the parser so the message is clear,
/// then refused.
#[derive(Debug, clap::Args)]
pub(crate) struct NotYetBuilt {
    #[arg(long, hide = true)]
    service_account_key_file: Vec<String>,
    #[arg(long, hide = true)]
    service_account_issuer: Vec<String>,
    #[arg(long, hide = true)]
    service_account_signing_key_file: Option<String>,
    /// A boolean in kube-apiserver: also accepted bare.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    service_account_lookup: Option<String>,
    #[arg(long, hide = true)]
    oidc_issuer_url: Option<String>,
    #[arg(long, hide = true)]
    oidc_client_id: Option<String>,
    #[arg(long, hide = true)]
    oidc_username_claim: Option<String>,
    #[arg(long, hide = true)]
    oidc_username_prefix: Option<String>,
    #[arg(long, hide = true)]
    oidc_groups_claim: Option<String>,
    #[arg(long, hide = true)]
    oidc_groups_prefix: Option<String>,
    #[arg(long, hide = true)]
    oidc_ca_file: Option<String>,
    #[arg(long, hide = true)]
    oidc_required_claim: Vec<String>,
    #[arg(long, hide = true)]
    oidc_signing_algs: Option<String>,
    #[arg(long, hide = true)]
    authentication_config: Option<String>,
    #[arg(long, hide = true)]
    authentication_token_webhook_config_file: Option<String>,
    #[arg(long, hide = true)]
    authentication_token_webhook_cache_ttl: Option<String>,
    #[arg(long, hide = true)]
    authentication_token_webhook_version: Option<String>,
    #[arg(long, hide = true)]
    authorization_mode: Option<String>,
    #[arg(long, hide = true)]
    authorization_webhook_config_file: Option<String>,
    #[arg(long, hide = true)]
    authorization_rbac_file: Vec<String>,
    #[arg(long, hide = true)]
    experimental_keystone_url: Option<String>,
    #[arg(long, hide = true)]
    experimental_keystone_ca_file: Option<String>,
}

impl NotYetBuilt {
    /// The first flag given whose strategy is not built yet, with what it needs.
    pub(crate) fn refused(&self) -> Option<(&'static str, &'static str)> {
        let sa = "service-account tokens are not supported yet";
        let oidc = "OIDC is not supported yet";
        let webhook = "webhook token authentication is not supported yet";
        let authz = "authorization is not supported yet: every authenticated user may do everything, anonymous users only read /healthz, /livez, /readyz and /version";
        let keystone = "Keystone is not supported yet";
        let checks = [
            (
                "--service-account-key-file",
                !self.service_account_key_file.is_empty(),
                sa,
            ),
            (
                "--service-account-issuer",
                !self.service_account_issuer.is_empty(),
                sa,
            ),
            (
                "--service-account-signing-key-file",
                self.service_account_signing_key_file.is_some(),
                sa,
            ),
            (
                "--service-account-lookup",
                self.service_account_lookup.is_some(),
                sa,
            ),
            ("--oidc-issuer-url", self.oidc_issuer_url.is_some(), oidc),
            ("--oidc-client-id", self.oidc_client_id.is_some(), oidc),
            (
                "--oidc-username-claim",
                self.oidc_username_claim.is_some(),
                oidc,
            ),
            (
                "--oidc-username-prefix",
                self.oidc_username_prefix.is_some(),
                oidc,
            ),
            (
                "--oidc-groups-claim",
                self.oidc_groups_claim.is_some(),
                oidc,
            ),
            (
                "--oidc-groups-prefix",
                self.oidc_groups_prefix.is_some(),
                oidc,
            ),
            ("--oidc-ca-file", self.oidc_ca_file.is_some(), oidc),
            (
                "--oidc-required-claim",
                !self.oidc_required_claim.is_empty(),
                oidc,
            ),
            (
                "--oidc-signing-algs",
                self.oidc_signing_algs.is_some(),
                oidc,
            ),
            (
                "--authentication-config",
                self.authentication_config.is_some(),
                oidc,
            ),
            (
                "--authentication-token-webhook-config-file",
                self.authentication_token_webhook_config_file.is_some(),
                webhook,
            ),
            (
                "--authentication-token-webhook-cache-ttl",
                self.authentication_token_webhook_cache_ttl.is_some(),
                webhook,
            ),
            (
                "--authentication-token-webhook-version",
                self.authentication_token_webhook_version.is_some(),
                webhook,
            ),
            (
                "--authorization-mode",
                self.authorization_mode.is_some(),
                authz,
            ),
            (
                "--authorization-webhook-config-file",
                self.authorization_webhook_config_file.is_some(),
                authz,
            ),
            (
                "--authorization-rbac-file",
                !self.authorization_rbac_file.is_empty(),
                authz,
            ),
            (
                "--experimental-keystone-url",
                self.experimental_keystone_url.is_some(),
                keystone,
            ),
            (
                "--experimental-keystone-ca-file",
                self.experimental_keystone_ca_file.is_some(),
                keystone,
            ),
        ];
        checks
            .into_iter()
            .find(|(_, given, _)| *given)
            .map(|(f, _, why)| (f, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// Every flag of `NotYetBuilt` (found through clap, so a flag added there without a check,
    /// or a check dropped, fails here) is refused under its own name.
    #[test]
    fn every_flag_of_a_strategy_not_built_is_refused() {
        let command = Flags::command();
        let group = command
            .get_groups()
            .find(|g| g.get_id() == "NotYetBuilt")
            .expect("the flattened group");
        let names: Vec<String> = group.get_args().map(|id| id.to_string()).collect();
        assert_eq!(names.len(), 22, "{names:?}");
        for id in names {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == id.as_str())
                .unwrap();
            let flag = format!("--{}", arg.get_long().unwrap());
            let flags = Flags::try_parse_from(["mini-apiserver", &format!("{flag}=x")])
                .unwrap_or_else(|e| panic!("{flag}: {e}"));
            let refused = flags.later.refused().map(|(f, _)| f);
            assert_eq!(refused, Some(flag.as_str()));
        }
    }

    /// As pflag: a flag given twice takes its last value; list flags append.
    #[test]
    fn the_last_value_of_a_repeated_flag_wins() {
        let flags = Flags::try_parse_from([
            "mini-apiserver",
            "--secure-port=1",
            "--secure-port=2",
            "--anonymous-auth=true",
            "--anonymous-auth=false",
            "--token-auth-file=a.csv",
            "--token-auth-file=b.csv",
            "--api-audiences=x",
            "--api-audiences=y,z",
        ])
        .unwrap();
        assert_eq!(flags.secure_port, 2);
        assert!(!flags.anonymous_auth);
        assert_eq!(
            flags.token_auth_file.as_deref(),
            Some(std::path::Path::new("b.csv"))
        );
        assert_eq!(flags.api_audiences, ["x", "y", "z"]);
    }

    #[test]
    fn feature_gates_are_read_as_kubernetes_reads_them() {
        let gates = |value: &str| {
            Flags::try_parse_from(["mini-apiserver", &format!("--feature-gates={value}")])
                .map(|f| f.feature_gates().unauthenticated_http2_dos_mitigation)
                .map_err(|e| e.to_string())
        };
        let default = Flags::try_parse_from(["mini-apiserver"]).unwrap();
        assert!(default.feature_gates().unauthenticated_http2_dos_mitigation);
        // Repeated: the settings add up, the last one of a gate wins.
        let repeated = Flags::try_parse_from([
            "mini-apiserver",
            "--feature-gates=UnauthenticatedHTTP2DOSMitigation=false",
            "--feature-gates=",
        ])
        .unwrap();
        assert!(
            !repeated
                .feature_gates()
                .unauthenticated_http2_dos_mitigation
        );
        let repeated = Flags::try_parse_from([
            "mini-apiserver",
            "--feature-gates=UnauthenticatedHTTP2DOSMitigation=false",
            "--feature-gates=UnauthenticatedHTTP2DOSMitigation=true",
        ])
        .unwrap();
        assert!(
            repeated
                .feature_gates()
                .unauthenticated_http2_dos_mitigation
        );
        assert_eq!(gates("UnauthenticatedHTTP2DOSMitigation=false"), Ok(false));
        assert_eq!(gates(" UnauthenticatedHTTP2DOSMitigation = F ,"), Ok(false));
        assert_eq!(gates("UnauthenticatedHTTP2DOSMitigation=true"), Ok(true));
        assert_eq!(gates(""), Ok(true));
        for (value, message) in [
            ("Nope=true", "unrecognized feature gate: Nope"),
            (
                "UnauthenticatedHTTP2DOSMitigation",
                "malformed pair, expect string=bool",
            ),
            (
                "UnauthenticatedHTTP2DOSMitigation=maybe",
                "invalid value of UnauthenticatedHTTP2DOSMitigation=maybe, err: strconv.ParseBool: parsing \"maybe\": invalid syntax",
            ),
        ] {
            let err = gates(value).unwrap_err();
            assert!(err.contains(message), "{value}: {err}");
        }
    }

    #[test]
    fn help_names_the_default_log_filter() {
        let help = Flags::command().render_long_help().to_string();
        assert!(help.contains(crate::DEFAULT_LOG_FILTER), "{help}");
    }

    #[test]
    fn anonymous_auth_takes_what_go_parse_bool_takes() {
        let parse =
            |arg: &str| Flags::try_parse_from(["mini-apiserver", arg]).map(|f| f.anonymous_auth);
        for (arg, want) in [
            ("--anonymous-auth", true),
            ("--anonymous-auth=1", true),
            ("--anonymous-auth=t", true),
            ("--anonymous-auth=True", true),
            ("--anonymous-auth=0", false),
            ("--anonymous-auth=F", false),
            ("--anonymous-auth=FALSE", false),
        ] {
            assert_eq!(parse(arg).unwrap(), want, "{arg}");
        }
        assert!(
            Flags::try_parse_from(["mini-apiserver"])
                .unwrap()
                .anonymous_auth
        );
        let err = parse("--anonymous-auth=yes").unwrap_err().to_string();
        assert!(err.contains("invalid syntax"), "{err}");
    }

    #[test]
    fn service_account_lookup_is_a_boolean_flag() {
        for args in [
            &["mini-apiserver", "--service-account-lookup"][..],
            &["mini-apiserver", "--service-account-lookup=false"],
        ] {
            let flags = Flags::try_parse_from(args).unwrap();
            assert_eq!(
                flags.later.refused().map(|(f, _)| f),
                Some("--service-account-lookup")
            );
        }
    }
}
