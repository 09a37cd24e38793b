//! What the token file and the password file share: loading, watching, status, the errors.

use std::path::{Path, PathBuf};

use kube_authn_core::reload::{LoadError, ReloadOptions, ReloadStatus, Reloading};

use crate::reader::CsvError;
use crate::table::{Kind, RowError, Table};

/// Which file an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A token file (`--token-auth-file`).
    Token,
    /// A password file (`--basic-auth-file`).
    Password,
}

impl FileKind {
    fn columns(self) -> &'static str {
        match self {
            FileKind::Token => {
                "token file '{}' must have at least 3 columns (token, user name, user uid)"
            }
            FileKind::Password => {
                "password file '{}' must have at least 3 columns (password, user name, user uid)"
            }
        }
    }

    fn table_kind(self) -> Kind {
        match self {
            FileKind::Token => Kind::Token,
            FileKind::Password => Kind::Password,
        }
    }
}

/// Why a token or password file was refused. Messages name the file and the line, never a
/// secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file is not CSV as Go's `encoding/csv` reads it.
    #[error("{}:{}: {source}", path.display(), source.line())]
    Csv {
        /// The file.
        path: PathBuf,
        /// What and where (Go's error text).
        #[source]
        source: CsvError,
    },
    /// A row has fewer than three columns (Kubernetes' message after `file:line:`).
    #[error("{}:{line}: {}, found {found}", path.display(), kind.columns().replace("{}", &path.display().to_string()))]
    TooFewColumns {
        /// Token or password file.
        kind: FileKind,
        /// The file.
        path: PathBuf,
        /// The line the row starts on.
        line: usize,
        /// How many columns it has.
        found: usize,
    },
    /// One of the first four columns of a row is not UTF-8.
    #[error("{}:{line}: column {column} is not valid utf-8", path.display())]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// The line the row starts on.
        line: usize,
        /// The column (1-based).
        column: usize,
    },
    /// The file is larger than 4 GiB.
    #[error("{}: the file is larger than 4 GiB", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

impl FileError {
    fn new(kind: FileKind, path: &Path, error: RowError) -> Self {
        let path = path.to_owned();
        match error {
            RowError::Csv(source) => Self::Csv { path, source },
            RowError::TooFewColumns { line, found } => Self::TooFewColumns {
                kind,
                path,
                line,
                found,
            },
            RowError::InvalidUtf8 { line, column } => Self::InvalidUtf8 { path, line, column },
            RowError::TooLarge => Self::TooLarge { path },
        }
    }
}

/// A table loaded from CSV, fixed or kept current from its file.
#[derive(Clone)]
pub(crate) struct CredentialFile {
    pub(crate) table: Reloading<Table>,
}

impl CredentialFile {
    fn parser(
        kind: FileKind,
    ) -> impl Fn(&Path, &[u8]) -> Result<Table, FileError> + Send + Sync + 'static {
        move |path, bytes| {
            Table::parse(path, bytes, kind.table_kind()).map_err(|e| FileError::new(kind, path, e))
        }
    }

    pub(crate) fn from_csv(kind: FileKind, path: &Path, csv: &[u8]) -> Result<Self, FileError> {
        Ok(Self {
            table: Reloading::fixed(Self::parser(kind)(path, csv)?),
        })
    }

    pub(crate) fn load(kind: FileKind, path: PathBuf) -> Result<Self, LoadError<FileError>> {
        Ok(Self {
            table: Reloading::load(path, Self::parser(kind))?,
        })
    }

    pub(crate) fn watch(
        kind: FileKind,
        path: PathBuf,
        options: ReloadOptions,
    ) -> Result<Self, LoadError<FileError>> {
        Ok(Self {
            table: Reloading::watch(path, Self::parser(kind), options)?,
        })
    }

    pub(crate) fn status(&self) -> ReloadStatus {
        self.table.status()
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.table.path()
    }

    pub(crate) fn len(&self) -> usize {
        self.table.current().len()
    }
}
