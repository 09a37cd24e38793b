//! Static credential files for kube-authn: the token file and the password file of
//! kube-apiserver.
//!
//! - [`TokenFile`] mirrors `--token-auth-file` (`k8s.io/apiserver`
//!   `pkg/authentication/token/tokenfile`): a CSV file of `token,user,uid[,"group1,group2"]`
//!   rows, used through the bearer and websocket readers
//!   ([`BearerToken`](kube_authn_core::BearerToken),
//!   [`WebSocketProtocol`](kube_authn_core::WebSocketProtocol)).
//! - [`PasswordFile`] mirrors the former `--basic-auth-file` (`passwordfile`, removed from
//!   Kubernetes in 1.19): `password,user,uid[,"group1,group2"]` rows, used through
//!   [`BasicAuth`](kube_authn_core::BasicAuth).
//!
//! Both files are read exactly as Kubernetes reads them, with Go's `encoding/csv`: fields are
//! separated by `,`; a field starting with `"` is quoted (`""` is a quote inside it, and it may
//! hold commas and line breaks); `\r\n` line endings are accepted; empty lines are skipped;
//! there are no comments (`#token,...` is a row) and nothing is trimmed (` abc` is not `abc`,
//! and a UTF-8 byte order mark stays part of the first token); a stray `"` is an error. Every
//! row needs at least three columns; the fourth is split on `,` into groups; further columns
//! are ignored. Any error refuses the whole file and names the file and the line.
//!
//! One deliberate difference: the first four fields must be UTF-8 (Go accepts any bytes).
//! Credentials reach authenticators as `&str`, so a non-UTF-8 token or password could never
//! match; such a file is refused with file and line instead of being loaded with rows that can
//! never authenticate.
//!
//! Kubernetes reads these files once; here [`TokenFile::watch`] and [`PasswordFile::watch`]
//! also keep them current (see [`kube_authn_core::reload`]), and [`TokenFile::load`] /
//! [`PasswordFile::load`] read them once.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use kube_authn_core::{AuthnLayer, BearerToken, UserInfo};
//! use kube_authn_static::TokenFile;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! // In a server: TokenFile::watch("/etc/kubernetes/tokens.csv", ReloadOptions::default())?
//! let tokens = TokenFile::from_csv("tokens.csv", b"s3cret,alice,42,\"devs,ops\"\n")?;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(AuthnLayer::new(BearerToken::new(tokens)))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let user = req.extensions().get::<UserInfo>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(user.username.clone()))
//!     }));
//!
//! let ok = svc.clone().oneshot(
//!     Request::get("/").header("authorization", "Bearer s3cret").body(String::new()).unwrap(),
//! ).await.unwrap();
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! let denied = svc.oneshot(
//!     Request::get("/").header("authorization", "Bearer wrong").body(String::new()).unwrap(),
//! ).await.unwrap();
//! assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
//! # });
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security
//! - Tokens and passwords are compared in constant time: the table is keyed by a hash with a
//!   random per-load seed, and the candidates it selects are compared with `subtle`. As in
//!   Kubernetes (Go's `subtle.ConstantTimeCompare`), the length of a secret and whether a user
//!   name exists in a password file are not hidden.
//! - Errors, logs and `Debug` output never contain a token or a password; they name the file,
//!   the line and the record number.
//! - A request does one lock-free load and one hash lookup: it never waits for the disk or a
//!   lock, even while a file is being reloaded.
//! - A changed file that does not parse never replaces the current credentials.
//! - Static credentials do not expire; protect the files (mode `0600`) and prefer
//!   short-lived credentials where you can.

#![forbid(unsafe_code)]

mod file;
mod index;
mod password;
mod reader;
mod table;
mod token;

pub use file::{FileError, FileKind};
pub use password::{PasswordFile, PasswordFileError};
pub use reader::{CsvError, CsvErrorKind};
pub use token::{TokenFile, TokenFileError};
