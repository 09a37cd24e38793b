//! The static token file (kube-apiserver `--token-auth-file`, Kubernetes
//! `pkg/authentication/token/tokenfile`).

use std::fmt;
use std::path::{Path, PathBuf};

use kube_authn_core::reload::{LoadError, ReloadOptions, ReloadStatus};
use kube_authn_core::{Audiences, AuthenticateToken, Authenticated, AuthnFuture, AuthnResult};

use crate::file::{CredentialFile, FileError, FileKind};

/// Bearer tokens from a CSV file of `token,user,uid[,"group1,group2"]` rows.
///
/// The file is read as Kubernetes reads it: CSV with Go's rules (see the
/// [crate documentation](crate)); at least three columns per row; the fourth, if present, is
/// the comma-separated group list (not trimmed); further columns are ignored; a row with an
/// empty token is skipped with a warning; when a token appears twice the last row wins (with
/// a warning). A token that is not in the file is no credential of this kind (`Ok(None)`),
/// never an error.
///
/// A lookup is one lock-free load of the current table and one hash lookup, with the tokens
/// compared in constant time. Clones share the table (and the watcher, if any).
///
/// # Example
/// ```
/// use kube_authn_core::{Audiences, AuthenticateToken};
/// use kube_authn_static::TokenFile;
///
/// let tokens = TokenFile::from_csv("tokens.csv", b"s3cret,alice,42,\"devs,ops\"\n")?;
/// let auth = tokens.authenticate_token("s3cret", &Audiences::none()).into_ready().unwrap()?;
/// let user = auth.unwrap().user;
/// assert_eq!(user.username, "alice");
/// assert_eq!(user.groups, ["devs", "ops"]);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TokenFile {
    file: CredentialFile,
}

/// Why a token file was refused (the error shared with the password file).
pub type TokenFileError = FileError;

impl TokenFile {
    /// Tokens from CSV in memory; `path` is only used in messages. The table never changes.
    pub fn from_csv(path: impl AsRef<Path>, csv: &[u8]) -> Result<Self, TokenFileError> {
        Ok(Self {
            file: CredentialFile::from_csv(FileKind::Token, path.as_ref(), csv)?,
        })
    }

    /// Reads the file once (kube-apiserver's behaviour).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, LoadError<TokenFileError>> {
        Ok(Self {
            file: CredentialFile::load(FileKind::Token, path.into())?,
        })
    }

    /// Reads the file (this first read must succeed) and keeps the tokens current as the file
    /// changes, until the last clone is dropped. A changed file that does not parse is refused:
    /// the previous tokens stay in use and [`status`](Self::status) says why.
    pub fn watch(
        path: impl Into<PathBuf>,
        options: ReloadOptions,
    ) -> Result<Self, LoadError<TokenFileError>> {
        Ok(Self {
            file: CredentialFile::watch(FileKind::Token, path.into(), options)?,
        })
    }

    /// Reload counters and the last refused change (with file and line); all zero when the
    /// file is not watched.
    pub fn status(&self) -> ReloadStatus {
        self.file.status()
    }

    /// The file, unless the tokens came from [`from_csv`](Self::from_csv).
    pub fn path(&self) -> Option<&Path> {
        self.file.path()
    }

    /// The number of distinct tokens currently loaded.
    pub fn len(&self) -> usize {
        self.file.len()
    }

    /// Whether no token is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AuthenticateToken for TokenFile {
    fn authenticate_token(&self, token: &str, _audiences: &Audiences) -> AuthnFuture<AuthnResult> {
        AuthnFuture::ready(Ok(self
            .file
            .table
            .current()
            .user_by_token(token)
            .map(Authenticated::new)))
    }

    fn name(&self) -> &'static str {
        "token-file"
    }
}

