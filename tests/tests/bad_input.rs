//! Every malformed credential form over real TLS: either a 401 with the Status body, or ignored
//! (the request is then anonymous) exactly where Kubernetes ignores it. Never a 500.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use base64::Engine;
use kube_authn_e2e::{Server, UNAUTHORIZED, raw_request, write_file};

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_file(dir.path(), "tokens.csv", "token1,alice,1\n");
    let passwords = write_file(dir.path(), "passwords.csv", "s3cret,carol,3\n");
    Server::start_in(
        dir,
        &[
            &format!("--token-auth-file={tokens}"),
            &format!("--basic-auth-file={passwords}"),
        ],
    )
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[derive(Debug, PartialEq)]
enum Want {
    /// Authenticated as this user.
    User(&'static str),
    /// No credential: anonymous.
    Anonymous,
    /// 401 with the Status body.
    Unauthorized,
}

/// GET /apis/.../selfsubjectreviews is POST; use a path anonymous may read and ask the
/// server who it saw through the SelfSubjectReview for authenticated users.
async fn check(s: &Server, name: &str, headers: &[u8], want: Want) {
    // POST whoami: authenticated -> 201 with the user; anonymous -> 403 (policy); bad -> 401
    let mut req = b"POST /apis/authentication.k8s.io/v1/selfsubjectreviews HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 2\r\n".to_vec();
    req.extend_from_slice(headers);
    req.extend_from_slice(b"\r\n{}");
    let (status, head, body) = raw_request(s, &req).await;
    assert_ne!(status, 500, "{name}: {head}\n{body}");
    match want {
        Want::User(u) => {
            assert_eq!(status, 201, "{name}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"]["userInfo"]["username"], u, "{name}");
        }
        Want::Anonymous => {
            assert_eq!(status, 403, "{name}: {body}");
            assert!(body.contains("system:anonymous"), "{name}: {body}");
        }
        Want::Unauthorized => {
            assert_eq!(status, 401, "{name}: {body}");
            assert_eq!(body, UNAUTHORIZED, "{name}");
        }
    }
}

