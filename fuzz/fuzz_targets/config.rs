#![no_main]
//! The YAML configuration parser on arbitrary text.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kube_authn::AuthnConfig::from_yaml("fuzz.yaml", text);
    }
});
