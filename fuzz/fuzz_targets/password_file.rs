#![no_main]
//! The password file parser on arbitrary bytes: an error or a table, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kube_authn::PasswordFile::from_csv("fuzz.csv", data);
});
