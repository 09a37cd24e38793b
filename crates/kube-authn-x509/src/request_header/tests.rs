use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use kube_authn_core::{
    AuthenticateRequest, Authenticated, AuthnFuture, AuthnResult, RequestOutcome, UserInfo,
};
use kube_authn_testing::{Issued, TestPki};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::*;

type Chain = Option<Vec<CertificateDer<'static>>>;

/// 1990-01-01: UnixTime cannot go 100 years back from now as upstream's "future cert" does;
/// any time before the certificates' 2020 notBefore is equivalent.
const BEFORE_2020: u64 = 631_152_000;
use crate::pool::CaPool;
use crate::testing::{at, request_with};

fn bundle(ca: &Issued) -> CaBundle {
    CaBundle::from_pool(CaPool::from_der("front-proxy-ca.crt", vec![ca.cert_der()]).unwrap())
}

fn headers(list: &[(&str, &[&str])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, values) in list {
        for v in *values {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
    }
    map
}

fn run(
    auth: &impl AuthenticateRequest,
    chain: Option<Vec<CertificateDer<'static>>>,
    sent: HeaderMap,
) -> (AuthnResult, HeaderMap) {
    let mut parts = request_with(chain.map(PeerCertificates::new));
    parts.headers = sent;
    let out = auth.authenticate_request(parts).into_ready().ok().unwrap();
    (out.result, out.parts.headers)
}

fn names(map: &HeaderMap) -> Vec<String> {
    let mut v: Vec<String> = map.keys().map(|k| k.as_str().to_owned()).collect();
    v.sort();
    v
}

struct Case {
    name: &'static str,
    config: RequestHeaderConfig,
    sent: HeaderMap,
    want: Option<UserInfo>,
    left: Option<&'static [&'static str]>,
}

fn user(name: &str) -> UserInfo {
    UserInfo::new(name)
}