/// Shows the file and the number of tokens, never a token.
impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path())
            .field("tokens", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::CsvErrorKind;
    use kube_authn_core::UserInfo;
    use std::fs;
    use std::time::{Duration, Instant};

    fn lookup(tokens: &TokenFile, token: &str) -> Option<UserInfo> {
        let result = tokens
            .authenticate_token(token, &Audiences::none())
            .into_ready()
            .ok()
            .unwrap();
        result.unwrap().map(|a| {
            assert!(a.audiences.is_empty());
            a.user
        })
    }

    fn user(name: &str, uid: &str, groups: &[&str]) -> UserInfo {
        UserInfo::new(name)
            .with_uid(uid)
            .with_groups(groups.iter().copied())
    }

    // Kubernetes tokenfile_test.go TestTokenFile, one case per token.
    #[test]
    fn test_token_file() {
        let tokens = TokenFile::from_csv(
            "tokens.csv",
            b"
token1,user1,uid1
token2,user2,uid2
token3,user3,uid3,\"group1,group2\"
token4,user4,uid4,\"group2\"
token5,user5,uid5,group5
token6,user6,uid6,group5,otherdata
token7,user7,uid7,\"group1,group2\",otherdata
",
        )
        .unwrap();
        let cases: &[(&str, Option<UserInfo>)] = &[
            ("token1", Some(user("user1", "uid1", &[]))),
            ("token2", Some(user("user2", "uid2", &[]))),
            ("token3", Some(user("user3", "uid3", &["group1", "group2"]))),
            ("token4", Some(user("user4", "uid4", &["group2"]))),
            ("token5", Some(user("user5", "uid5", &["group5"]))),
            ("token6", Some(user("user6", "uid6", &["group5"]))),
            ("token7", Some(user("user7", "uid7", &["group1", "group2"]))),
            ("token8", None),
        ];
        for (token, want) in cases {
            assert_eq!(lookup(&tokens, token), *want, "TestTokenFile/{token}");
        }
        assert_eq!(tokens.len(), 7);
    }

    // Kubernetes tokenfile_test.go TestBadTokenFile.
    #[test]
    fn test_bad_token_file() {
        let err = TokenFile::from_csv(
            "tokens.csv",
            b"\ntoken1,user1,uid1\ntoken2,user2,uid2\ntoken3,user3\ntoken4\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokens.csv:4: token file 'tokens.csv' must have at least 3 columns (token, user name, user uid), found 2"
        );
    }

    // Kubernetes tokenfile_test.go TestInsufficientColumnsTokenFile.
    #[test]
    fn test_insufficient_columns_token_file() {
        let err = TokenFile::from_csv("tokens.csv", b"token4\n").unwrap_err();
        assert!(
            matches!(
                err,
                TokenFileError::TooFewColumns {
                    line: 1,
                    found: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    // Kubernetes tokenfile_test.go TestEmptyTokenTokenFile.
    #[test]
    fn test_empty_token_token_file() {
        let tokens = TokenFile::from_csv("tokens.csv", b",user5,uid5\n").unwrap();
        assert!(tokens.is_empty());
        assert_eq!(lookup(&tokens, ""), None);
    }

    #[test]
    fn crlf_line_endings() {
        let tokens = TokenFile::from_csv("t", b"a,u1,i1\r\n\r\nb,u2,i2,\"g1,g2\"\r\n").unwrap();
        assert_eq!(lookup(&tokens, "a"), Some(user("u1", "i1", &[])));
        assert_eq!(lookup(&tokens, "b"), Some(user("u2", "i2", &["g1", "g2"])));
    }

    #[test]
    fn quoted_groups_keep_their_spaces_and_an_empty_column_is_one_empty_group() {
        let tokens = TokenFile::from_csv(
            "t",
            b"a,u,i,\" g1 , g2\"\nb,u,i,\nc,u,i,\"\"\nd,u,i,\",\"\n",
        )
        .unwrap();
        assert_eq!(lookup(&tokens, "a").unwrap().groups, [" g1 ", " g2"]);
        assert_eq!(lookup(&tokens, "b").unwrap().groups, [""]);
        assert_eq!(lookup(&tokens, "c").unwrap().groups, [""]);
        assert_eq!(lookup(&tokens, "d").unwrap().groups, ["", ""]);
    }

    #[test]
    fn multi_line_quoted_fields_keep_later_line_numbers_right() {
        let tokens = TokenFile::from_csv("t", b"a,u,i,\"g1\ng2\"\r\nb,u2,i2\n").unwrap();
        assert_eq!(lookup(&tokens, "a").unwrap().groups, ["g1\ng2"]);
        assert_eq!(lookup(&tokens, "b").unwrap().username, "u2");

        let err = TokenFile::from_csv("t", b"a,u,i,\"g1\n\ng2\"\nb,u\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t:4: token file 't' must have at least 3 columns (token, user name, user uid), found 2"
        );
        let err = TokenFile::from_csv("t", b"a,u,i,\"g1\ng2\"\nb,u,i\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t:3: parse error on line 3, column 6: bare \" in non-quoted-field"
        );
    }

    #[test]
    fn a_hash_line_is_not_a_comment() {
        let err = TokenFile::from_csv("t", b"a,u,i\n# tokens for the ops team\n").unwrap_err();
        assert!(
            matches!(
                err,
                TokenFileError::TooFewColumns {
                    line: 2,
                    found: 1,
                    ..
                }
            ),
            "{err}"
        );
        // ... and with three columns it is a row.
        let tokens = TokenFile::from_csv("t", b"#a,u,i\n").unwrap();
        assert_eq!(lookup(&tokens, "#a").unwrap().username, "u");
    }

    #[test]
    fn quote_errors_name_the_file_and_line() {
        let err = TokenFile::from_csv("/etc/tokens.csv", b"a,u,i\nb,u\"x,i\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/tokens.csv:2: parse error on line 2, column 4: bare \" in non-quoted-field"
        );
        let TokenFileError::Csv { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(source.kind(), CsvErrorKind::BareQuote);
        assert!(std::error::Error::source(&err).is_some());

        let err = TokenFile::from_csv("t", b"a,u,i\n\"b\"x,u,i\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t:2: parse error on line 2, column 3: extraneous or missing \" in quoted-field"
        );
        let err = TokenFile::from_csv("t", b"a,u,i\nb,u,\"i\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t:2: parse error on line 2, column 8: extraneous or missing \" in quoted-field"
        );
    }

    #[test]
    fn duplicate_token_last_row_wins() {
        let tokens = TokenFile::from_csv("t", b"a,first,1\nb,other,2\na,second,3,g\n").unwrap();
        assert_eq!(lookup(&tokens, "a"), Some(user("second", "3", &["g"])));
        assert_eq!(tokens.len(), 2);
    }

    #[test]
    fn nothing_is_trimmed() {
        let tokens = TokenFile::from_csv("t", b" abc,u,i\n").unwrap();
        assert_eq!(lookup(&tokens, "abc"), None);
        assert_eq!(lookup(&tokens, " abc").unwrap().username, "u");
    }

    #[test]
    fn a_byte_order_mark_stays_part_of_the_first_token() {
        let tokens = TokenFile::from_csv("t", "\u{feff}abc,u,i\n".as_bytes()).unwrap();
        assert_eq!(lookup(&tokens, "abc"), None);
        assert_eq!(lookup(&tokens, "\u{feff}abc").unwrap().username, "u");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = TokenFile::from_csv("t", b"a,u,i\nb,\xff,i\n").unwrap_err();
        assert_eq!(err.to_string(), "t:2: column 2 is not valid utf-8");
        // Ignored columns may hold anything, as in Kubernetes.
        let tokens = TokenFile::from_csv("t", b"a,u,i,g,\xff\n").unwrap();
        assert_eq!(tokens.len(), 1);
    }

    #[test]
    fn debug_is_redacted() {
        let tokens = TokenFile::from_csv("t", b"s3cr3t-t0ken,alice,1\n").unwrap();
        let debug = format!("{tokens:?} {tokens:#?}");
        assert!(!debug.contains("s3cr3t-t0ken"), "{debug}");
        assert!(debug.contains("tokens: 1"), "{debug}");
        let err = TokenFile::from_csv("t", b"s3cr3t-t0ken,al\"ice,1\n").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cr3t"), "{err:?}");
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        fs::write(&path, "a,u,i\n").unwrap();
        let tokens = TokenFile::load(&path).unwrap();
        assert_eq!(tokens.path(), Some(path.as_path()));
        assert_eq!(lookup(&tokens, "a").unwrap().username, "u");

        fs::write(&path, "a,u,i\nb\n").unwrap();
        let err = TokenFile::load(&path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2: token file", path.display())),
            "{err}"
        );
        assert!(TokenFile::load(dir.path().join("missing")).is_err());
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn watch_reloads_and_keeps_the_old_tokens_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        fs::write(&path, "t1,u1,i1\n").unwrap();
        let options = ReloadOptions::default()
            .debounce(Duration::from_millis(20))
            .poll_interval(Duration::from_millis(100));
        let tokens = TokenFile::watch(&path, options).unwrap();
        assert_eq!(lookup(&tokens, "t1").unwrap().username, "u1");

        // Rewritten in place (truncated, then written: it may be read empty in between, a
        // reload of its own; only the end is certain).
        fs::write(&path, "t1,u1,i1\nt2,u2,i2\n").unwrap();
        wait_for("in-place rewrite", || lookup(&tokens, "t2").is_some());
        let reloads = tokens.status().reloads;

        // Replaced by rename, as editors and `kubectl cp`-style tools do.
        let replace = |content: &str| {
            let tmp = dir.path().join(".tokens.csv.tmp");
            fs::write(&tmp, content).unwrap();
            fs::rename(&tmp, &path).unwrap();
        };
        replace("t3,u3,i3\n");
        wait_for("rename", || lookup(&tokens, "t3").is_some());
        assert_eq!(lookup(&tokens, "t1"), None);

        // A malformed file is refused; the previous tokens keep working.
        replace("t4,u4,i4\nt5,u5\n");
        wait_for("refusal", || tokens.status().failures == 1);
        assert_eq!(lookup(&tokens, "t3").unwrap().username, "u3");
        assert_eq!(lookup(&tokens, "t4"), None);
        let error = tokens.status().last_error.unwrap();
        assert!(
            error.starts_with(&format!("{}:2: token file", path.display())),
            "{error}"
        );

        // A good file again.
        replace("t6,u6,i6,g\n");
        wait_for("recovery", || lookup(&tokens, "t6").is_some());
        assert_eq!(lookup(&tokens, "t6").unwrap().groups, ["g"]);
        assert_eq!(lookup(&tokens, "t3"), None);
        let status = tokens.status();
        assert_eq!(
            (status.reloads, status.failures, status.last_error),
            (reloads + 2, 1, None),
            "the refusal is no reload"
        );
    }

    #[test]
    fn a_large_file_loads() {
        let mut csv = String::new();
        for i in 0..100_000 {
            csv.push_str(&format!("{i:032x},system:user-{i},{i:08x}-0000-4000-8000-000000000000,\"group-a,group-{}\"\n", i % 100));
        }
        let tokens = TokenFile::from_csv("t", csv.as_bytes()).unwrap();
        assert_eq!(tokens.len(), 100_000);
        assert_eq!(
            lookup(&tokens, &format!("{:032x}", 4242)).unwrap().username,
            "system:user-4242"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(tokens) = TokenFile::from_csv("t", &bytes) {
                let _ = lookup(&tokens, "a");
            }
        }

        #[test]
        fn never_panics_on_csv_like_bytes(parts in proptest::collection::vec(
            proptest::sample::select(vec!["a", ",", "\"", "\n", "\r", "\r\n", " ", "\u{feff}", "\u{ff}"]), 0..40)
        ) {
            if let Ok(tokens) = TokenFile::from_csv("t", parts.concat().as_bytes()) {
                let _ = lookup(&tokens, "a");
            }
        }
    }
}
