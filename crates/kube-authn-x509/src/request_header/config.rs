//! The `--requestheader-*` configuration and its kube-apiserver validation.

use std::fmt;

use http::HeaderName;

/// The standard user header of API aggregation.
pub const STANDARD_USERNAME_HEADER: &str = "x-remote-user";
/// The standard uid header of API aggregation.
pub const STANDARD_UID_HEADER: &str = "x-remote-uid";
/// The standard group header of API aggregation.
pub const STANDARD_GROUP_HEADER: &str = "x-remote-group";
/// The standard extra header prefix of API aggregation.
pub const STANDARD_EXTRA_PREFIX: &str = "x-remote-extra-";

const USERNAME_FLAG: &str = "--requestheader-username-headers";
const UID_FLAG: &str = "--requestheader-uid-headers";
const GROUP_FLAG: &str = "--requestheader-group-headers";
const EXTRA_FLAG: &str = "--requestheader-extra-headers-prefix";
const ALLOWED_FLAG: &str = "--requestheader-allowed-names";

/// The header names of the authenticating proxy, as kube-apiserver's `--requestheader-*`
/// flags. Header names are case-insensitive.
///
/// [`RequestHeaderConfig::new`] has no header names (kube-apiserver's defaults);
/// [`RequestHeaderConfig::delegated_defaults`] has the ones of delegated (aggregated) API
/// servers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    username_headers: Vec<String>,
    uid_headers: Vec<String>,
    group_headers: Vec<String>,
    extra_headers_prefix: Vec<String>,
    allowed_names: Vec<String>,
}

/// Why a request-header configuration was refused (kube-apiserver's messages).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestHeaderConfigError {
    /// A list entry is empty or only whitespace.
    #[error("empty value in \"{flag}\"")]
    EmptyValue {
        /// The flag (for example `--requestheader-username-headers`).
        flag: &'static str,
    },
    /// A list entry is not a valid HTTP header name.
    #[error("invalid header name \"{name}\" in \"{flag}\"")]
    InvalidHeaderName {
        /// The flag.
        flag: &'static str,
        /// The entry.
        name: String,
        /// What `http` said.
        #[source]
        source: http::header::InvalidHeaderName,
    },
    /// UID headers are configured without the standard `X-Remote-Uid`.
    #[error(
        "--requestheader-uid-headers is set without specifying the standard X-Remote-Uid header - API aggregation will not work"
    )]
    UidWithoutStandardHeader,
}

/// A configuration kube-apiserver accepts with a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestHeaderConfigWarning {
    /// A list is set without its standard entry (API aggregation will not work).
    MissingStandardHeader {
        /// The flag.
        flag: &'static str,
        /// The standard entry, as kube-apiserver spells it.
        standard: &'static str,
    },
    /// No username header: the proxy can never authenticate anyone.
    NoUsernameHeaders,
}

impl fmt::Display for RequestHeaderConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingStandardHeader { flag, standard } => write!(
                f,
                "{flag} is set without specifying the standard {standard} header - API aggregation will not work"
            ),
            Self::NoUsernameHeaders => f.write_str(
                "no --requestheader-username-headers: the authenticating proxy cannot authenticate anyone",
            ),
        }
    }
}

fn strings<I, S>(values: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    values.into_iter().map(Into::into).collect()
}

impl RequestHeaderConfig {
    /// No header names and no allowed names (kube-apiserver's defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults of delegated API servers: `X-Remote-User`, `X-Remote-Group`,
    /// `X-Remote-Extra-`.
    pub fn delegated_defaults() -> Self {
        Self::new()
            .username_headers([STANDARD_USERNAME_HEADER])
            .group_headers([STANDARD_GROUP_HEADER])
            .extra_headers_prefix([STANDARD_EXTRA_PREFIX])
    }

    /// The standard names of API aggregation, uid included: what Kubernetes' authentication
    /// filter removes after every successful authentication.
    pub fn standard() -> Self {
        Self::delegated_defaults().uid_headers([STANDARD_UID_HEADER])
    }

