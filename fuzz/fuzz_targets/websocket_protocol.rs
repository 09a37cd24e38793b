#![no_main]
//! The websocket protocol reader on arbitrary `Sec-WebSocket-Protocol` lines.
use kube_authn::{AuthenticateRequest, TokenFile, WebSocketProtocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tokens) = TokenFile::from_csv("t.csv", b"token,user,1\n") else { return };
    let mut parts = http::Request::new(()).into_parts().0;
    parts.headers.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    parts.headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            parts.headers.append(http::header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    let _ = WebSocketProtocol::new(tokens).authenticate_request(Box::new(parts)).into_ready();
});
