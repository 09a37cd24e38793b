#![no_main]
//! The bearer and basic readers on an arbitrary `Authorization` header.
use kube_authn::{AuthenticateRequest, BasicAuth, BearerToken, PasswordFile, TokenFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else { return };
    let Ok(tokens) = TokenFile::from_csv("t.csv", b"token,user,1\n") else { return };
    let Ok(passwords) = PasswordFile::from_csv("p.csv", b"pw,user,1\n") else { return };
    let mut parts = http::Request::new(()).into_parts().0;
    parts.headers.insert(http::header::AUTHORIZATION, value);
    let parts = BearerToken::new(tokens).authenticate_request(Box::new(parts)).into_ready().map(|o| o.parts);
    if let Ok(parts) = parts {
        let _ = BasicAuth::new(passwords).authenticate_request(parts).into_ready();
    }
});
