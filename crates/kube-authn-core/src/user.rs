//! The authenticated identity: [`UserInfo`], mirroring Kubernetes `user.Info` and the
//! `authentication.k8s.io/v1` `UserInfo` JSON shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The user every anonymous request is mapped to (`system:anonymous`).
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of anonymous requests (`system:unauthenticated`).
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group added to every authenticated user (`system:authenticated`).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group of cluster administrators (`system:masters`).
pub const MASTERS_GROUP: &str = "system:masters";
/// The extra key Kubernetes uses to identify the credential that authenticated a request.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// Who made a request: the Kubernetes `user.Info`.
///
/// Serialises to the Kubernetes JSON shape (`username`, `uid`, `groups`, `extra`), omitting
/// empty fields as Kubernetes does. Every authenticator attaches one to the request's
/// extensions; handlers read it with the axum extractor of the `kube-authn` crate or with
/// `request.extensions().get::<UserInfo>()`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// The name that uniquely identifies this user among all active users.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// A unique value that identifies this user across time (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The groups this user is a part of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Any additional information provided by the authenticator (keys are lower case).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with a name and nothing else.
    pub fn new(username: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            ..Self::default()
        }
    }

    /// Sets the uid.
    #[must_use]
    pub fn with_uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// Sets the groups.
    #[must_use]
    pub fn with_groups<I, G>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = G>,
        G: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// The anonymous user: `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Self {
        Self {
            username: ANONYMOUS_USER.to_owned(),
            groups: vec![UNAUTHENTICATED_GROUP.to_owned()],
            ..Self::default()
        }
    }

    /// Whether this is the anonymous user (by name or by the `system:unauthenticated` group).
    pub fn is_anonymous(&self) -> bool {
        self.username == ANONYMOUS_USER || self.groups.iter().any(|g| g == UNAUTHENTICATED_GROUP)
    }

    /// A copy whose group list has room for one more entry, for authenticators that hand out
    /// copies of a cached user: [`AuthenticatedGroupAdder`](crate::AuthenticatedGroupAdder)
    /// then adds `system:authenticated` without growing the list (`clone` gives a list with no
    /// spare room, and growing it costs an allocation and a copy on every request).
    pub fn clone_with_group_room(&self) -> UserInfo {
        let mut groups = Vec::with_capacity(self.groups.len() + 1);
        groups.extend(self.groups.iter().cloned());
        UserInfo {
            username: self.username.clone(),
            uid: self.uid.clone(),
            groups,
            extra: self.extra.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_with_group_room_is_equal_and_has_room() {
        let mut user = UserInfo::new("jane").with_uid("1").with_groups(["a", "b"]);
        user.extra.insert("k".into(), vec!["v".into()]);
        let copy = user.clone_with_group_room();
        assert_eq!(copy, user);
        assert!(copy.groups.capacity() > copy.groups.len());
    }

    #[test]
    fn serializes_in_the_kubernetes_shape_and_omits_empty_fields() {
        let user = UserInfo::new("jane").with_groups(["devs"]);
        let json = serde_json::to_string(&user).unwrap();
        assert_eq!(json, r#"{"username":"jane","groups":["devs"]}"#);

        let mut full = user.with_uid("42");
        full.extra
            .insert("scopes".into(), vec!["a".into(), "b".into()]);
        let json = serde_json::to_value(&full).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"username":"jane","uid":"42","groups":["devs"],"extra":{"scopes":["a","b"]}})
        );
        let back: UserInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, full);
    }

    #[test]
    fn anonymous_user() {
        let anon = UserInfo::anonymous();
        assert_eq!(anon.username, "system:anonymous");
        assert_eq!(anon.groups, vec!["system:unauthenticated"]);
        assert!(anon.is_anonymous());
        assert!(!UserInfo::new("bob").is_anonymous());
    }
}