    /// `--requestheader-username-headers`: the user name is the first non-empty one of these
    /// headers, in this order (default none).
    #[must_use]
    pub fn username_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.username_headers = strings(names);
        self
    }

    /// `--requestheader-uid-headers`: the uid is the first non-empty one (default none).
    #[must_use]
    pub fn uid_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.uid_headers = strings(names);
        self
    }

    /// `--requestheader-group-headers`: every value of every one is a group (default none).
    #[must_use]
    pub fn group_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.group_headers = strings(names);
        self
    }

    /// `--requestheader-extra-headers-prefix`: headers starting with one of these carry extra
    /// values (default none).
    #[must_use]
    pub fn extra_headers_prefix<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_headers_prefix = strings(prefixes);
        self
    }

    /// `--requestheader-allowed-names`: the common names the proxy certificate may have
    /// (default empty: any certificate of the request-header CA).
    #[must_use]
    pub fn allowed_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_names = strings(names);
        self
    }

    /// The allowed common names.
    pub fn allowed(&self) -> &[String] {
        &self.allowed_names
    }

    /// kube-apiserver's validation: errors refuse the configuration, warnings are returned.
    pub fn validate(&self) -> Result<Vec<RequestHeaderConfigWarning>, RequestHeaderConfigError> {
        let (compiled, warnings) = self.compile()?;
        if !compiled.uid.is_empty() && !compiled.uid.iter().any(|n| n == STANDARD_UID_HEADER) {
            return Err(RequestHeaderConfigError::UidWithoutStandardHeader);
        }
        Ok(warnings)
    }

    /// Parses the header names (trimmed; empty or invalid ones refused, as
    /// `headerrequest.New`) and lists the warnings.
    pub(crate) fn compile(
        &self,
    ) -> Result<(Compiled, Vec<RequestHeaderConfigWarning>), RequestHeaderConfigError> {
        let username = header_names(USERNAME_FLAG, &self.username_headers)?;
        let uid = header_names(UID_FLAG, &self.uid_headers)?;
        let group = header_names(GROUP_FLAG, &self.group_headers)?;
        let extra_prefixes = header_names(EXTRA_FLAG, &self.extra_headers_prefix)?
            .into_iter()
            .map(|n| n.as_str().to_owned())
            .collect::<Vec<_>>();
        for name in &self.allowed_names {
            if name.trim().is_empty() {
                return Err(RequestHeaderConfigError::EmptyValue { flag: ALLOWED_FLAG });
            }
        }
        let mut warnings = Vec::new();
        let missing = |set: bool, present: bool, flag, standard| {
            (set && !present)
                .then_some(RequestHeaderConfigWarning::MissingStandardHeader { flag, standard })
        };
        warnings.extend(missing(
            !username.is_empty(),
            username.iter().any(|n| n == STANDARD_USERNAME_HEADER),
            USERNAME_FLAG,
            "X-Remote-User",
        ));
        warnings.extend(missing(
            !group.is_empty(),
            group.iter().any(|n| n == STANDARD_GROUP_HEADER),
            GROUP_FLAG,
            "X-Remote-Group",
        ));
        warnings.extend(missing(
            !extra_prefixes.is_empty(),
            extra_prefixes.iter().any(|n| n == STANDARD_EXTRA_PREFIX),
            EXTRA_FLAG,
            "X-Remote-Extra-",
        ));
        if username.is_empty() {
            warnings.push(RequestHeaderConfigWarning::NoUsernameHeaders);
        }
        Ok((
            Compiled {
                username,
                uid,
                group,
                extra_prefixes,
                allowed_names: self.allowed_names.clone(),
            },
            warnings,
        ))
    }
}

fn header_names(
    flag: &'static str,
    names: &[String],
) -> Result<Vec<HeaderName>, RequestHeaderConfigError> {
    names
        .iter()
        .map(|name| {
            let trimmed = name.trim();
            if trimmed.is_empty() {
                return Err(RequestHeaderConfigError::EmptyValue { flag });
            }
            HeaderName::from_bytes(trimmed.as_bytes()).map_err(|source| {
                RequestHeaderConfigError::InvalidHeaderName {
                    flag,
                    name: name.clone(),
                    source,
                }
            })
        })
        .collect()
}

/// The validated configuration: header names parsed (lower case), prefixes lower-cased.
#[derive(Clone, Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) username: Vec<HeaderName>,
    pub(crate) uid: Vec<HeaderName>,
    pub(crate) group: Vec<HeaderName>,
    pub(crate) extra_prefixes: Vec<String>,
    pub(crate) allowed_names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_apiserver_validation() {
        let err = RequestHeaderConfig::new()
            .username_headers(["X-Remote-User", "  "])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "empty value in \"--requestheader-username-headers\""
        );
        let err = RequestHeaderConfig::new()
            .group_headers(["bad header"])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid header name \"bad header\" in \"--requestheader-group-headers\""
        );
        let err = RequestHeaderConfig::delegated_defaults()
            .uid_headers(["X-Uid"])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--requestheader-uid-headers is set without specifying the standard X-Remote-Uid header - API aggregation will not work"
        );
        assert!(
            RequestHeaderConfig::delegated_defaults()
                .uid_headers([" X-Remote-Uid "])
                .validate()
                .unwrap()
                .is_empty()
        );
        let warnings = RequestHeaderConfig::new()
            .username_headers(["X-User"])
            .group_headers(["X-Group"])
            .extra_headers_prefix(["X-Extra-"])
            .validate()
            .unwrap();
        let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "--requestheader-username-headers is set without specifying the standard X-Remote-User header - API aggregation will not work",
                "--requestheader-group-headers is set without specifying the standard X-Remote-Group header - API aggregation will not work",
                "--requestheader-extra-headers-prefix is set without specifying the standard X-Remote-Extra- header - API aggregation will not work",
            ]
        );
        assert_eq!(
            RequestHeaderConfig::new().validate().unwrap(),
            [RequestHeaderConfigWarning::NoUsernameHeaders]
        );
        let err = RequestHeaderConfig::new()
            .allowed_names([""])
            .validate()
            .unwrap_err();
        assert!(matches!(err, RequestHeaderConfigError::EmptyValue { .. }));
    }
}
