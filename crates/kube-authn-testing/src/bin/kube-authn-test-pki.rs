//! Writes the kube-authn test PKI as PEM files into a directory.
//!
//! ```text
//! cargo run -p kube-authn-testing --bin kube-authn-test-pki -- <dir>
//! ```

use std::process::ExitCode;

use kube_authn_testing::TestPki;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: kube-authn-test-pki <dir>");
        return ExitCode::from(2);
    };
    match TestPki::generate().and_then(|pki| pki.write_to(&dir)) {
        Ok(()) => {
            println!(
                "wrote the test pki to {}",
                std::path::Path::new(&dir).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
