//! The static password file for HTTP basic authentication (kube-apiserver's former
//! `--basic-auth-file`, Kubernetes `plugin/pkg/authenticator/password/passwordfile`, removed in
//! 1.19).

use std::fmt;
use std::path::{Path, PathBuf};

use kube_authn_core::reload::{LoadError, ReloadOptions, ReloadStatus};
use kube_authn_core::{AuthenticatePassword, Authenticated, AuthnFuture, AuthnResult};

use crate::file::{CredentialFile, FileError, FileKind};

/// User names and passwords from a CSV file of `password,user,uid[,"group1,group2"]` rows,
/// for [`BasicAuth`](kube_authn_core::BasicAuth).
///
/// The file is read as Kubernetes read it: CSV with Go's rules (see the
/// [crate documentation](crate)); at least three columns per row; the fourth, if present, is
/// the comma-separated group list (not trimmed); further columns are ignored; rows are keyed
/// by user name and when a name appears twice the last row wins (with a warning). Empty
/// passwords are allowed, as in Kubernetes. An unknown user or a wrong password is `Ok(None)`;
/// the basic-auth reader turns that into `invalid username/password combination`.
///
/// A lookup is one lock-free load of the current table and one hash lookup; the password is
/// compared in constant time. Clones share the table (and the watcher, if any).
///
/// # Example
/// ```
/// use kube_authn_core::AuthenticatePassword;
/// use kube_authn_static::PasswordFile;
///
/// let passwords = PasswordFile::from_csv("passwords.csv", b"s3cret,alice,42,devs\n")?;
/// let ok = passwords.authenticate_password("alice", "s3cret").into_ready().unwrap()?;
/// assert_eq!(ok.unwrap().user.groups, ["devs"]);
/// let wrong = passwords.authenticate_password("alice", "guess").into_ready().unwrap()?;
/// assert!(wrong.is_none());
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PasswordFile {
    file: CredentialFile,
}

/// Why a password file was refused (the error shared with the token file).
pub type PasswordFileError = FileError;

impl PasswordFile {
    /// Passwords from CSV in memory; `path` is only used in messages. The table never changes.
    pub fn from_csv(path: impl AsRef<Path>, csv: &[u8]) -> Result<Self, PasswordFileError> {
        Ok(Self {
            file: CredentialFile::from_csv(FileKind::Password, path.as_ref(), csv)?,
        })
    }

    /// Reads the file once (kube-apiserver's behaviour).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, LoadError<PasswordFileError>> {
        Ok(Self {
            file: CredentialFile::load(FileKind::Password, path.into())?,
        })
    }

    /// Reads the file (this first read must succeed) and keeps the passwords current as the
    /// file changes, until the last clone is dropped. A changed file that does not parse is
    /// refused: the previous passwords stay in use and [`status`](Self::status) says why.
    pub fn watch(
        path: impl Into<PathBuf>,
        options: ReloadOptions,
    ) -> Result<Self, LoadError<PasswordFileError>> {
        Ok(Self {
            file: CredentialFile::watch(FileKind::Password, path.into(), options)?,
        })
    }

    /// Reload counters and the last refused change (with file and line); all zero when the
    /// file is not watched.
    pub fn status(&self) -> ReloadStatus {
        self.file.status()
    }

    /// The file, unless the passwords came from [`from_csv`](Self::from_csv).
    pub fn path(&self) -> Option<&Path> {
        self.file.path()
    }

    /// The number of distinct users currently loaded.
    pub fn len(&self) -> usize {
        self.file.len()
    }

    /// Whether no user is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AuthenticatePassword for PasswordFile {
    fn authenticate_password(&self, username: &str, password: &str) -> AuthnFuture<AuthnResult> {
        let user = self
            .file
            .table
            .current()
            .user_by_password(username, password);
        AuthnFuture::ready(Ok(user.map(Authenticated::new)))
    }

    fn name(&self) -> &'static str {
        "password-file"
    }
}