#[tokio::test]
async fn malformed_authorization_headers() {
    let s = server();
    let long = format!("Authorization: Bearer {}\r\n", "x".repeat(8000));
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        (
            "valid bearer",
            b"Authorization: Bearer token1\r\n".to_vec(),
            Want::User("alice"),
        ),
        (
            "scheme in any case",
            b"Authorization: bEaReR token1\r\n".to_vec(),
            Want::User("alice"),
        ),
        (
            "value after the token is ignored",
            b"Authorization: Bearer token1 trailing junk\r\n".to_vec(),
            Want::User("alice"),
        ),
        (
            "bearer without token",
            b"Authorization: Bearer\r\n".to_vec(),
            Want::Anonymous,
        ),
        (
            "bearer with only spaces",
            b"Authorization: Bearer    \r\n".to_vec(),
            Want::Anonymous,
        ),
        (
            "two spaces before the token",
            b"Authorization: Bearer  token1\r\n".to_vec(),
            Want::Anonymous,
        ),
        (
            "tab separator",
            b"Authorization: Bearer\ttoken1\r\n".to_vec(),
            Want::Anonymous,
        ),
        (
            "colon after scheme",
            b"Authorization: Bearer: token1\r\n".to_vec(),
            Want::Anonymous,
        ),
        (
            "empty header",
            b"Authorization: \r\n".to_vec(),
            Want::Anonymous,
        ),
        (
            "unknown scheme",
            b"Authorization: Negotiate abc\r\n".to_vec(),
            Want::Anonymous,
        ),
        (
            "unknown token",
            b"Authorization: Bearer nope\r\n".to_vec(),
            Want::Unauthorized,
        ),
        ("very long token", long.into_bytes(), Want::Unauthorized),
        (
            "non-utf8 token",
            b"Authorization: Bearer \xff\xfe\r\n".to_vec(),
            Want::Unauthorized,
        ),
        (
            "first header only",
            b"Authorization: Negotiate abc\r\nAuthorization: Bearer token1\r\n".to_vec(),
            Want::Anonymous,
        ),
        (
            "bad first header wins",
            b"Authorization: Bearer nope\r\nAuthorization: Bearer token1\r\n".to_vec(),
            Want::Unauthorized,
        ),
        (
            "valid basic",
            format!("Authorization: Basic {}\r\n", b64(b"carol:s3cret")).into_bytes(),
            Want::User("carol"),
        ),
        (
            "basic wrong password",
            format!("Authorization: Basic {}\r\n", b64(b"carol:nope")).into_bytes(),
            Want::Unauthorized,
        ),
        (
            "basic unknown user",
            format!("Authorization: Basic {}\r\n", b64(b"eve:s3cret")).into_bytes(),
            Want::Unauthorized,
        ),
        (
            "basic empty password",
            format!("Authorization: Basic {}\r\n", b64(b"carol:")).into_bytes(),
            Want::Unauthorized,
        ),
        (
            "basic non-utf8",
            format!("Authorization: Basic {}\r\n", b64(b"car\xffol:s3cret")).into_bytes(),
            Want::Unauthorized,
        ),
        (
            "basic without colon",
            format!("Authorization: Basic {}\r\n", b64(b"carol")).into_bytes(),
            Want::Anonymous,
        ),
        (
            "basic not base64",
            b"Authorization: Basic !!!!\r\n".to_vec(),
            Want::Anonymous,
        ),
        (
            "basic needing no padding",
            b"Authorization: Basic Y2Fyb2w6czNjcmV0\r\n".to_vec(),
            Want::User("carol"),
        ),
        (
            "basic missing padding",
            format!(
                "Authorization: Basic {}\r\n",
                b64(b"carol:s3cre").trim_end_matches('=')
            )
            .into_bytes(),
            Want::Anonymous,
        ),
        (
            "basic empty",
            b"Authorization: Basic \r\n".to_vec(),
            Want::Anonymous,
        ),
    ];
    for (name, headers, want) in cases {
        check(&s, name, &headers, want).await;
    }
}

#[tokio::test]
async fn malformed_websocket_protocol_headers() {
    let s = server();
    let up = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let proto = |p: &str| format!("{up}Sec-WebSocket-Protocol: {p}\r\n").into_bytes();
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        (
            "valid",
            proto("base64url.bearer.authorization.k8s.io.dG9rZW4x, base64.binary.k8s.io"),
            Want::User("alice"),
        ),
        (
            "token alone",
            proto("base64url.bearer.authorization.k8s.io.dG9rZW4x"),
            Want::Unauthorized,
        ),
        (
            "padded",
            proto("base64url.bearer.authorization.k8s.io.dG9rZW4x=, x"),
            Want::Unauthorized,
        ),
        (
            "standard alphabet",
            proto("base64url.bearer.authorization.k8s.io.++//, x"),
            Want::Unauthorized,
        ),
        (
            "not utf-8",
            proto("base64url.bearer.authorization.k8s.io._w, x"),
            Want::Unauthorized,
        ),
        (
            "two tokens",
            proto(
                "base64url.bearer.authorization.k8s.io.dG9rZW4x, base64url.bearer.authorization.k8s.io.dG9rZW4x, x",
            ),
            Want::Unauthorized,
        ),
        (
            "unknown token",
            proto("base64url.bearer.authorization.k8s.io.bm9wZQ, x"),
            Want::Unauthorized,
        ),
        (
            "empty token",
            proto("base64url.bearer.authorization.k8s.io., x"),
            Want::Anonymous,
        ),
        (
            "no token entry",
            proto("base64.binary.k8s.io"),
            Want::Anonymous,
        ),
        (
            "not an upgrade",
            b"Sec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.dG9rZW4x, x\r\n"
                .to_vec(),
            Want::Anonymous,
        ),
    ];
    for (name, headers, want) in cases {
        check(&s, name, &headers, want).await;
    }
}
