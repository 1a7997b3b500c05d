//! Object keys: (logical cluster, resource, namespace, name). Each part is its own column in every
//! backend, so no key can be a prefix of another and no name can escape into a neighbour.

use std::fmt;

use crate::error::{Error, Result};

/// The address of one object. `namespace` is empty for cluster-scoped resources. `resource` names the
/// group and plural, e.g. `core/pods` or `apps/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub cluster: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(
        cluster: impl Into<String>,
        resource: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Checks that the key can be stored: cluster, resource and name non-empty, no NUL anywhere.
    pub fn validate(&self) -> Result<()> {
        for (part, value, may_be_empty) in [
            ("cluster", &self.cluster, false),
            ("resource", &self.resource, false),
            ("namespace", &self.namespace, true),
            ("name", &self.name, false),
        ] {
            if value.is_empty() && !may_be_empty {
                return Err(Error::InvalidKey(format!("{part} must not be empty")));
            }
            if value.contains('\0') {
                return Err(Error::InvalidKey(format!("{part} must not contain NUL")));
            }
        }
        Ok(())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/clusters/{}/{}/", self.cluster, self.resource)?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        f.write_str(&self.name)
    }
}

/// Which logical clusters a list or watch covers. Only system components use `All`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterScope {
    One(String),
    All,
}

impl ClusterScope {
    pub fn one(name: impl Into<String>) -> Self {
        ClusterScope::One(name.into())
    }

    pub(crate) fn contains(&self, cluster: &str) -> bool {
        match self {
            ClusterScope::One(name) => name == cluster,
            ClusterScope::All => true,
        }
    }
}

/// The set of objects a list or watch covers: one resource in one or all clusters, optionally one
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub cluster: ClusterScope,
    pub resource: String,
    /// `None` covers every namespace (and cluster-scoped objects).
    pub namespace: Option<String>,
}

impl Scope {
    pub fn new(cluster: ClusterScope, resource: impl Into<String>, namespace: Option<String>) -> Self {
        Self {
            cluster,
            resource: resource.into(),
            namespace,
        }
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.cluster.contains(&key.cluster)
            && self.resource == key.resource
            && self.namespace.as_ref().is_none_or(|ns| *ns == key.namespace)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let probe = ObjectKey::new(
            match &self.cluster {
                ClusterScope::One(c) => c.as_str(),
                ClusterScope::All => "*",
            },
            self.resource.clone(),
            self.namespace.clone().unwrap_or_default(),
            "-",
        );
        probe.validate()
    }
}