/// Shows the file and the number of users, never a password.
impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("path", &self.path())
            .field("users", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_authn_core::UserInfo;
    use std::fs;
    use std::time::{Duration, Instant};

    fn check(passwords: &PasswordFile, username: &str, password: &str) -> Option<UserInfo> {
        let result = passwords
            .authenticate_password(username, password)
            .into_ready()
            .ok()
            .unwrap();
        result.unwrap().map(|a| a.user)
    }

    fn user(name: &str, uid: &str, groups: &[&str]) -> UserInfo {
        UserInfo::new(name)
            .with_uid(uid)
            .with_groups(groups.iter().copied())
    }

    // Kubernetes passwordfile_test.go TestPasswordFile.
    #[test]
    fn test_password_file() {
        let passwords = PasswordFile::from_csv(
            "passwords.csv",
            b"
password1,user1,uid1
password2,user2,uid2
password3,user3,uid3,\"group1,group2\"
password4,user4,uid4,\"group2\"
password5,user5,uid5,group5
password6,user6,uid6,group5,otherdata
password7,user7,uid7,\"group1,group2\",otherdata
",
        )
        .unwrap();
        let cases: &[(&str, &str, Option<UserInfo>)] = &[
            ("user1", "password1", Some(user("user1", "uid1", &[]))),
            ("user2", "password2", Some(user("user2", "uid2", &[]))),
            ("user1", "password2", None),
            ("user2", "password1", None),
            (
                "user3",
                "password3",
                Some(user("user3", "uid3", &["group1", "group2"])),
            ),
            (
                "user4",
                "password4",
                Some(user("user4", "uid4", &["group2"])),
            ),
            (
                "user5",
                "password5",
                Some(user("user5", "uid5", &["group5"])),
            ),
            (
                "user6",
                "password6",
                Some(user("user6", "uid6", &["group5"])),
            ),
            (
                "user7",
                "password7",
                Some(user("user7", "uid7", &["group1", "group2"])),
            ),
            ("user7", "passwordbad", None),
            ("userbad", "password7", None),
            ("user8", "password8", None),
        ];
        for (i, (username, password, want)) in cases.iter().enumerate() {
            assert_eq!(
                check(&passwords, username, password),
                *want,
                "TestPasswordFile/{i}: {username}"
            );
        }
        assert_eq!(passwords.len(), 7);
    }

    // Kubernetes passwordfile_test.go TestBadPasswordFile.
    #[test]
    fn test_bad_password_file() {
        let err = PasswordFile::from_csv(
            "passwords.csv",
            b"\npassword1,user1,uid1\npassword2,user2,uid2\npassword3,user3\npassword4\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "passwords.csv:4: password file 'passwords.csv' must have at least 3 columns (password, user name, user uid), found 2"
        );
    }

    // Kubernetes passwordfile_test.go TestInsufficientColumnsPasswordFile.
    #[test]
    fn test_insufficient_columns_password_file() {
        let err = PasswordFile::from_csv("passwords.csv", b"password4\n").unwrap_err();
        assert!(
            matches!(
                err,
                PasswordFileError::TooFewColumns {
                    line: 1,
                    found: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn empty_passwords_are_kept() {
        let passwords = PasswordFile::from_csv("p", b",user5,uid5\n").unwrap();
        assert_eq!(passwords.len(), 1);
        assert_eq!(check(&passwords, "user5", "").unwrap().uid, "uid5");
        assert_eq!(check(&passwords, "user5", "x"), None);
    }

    #[test]
    fn duplicate_username_last_row_wins() {
        let passwords = PasswordFile::from_csv("p", b"old,alice,1\nnew,alice,2,g\n").unwrap();
        assert_eq!(passwords.len(), 1);
        assert_eq!(check(&passwords, "alice", "old"), None);
        assert_eq!(
            check(&passwords, "alice", "new"),
            Some(user("alice", "2", &["g"]))
        );
    }

    #[test]
    fn passwords_are_compared_exactly() {
        let passwords = PasswordFile::from_csv("p", b"\"pa,ss \"\"word\"\"\",bob,1\n").unwrap();
        assert!(check(&passwords, "bob", "pa,ss \"word\"").is_some());
        for wrong in [
            "pa,ss \"word",
            "pa,ss \"word\"x",
            "Pa,ss \"word\"",
            "",
            "pa,ss  \"word\"",
        ] {
            assert_eq!(check(&passwords, "bob", wrong), None, "{wrong:?}");
        }
        assert_eq!(check(&passwords, "Bob", "pa,ss \"word\""), None);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err = PasswordFile::from_csv("p", b"a,u,i\n#comment\n").unwrap_err();
        assert!(
            matches!(
                err,
                PasswordFileError::TooFewColumns {
                    line: 2,
                    found: 1,
                    ..
                }
            ),
            "{err}"
        );
        let err = PasswordFile::from_csv("p", b"a,u,i\r\n\r\nb,\"u\"\"\",i\"\r\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "p:3: parse error on line 3, column 10: bare \" in non-quoted-field"
        );
        let err = PasswordFile::from_csv("p", b"a,u,i\n\xfe,u,i\n").unwrap_err();
        assert_eq!(err.to_string(), "p:2: column 1 is not valid utf-8");
    }

    #[test]
    fn debug_is_redacted() {
        let passwords = PasswordFile::from_csv("p", b"hunter2-pw,alice,1\n").unwrap();
        let debug = format!("{passwords:?} {passwords:#?}");
        assert!(!debug.contains("hunter2-pw"), "{debug}");
        assert!(debug.contains("users: 1"), "{debug}");
        let err = PasswordFile::from_csv("p", b"hunter2-pw,alice\n").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
    }

    #[test]
    fn watch_reloads_and_keeps_the_old_passwords_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords.csv");
        fs::write(&path, "pw1,alice,1\n").unwrap();
        let options = ReloadOptions::default()
            .debounce(Duration::from_millis(20))
            .poll_interval(Duration::from_millis(100));
        let passwords = PasswordFile::watch(&path, options).unwrap();
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let start = Instant::now();
            while !done() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "timed out waiting for {what}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };

        let tmp = dir.path().join(".passwords.csv.tmp");
        fs::write(&tmp, "pw2,alice,1\n").unwrap();
        fs::rename(&tmp, &path).unwrap();
        wait_for("rename", &|| check(&passwords, "alice", "pw2").is_some());
        assert_eq!(check(&passwords, "alice", "pw1"), None);

        fs::write(&path, "pw3,alice,1\n\"pw4,bob,2\n").unwrap();
        wait_for("refusal", &|| passwords.status().failures == 1);
        assert!(check(&passwords, "alice", "pw2").is_some());
        let error = passwords.status().last_error.unwrap();
        assert!(
            error.starts_with(&format!("{}:2: ", path.display())),
            "{error}"
        );
        assert!(
            error.ends_with("extraneous or missing \" in quoted-field"),
            "{error}"
        );

        fs::write(&path, "pw5,alice,1\n").unwrap();
        wait_for("recovery", &|| check(&passwords, "alice", "pw5").is_some());
        assert_eq!(passwords.status().last_error, None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(passwords) = PasswordFile::from_csv("p", &bytes) {
                let _ = check(&passwords, "a", "b");
            }
        }
    }
}