/// Kubernetes `TestRequestHeader`, every row, through the authenticator with a valid proxy
/// certificate. Rows whose "headers left" upstream does not check have `left: None`.
#[test]
fn test_request_header() {
    let pki = TestPki::shared();
    let extra_headers: &[(&str, &[&str])] = &[
        ("X-Remote-extra-1-key1", &["alfa", "bravo"]),
        ("X-Remote-Extra-1-Key2", &["charlie", "delta"]),
        ("X-Remote-Extra-1-", &["india", "juliet"]),
        ("X-Remote-extra-2-", &["kilo", "lima"]),
        ("X-Remote-extra-2-Key1", &["echo", "foxtrot"]),
        ("X-Remote-Extra-2-key2", &["golf", "hotel"]),
    ];
    let extra_config = RequestHeaderConfig::new()
        .username_headers(["X-Remote-User"])
        .uid_headers(["X-Remote-UID"])
        .group_headers(["X-Remote-Group-1", "X-Remote-Group-2"])
        .extra_headers_prefix(["X-Remote-Extra-1-", "X-Remote-Extra-2-"]);
    let extra_user = {
        let mut u = user("Bob")
            .with_uid("2ca80fb0-6b48-47a3-a8c5-34bd8ad0d87c")
            .with_groups(["one-a", "one-b", "two-a", "two-b"]);
        u.extra = BTreeMap::from([
            (
                "key1".to_owned(),
                strings(&["alfa", "bravo", "echo", "foxtrot"]),
            ),
            (
                "key2".to_owned(),
                strings(&["charlie", "delta", "golf", "hotel"]),
            ),
            (String::new(), strings(&["india", "juliet", "kilo", "lima"])),
        ]);
        u
    };
    let mut extra_sent: Vec<(&str, &[&str])> = vec![
        ("X-Remote-User", &["Bob"]),
        ("X-Remote-Uid", &["2ca80fb0-6b48-47a3-a8c5-34bd8ad0d87c"]),
        ("X-Remote-Group-1", &["one-a", "one-b"]),
        ("X-Remote-Group-2", &["two-a", "two-b"]),
    ];
    extra_sent.extend_from_slice(extra_headers);
    let mut unrelated_sent = extra_sent.clone();
    unrelated_sent.push(("X-Group-Remote", &["snorlax"]));
    unrelated_sent.push(("X-Group-Bear", &["panda"]));

    let escaped = escaped_headers();
    let mut escaped_sent: Vec<(&str, &[&str])> = vec![("X-Remote-User", &["Bob"])];
    escaped_sent.extend(
        escaped
            .iter()
            .map(|(h, v, _)| (*h, std::slice::from_ref(v))),
    );
    let escaped_user = {
        let mut u = user("Bob");
        u.extra = escaped
            .iter()
            .map(|(_, v, key)| ((*key).to_owned(), vec![(*v).to_owned()]))
            .collect();
        u
    };

    let cases = vec![
        Case {
            name: "empty",
            config: RequestHeaderConfig::new(),
            sent: headers(&[]),
            want: None,
            left: None,
        },
        Case {
            name: "user no match",
            config: RequestHeaderConfig::new().username_headers(["X-Remote-User"]),
            sent: headers(&[]),
            want: None,
            left: None,
        },
        Case {
            name: "user match",
            config: RequestHeaderConfig::new().username_headers(["X-Remote-User"]),
            sent: headers(&[("X-Remote-User", &["Bob"])]),
            want: Some(user("Bob")),
            left: Some(&[]),
        },
        Case {
            name: "user exact match",
            config: RequestHeaderConfig::new().username_headers(["X-Remote-User"]),
            sent: headers(&[
                ("Prefixed-X-Remote-User-With-Suffix", &["Bob"]),
                ("X-Remote-User-With-Suffix", &["Bob"]),
            ]),
            want: None,
            left: None,
        },
        Case {
            name: "user first match",
            config: RequestHeaderConfig::new().username_headers([
                "X-Remote-User",
                "A-Second-X-Remote-User",
                "Another-X-Remote-User",
            ]),
            sent: headers(&[
                ("X-Remote-User", &["", "First header, second value"]),
                (
                    "A-Second-X-Remote-User",
                    &["Second header, first value", "Second header, second value"],
                ),
                ("Another-X-Remote-User", &["Third header, first value"]),
            ]),
            want: Some(user("Second header, first value")),
            left: Some(&[]),
        },
        Case {
            name: "user case-insensitive",
            config: RequestHeaderConfig::new().username_headers(["x-REMOTE-user"]),
            sent: headers(&[("X-Remote-User", &["Bob"])]),
            want: Some(user("Bob")),
            left: Some(&[]),
        },
        Case {
            name: "groups none",
            config: RequestHeaderConfig::new()
                .username_headers(["X-Remote-User"])
                .group_headers(["X-Remote-Group"]),
            sent: headers(&[("X-Remote-User", &["Bob"])]),
            want: Some(user("Bob")),
            left: Some(&[]),
        },
        Case {
            name: "groups all matches",
            config: RequestHeaderConfig::new()
                .username_headers(["X-Remote-User"])
                .group_headers(["X-Remote-Group-1", "X-Remote-Group-2"]),
            sent: headers(&[
                ("X-Remote-User", &["Bob"]),
                ("X-Remote-Group-1", &["one-a", "one-b"]),
                ("X-Remote-Group-2", &["two-a", "two-b"]),
            ]),
            want: Some(user("Bob").with_groups(["one-a", "one-b", "two-a", "two-b"])),
            left: Some(&[]),
        },
        Case {
            name: "groups case-insensitive",
            config: RequestHeaderConfig::new()
                .username_headers(["X-REMOTE-User"])
                .group_headers(["X-REMOTE-Group"]),
            sent: headers(&[("X-Remote-User", &["Bob"]), ("X-Remote-Group", &["Users"])]),
            want: Some(user("Bob").with_groups(["Users"])),
            left: Some(&[]),
        },
        Case {
            name: "uid none",
            config: RequestHeaderConfig::new()
                .username_headers(["X-Remote-User"])
                .uid_headers(["X-Remote-Uid"]),
            sent: headers(&[("X-Remote-User", &["Bob"])]),
            want: Some(user("Bob")),
            left: Some(&[]),
        },
        Case {
            name: "uid exact match",
            config: RequestHeaderConfig::new()
                .username_headers(["X-Remote-User"])
                .uid_headers(["X-Remote-Uid"]),
            sent: headers(&[
                ("X-Remote-User", &["Bob"]),
                ("X-Remote-Uid-1", &["8f5ea9d1-a5ed-4d02-80a2-26709216350b"]),
                ("X-Remote-Uid-2", &["c7644180-6d5a-4c3a-a7b8-7a1b7ca6d6f4"]),
            ]),
            want: Some(user("Bob")),
            left: Some(&["x-remote-uid-1", "x-remote-uid-2"]),
        },
        Case {
            name: "uid first match",
            config: RequestHeaderConfig::new()
                .username_headers(["X-Remote-User"])
                .uid_headers(["X-Remote-Uid-1", "X-Remote-Uid-2"]),
            sent: headers(&[
                ("X-Remote-User", &["Bob"]),
                ("X-Remote-Uid-1", &["8f5ea9d1-a5ed-4d02-80a2-26709216350b"]),
                ("X-Remote-Uid-2", &["c7644180-6d5a-4c3a-a7b8-7a1b7ca6d6f4"]),
            ]),
            want: Some(user("Bob").with_uid("8f5ea9d1-a5ed-4d02-80a2-26709216350b")),
            left: Some(&[]),
        },
        Case {
            name: "extra prefixes case-insensitive",
            config: extra_config.clone(),
            sent: headers(&extra_sent),
            want: Some(extra_user.clone()),
            left: Some(&[]),
        },
        Case {
            name: "extra prefixes case-insensitive with unrelated headers",
            config: extra_config,
            sent: headers(&unrelated_sent),
            want: Some(extra_user),
            left: Some(&["x-group-bear", "x-group-remote"]),
        },
        Case {
            name: "escaped extra keys",
            config: RequestHeaderConfig::new()
                .username_headers(["X-Remote-User"])
                .extra_headers_prefix(["X-Remote-Extra-"]),
            sent: headers(&escaped_sent),
            want: Some(escaped_user),
            left: Some(&[]),
        },
    ];
    for case in cases {
        let auth =
            RequestHeaderAuthenticator::new(bundle(&pki.front_proxy_ca), &case.config).unwrap();
        let (result, left) = run(&auth, Some(pki.proxy_client.chain()), case.sent);
        let got = result.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(got.map(|a| a.user), case.want, "{}", case.name);
        if let Some(left_names) = case.left {
            assert_eq!(names(&left), left_names, "{}", case.name);
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The "escaped extra keys" header set: (header, value, expected key).
fn escaped_headers() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("X-Remote-Extra-Alpha", "alphabetical", "alpha"),
        (
            "X-Remote-Extra-Alph4num3r1c",
            "alphanumeric",
            "alph4num3r1c",
        ),
        (
            "X-Remote-Extra-Percent%20encoded",
            "percent encoded",
            "percent encoded",
        ),
        (
            "X-Remote-Extra-Almost%zzpercent%xxencoded",
            "not credible",
            "almost%zzpercent%xxencoded",
        ),
        (
            "X-Remote-Extra-Example.com%2fpercent%2520encoded",
            "Legit domain with percent encoding",
            "example.com/percent%20encoded",
        ),
        (
            "X-Remote-Extra-Example.com%2F%E4%BB%8A%E6%97%A5%E3%81%AF",
            "UTF-8",
            "example.com/今日は",
        ),
    ]
}

/// Go reads header bytes as they are, so a username header whose value is not UTF-8 still
/// decides: a later username header (which the proxy may have passed through from its client)
/// must not win. The same holds for uid; group and extra values are kept, not dropped.
#[test]
fn values_that_are_not_utf8_still_count_where_they_stand() {
    let pki = TestPki::shared();
    let config = RequestHeaderConfig::new()
        .username_headers(["X-Remote-User", "X-Forwarded-User"])
        .uid_headers(["X-Remote-Uid", "X-Forwarded-Uid"])
        .group_headers(["X-Remote-Group"])
        .extra_headers_prefix(["X-Remote-Extra-"]);
    let auth = RequestHeaderAuthenticator::new(bundle(&pki.front_proxy_ca), &config).unwrap();
    let mut sent = headers(&[
        ("X-Forwarded-User", &["admin"]),
        ("X-Forwarded-Uid", &["0"]),
        ("X-Remote-Group", &["devs"]),
    ]);
    let latin1 = |b: &'static [u8]| HeaderValue::from_bytes(b).unwrap();
    sent.insert("x-remote-user", latin1(b"jos\xe9"));
    sent.insert("x-remote-uid", latin1(b"u\xff"));
    sent.append("x-remote-group", latin1(b"caf\xe9"));
    sent.append("x-remote-extra-scope", latin1(b"\xfe"));
    let (result, _) = run(&auth, Some(pki.proxy_client.chain()), sent);
    let user = result.unwrap().unwrap().user;
    assert_eq!(user.username, "jos\u{FFFD}");
    assert_eq!(user.uid, "u\u{FFFD}");
    assert_eq!(user.groups, ["devs", "caf\u{FFFD}"]);
    assert_eq!(user.extra["scope"], ["\u{FFFD}"]);
}

/// The last "escaped extra keys" row, ``X-Remote-Extra-Abc123!#$+.-_*\^`~|'``, holds a `\`,
/// which is not a valid HTTP header name character (`http::HeaderName` refuses it, Go's
/// test builds the header map by hand): its key mapping is checked on the suffix.
#[test]
fn escaped_extra_key_with_backslash() {
    assert!(HeaderName::from_bytes(b"X-Remote-Extra-Abc123!#$+.-_*\\^`~|'").is_err());
    let suffix = "abc123!#$+.-_*\\^`~|'";
    assert_eq!(extract::path_unescape(suffix).as_deref(), Some(suffix));
}

/// Kubernetes `TestX509Verifier`: the wrapped "inner" authenticator is the header reader,
/// returning "innerauth" from `X-Remote-User`. Certificates as in `TestX509` (see
/// `x509::tests::test_x509`): the CA is the client CA of the test PKI.
#[test]
fn test_x509_verifier() {
    let pki = TestPki::shared();
    let now = UnixTime::now().as_secs();
    let hundred_years = 100 * 365 * 86_400;
    let config = RequestHeaderConfig::new().username_headers(["X-Remote-User"]);
    let auth = |allowed: &[&str]| {
        RequestHeaderAuthenticator::new(
            bundle(&pki.client_ca),
            &config.clone().allowed_names(allowed.iter().copied()),
        )
        .unwrap()
    };
    enum Want {
        NoOpinion,
        Inner,
        Error(&'static str),
    }
    let cases: Vec<(
        &str,
        RequestHeaderAuthenticator,
        Option<Vec<CertificateDer<'static>>>,
        Want,
    )> = vec![
        ("non-tls", auth(&[]), None, Want::NoOpinion),
        ("tls, no certs", auth(&[]), Some(vec![]), Want::NoOpinion),
        (
            "self signed",
            auth(&[]),
            Some(pki.self_signed.chain()),
            Want::Error("x509: certificate signed by unknown authority"),
        ),
        (
            "server cert disallowed",
            auth(&[]),
            Some(pki.server_only.chain()),
            Want::Error("x509: certificate specifies an incompatible key usage"),
        ),
        (
            "server cert allowing non-client usages",
            auth(&[]).required_usage(RequiredUsage::ServerAuth),
            Some(pki.server_only.chain()),
            Want::Inner,
        ),
        (
            "valid client cert",
            auth(&[]),
            Some(pki.client_cn.chain()),
            Want::Inner,
        ),
        (
            "valid client cert with wrong CN",
            auth(&["foo", "bar"]),
            Some(pki.client_cn.chain()),
            Want::Error("x509: subject with cn=client_cn is not in the allowed list"),
        ),
        (
            "valid client cert with right CN",
            auth(&["client_cn"]),
            Some(pki.client_cn.chain()),
            Want::Inner,
        ),
        (
            "future cert",
            auth(&[]).clock(at(BEFORE_2020)),
            Some(pki.client_cn.chain()),
            Want::Error("x509: certificate has expired or is not yet valid"),
        ),
        (
            "expired cert",
            auth(&[]).clock(at(now + hundred_years)),
            Some(pki.client_cn.chain()),
            Want::Error("x509: certificate has expired or is not yet valid"),
        ),
        (
            "multi-level, valid",
            auth(&[]),
            Some(pki.via_intermediate.chain()),
            Want::Inner,
        ),
        (
            "multi-level, expired",
            auth(&[]),
            Some(crate::testing::expired_below_the_intermediate(pki).chain()),
            Want::Error("is after 1990-12-31T23:59:59Z"),
        ),
        // Beyond the upstream table.
        (
            "multi-level, every certificate of the chain expired",
            auth(&[]).clock(at(now + hundred_years)),
            Some(pki.via_intermediate.chain()),
            Want::Error("x509: certificate has expired or is not yet valid"),
        ),
    ];
    for (name, auth, chain, want) in cases {
        let (result, left) = run(&auth, chain, headers(&[("X-Remote-User", &["innerauth"])]));
        assert!(
            left.get("x-remote-user").is_none(),
            "{name}: header stripped"
        );
        match (want, result) {
            (Want::NoOpinion, Ok(None)) => {}
            (Want::Inner, Ok(Some(a))) => assert_eq!(a.user, user("innerauth"), "{name}"),
            (Want::Error(msg), Err(e)) => {
                assert!(e.to_string().contains(msg), "{name}: {e}");
            }
            (_, got) => panic!("{name}: unexpected {got:?}"),
        }
    }
}

/// Spoofed identity headers never pass: without a proxy certificate, with a certificate of
/// another CA (here a valid user certificate of the client CA) and with a proxy certificate
/// whose CN is not allowed, the headers are removed and nobody is authenticated.
#[test]
fn spoofed_headers_are_removed() {
    let pki = TestPki::shared();
    let config = RequestHeaderConfig::delegated_defaults()
        .uid_headers(["X-Remote-Uid"])
        .allowed_names(["front-proxy-client"]);
    let auth = RequestHeaderAuthenticator::new(bundle(&pki.front_proxy_ca), &config).unwrap();
    let spoof = || {
        headers(&[
            ("X-Remote-User", &["system:admin"]),
            ("X-Remote-Uid", &["0"]),
            ("X-Remote-Group", &["system:masters"]),
            ("X-Remote-Extra-Scopes", &["all"]),
            ("Accept", &["*/*"]),
        ])
    };
    // The proxy's own CA and allowed name, only expired.
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    let expired_proxy = pki
        .issue_client_by(
            &pki.front_proxy_ca,
            "expired-proxy",
            "front-proxy-client",
            &[],
            now - 30 * day,
            now - day,
        )
        .unwrap();
    let cases: Vec<(&str, Chain, Option<&str>)> = vec![
        ("no certificate", None, None),
        ("empty chain", Some(vec![]), None),
        (
            "certificate of the client CA",
            Some(pki.jbeda.chain()),
            Some("x509: certificate signed by unknown authority"),
        ),
        (
            "proxy CA but CN not allowed",
            Some(pki.proxy_not_allowed.chain()),
            Some("x509: subject with cn=not-allowed-proxy is not in the allowed list"),
        ),
        (
            "expired certificate",
            Some(expired_proxy.chain()),
            Some("x509: certificate has expired or is not yet valid"),
        ),
        (
            "an allowed CN followed by an unreadable CN",
            Some(
                pki.issue_with_unreadable_cn(
                    "odd-proxy",
                    &pki.front_proxy_ca,
                    "front-proxy-client",
                )
                .unwrap()
                .chain(),
            ),
            Some("x509: malformed certificate"),
        ),
    ];
    for (name, chain, error) in cases {
        let (result, left) = run(&auth, chain, spoof());
        assert_eq!(names(&left), ["accept"], "{name}");
        match (error, result) {
            (None, Ok(None)) => {}
            (Some(msg), Err(e)) => assert!(e.to_string().contains(msg), "{name}: {e}"),
            (_, got) => panic!("{name}: unexpected {got:?}"),
        }
    }
    let (result, left) = run(&auth, Some(pki.proxy_client.chain()), spoof());
    let mut want = user("system:admin")
        .with_uid("0")
        .with_groups(["system:masters"]);
    want.extra.insert("scopes".into(), vec!["all".into()]);
    assert_eq!(result.unwrap().unwrap().user, want);
    assert_eq!(names(&left), ["accept"]);
    assert_eq!(auth.verifications(), 5, "one verification per connection");
}

struct Panda;

impl AuthenticateRequest for Panda {
    fn authenticate_request(
        &self,
        parts: kube_authn_core::RequestHead,
    ) -> AuthnFuture<RequestOutcome> {
        AuthnFuture::ready(RequestOutcome::new(
            parts,
            Ok(Some(Authenticated::new(UserInfo::new("panda")))),
        ))
    }
}

/// Kubernetes `TestAuthenticateRequestClearHeaders`: after a successful authentication by
/// another authenticator, the standard and the configured proxy headers are gone.
#[test]
fn test_authenticate_request_clear_headers() {
    let six_extras: &[(&str, &[&str])] = &[
        ("X-Remote-Extra-1-Key1", &["alfa", "bravo"]),
        ("X-Remote-Extra-1-Key2", &["charlie", "delta"]),
        ("X-Remote-Extra-1-", &["india", "juliet"]),
        ("X-Remote-extra-2-", &["kilo", "lima"]),
        ("X-Remote-extra-2-Key1", &["echo", "foxtrot"]),
        ("X-Remote-Extra-2-key2", &["golf", "hotel"]),
    ];
    let with_extras = |base: &[(&'static str, &'static [&'static str])]| {
        let mut v: Vec<(&str, &[&str])> = base.to_vec();
        v.extend_from_slice(six_extras);
        headers(&v)
    };
    let escaped = escaped_headers();
    let mut escaped_sent: Vec<(&str, &[&str])> = vec![("X-Remote-User", &["Bob"])];
    escaped_sent.extend(
        escaped
            .iter()
            .map(|(h, v, _)| (*h, std::slice::from_ref(v))),
    );

    let cases: Vec<(&str, RequestHeaderConfig, HeaderMap, &[&str])> = vec![
        (
            "user match",
            RequestHeaderConfig::new()
                .username_headers(["X-Remote-User"])
                .uid_headers(["X-Remote-Uid"])
                .group_headers(["X-Remote-Group-1", "X-Remote-Group-2"])
                .extra_headers_prefix(["X-Remote-Extra-1-", "X-Remote-Extra-2-"]),
            with_extras(&[
                ("X-Group-Remote", &["snorlax"]),
                ("X-Group-Bear", &["panda"]),
                ("X-Uid-Remote", &["bobs-unrelated-uid"]),
                ("X-Remote-User", &["Bob"]),
                ("X-Remote-Uid", &["bobs-uid"]),
                ("X-Remote-Group-1", &["one-a", "one-b"]),
                ("X-Remote-Group-2", &["two-a", "two-b"]),
            ]),
            &["x-group-bear", "x-group-remote", "x-uid-remote"],
        ),
        (
            "custom names, standard headers",
            RequestHeaderConfig::new()
                .username_headers(["foo"])
                .uid_headers(["footoo"])
                .group_headers(["bar"])
                .extra_headers_prefix(["baz"]),
            with_extras(&[
                ("X-Remote-User", &["Bob"]),
                ("X-Remote-Uid", &["bobs-uid"]),
                ("X-Remote-Group-1", &["one-a", "one-b"]),
                ("X-Remote-Group-2", &["two-a", "two-b"]),
            ]),
            &["x-remote-group-1", "x-remote-group-2"],
        ),
        (
            "custom names, custom and standard headers",
            RequestHeaderConfig::new()
                .username_headers(["one"])
                .uid_headers(["onetoo"])
                .group_headers(["two"])
                .extra_headers_prefix(["three-"]),
            with_extras(&[
                ("X-Remote-User", &["Bob"]),
                ("X-Remote-Uid", &["bobs-uid"]),
                ("X-Remote-Group-3", &["one-a", "one-b"]),
                ("X-Remote-Group-4", &["two-a", "two-b"]),
                ("One", &["one-header"]),
                ("Two", &["two-header"]),
                ("Three-Four", &["three-four-header"]),
            ]),
            &["x-remote-group-3", "x-remote-group-4"],
        ),
        (
            "escaped extra keys",
            RequestHeaderConfig::standard(),
            headers(&escaped_sent),
            &[],
        ),
    ];
    for (name, config, sent, left) in cases {
        let auth = ClearAuthenticationHeaders::new(Panda, Some(&config)).unwrap();
        let (result, remaining) = run(&auth, None, sent);
        assert_eq!(result.unwrap().unwrap().user.username, "panda", "{name}");
        assert_eq!(names(&remaining), left, "{name}");
    }
}

#[test]
fn clear_headers_also_after_an_asynchronous_authenticator() {
    struct Later;
    impl AuthenticateRequest for Later {
        fn authenticate_request(
            &self,
            parts: kube_authn_core::RequestHead,
        ) -> AuthnFuture<RequestOutcome> {
            AuthnFuture::boxed(async move { RequestOutcome::no_opinion(parts) })
        }
    }
    let auth = ClearAuthenticationHeaders::new(Later, None).unwrap();
    let mut parts = request_with(None);
    parts.headers = headers(&[("X-Remote-User", &["mallory"]), ("Accept", &["*/*"])]);
    let fut = auth.authenticate_request(parts);
    let out = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(fut);
    assert_eq!(names(&out.parts.headers), ["accept"]);
}
