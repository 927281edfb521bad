//! Validated names: tenant slugs, domain names and plan names.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize};

/// Why a name was refused. The message is safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

fn err(msg: impl Into<String>) -> NameError {
    NameError(msg.into())
}

/// Slugs that would collide with platform routes, infrastructure hostnames or look like
/// impersonation. A tenant can never be called one of these.
pub const RESERVED_SLUGS: &[&str] = &[
    "admin",
    "administrator",
    "api",
    "app",
    "apps",
    "assets",
    "auth",
    "billing",
    "blog",
    "cdn",
    "console",
    "dashboard",
    "default",
    "dev",
    "docs",
    "ftp",
    "help",
    "imap",
    "internal",
    "localhost",
    "login",
    "logout",
    "mail",
    "metrics",
    "mx",
    "news",
    "ns1",
    "ns2",
    "oauth",
    "operator",
    "operators",
    "platform",
    "pop",
    "pop3",
    "portal",
    "root",
    "security",
    "smtp",
    "sso",
    "staging",
    "static",
    "status",
    "support",
    "system",
    "tenant",
    "tenantplane",
    "tenants",
    "test",
    "www",
    "healthz",
    "readyz",
    "public",
    "null",
    "undefined",
];

/// Validates one DNS label (RFC 1123, lowercase only).
fn check_label(label: &str, what: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(err(format!("{what} has an empty label")));
    }
    if label.len() > 63 {
        return Err(err(format!("{what} has a label longer than 63 characters")));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err(format!(
            "{what} may contain only lowercase letters a-z, digits and '-'"
        )));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(err(format!("{what} labels must not start or end with '-'")));
    }
    Ok(())
}

/// A tenant slug: a single DNS label, 3–63 characters, lowercase letters, digits and
/// hyphens, starting with a letter, not a reserved word, no `xn--`-style double hyphen
/// at positions 3–4 (punycode look-alikes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z][a-z0-9-]{1,61}[a-z0-9]$", example = "real-hospital-portugues")]
pub struct Slug(String);

impl Slug {
    /// The slug as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Slug {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 3 || s.len() > 63 {
            return Err(err("slug must be 3 to 63 characters long"));
        }
        check_label(s, "slug")?;
        if !s.as_bytes()[0].is_ascii_lowercase() {
            return Err(err("slug must start with a letter"));
        }
        if s.get(2..4) == Some("--") {
            return Err(err(
                "slug must not have '--' at positions 3-4 (reserved for IDNs)",
            ));
        }
        if RESERVED_SLUGS.contains(&s) {
            return Err(err(format!("slug '{s}' is reserved")));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fully-qualified domain name, lowercase, without a trailing dot or port: at least two
/// labels, at most 253 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+(?![0-9]+\\.?$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.?$", example = "records.hospital-sao-joao.pt")]
pub struct DomainName(String);

impl DomainName {
    /// The domain as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Normalises what arrives in a `Host` header: lowercase, port and one trailing dot
    /// removed. Returns `None` for anything that is not a plausible host name.
    pub fn from_host_header(host: &str) -> Option<String> {
        let host = host.trim();
        if host.is_empty() || host.len() > 260 || host.starts_with('[') {
            return None;
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                name
            }
            Some(_) => return None,
            None => host,
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return None;
        }
        Some(name.to_ascii_lowercase())
    }
}

impl FromStr for DomainName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.len() > 253 {
            return Err(err("domain must be at most 253 characters long"));
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("domain must be lowercase"));
        }
        let labels: Vec<&str> = s.split('.').collect();
        if labels.len() < 2 {
            return Err(err(
                "domain must have at least two labels (e.g. example.org)",
            ));
        }
        for l in &labels {
            check_label(l, "domain")?;
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err("domain must not be an IP address"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a plan: 2–32 characters, lowercase letters, digits and hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$", example = "medium")]
pub struct PlanName(String);

impl PlanName {
    /// The plan name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PlanName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 2 || s.len() > 32 {
            return Err(err("plan name must be 2 to 32 characters long"));
        }
        check_label(s, "plan name")?;
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for PlanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! deserialize_via_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_via_from_str!(Slug, DomainName, PlanName);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugs() {
        for ok in ["abc", "real-hospital-portugues", "h1", "a23"]
            .iter()
            .filter(|s| s.len() >= 3)
        {
            assert!(ok.parse::<Slug>().is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "ab",
            "Abc",
            "1abc",
            "abc-",
            "-abc",
            "a_b",
            "ab c",
            "xn--abc",
            "admin",
            "www",
            "ação",
            long.as_str(),
            "",
        ] {
            assert!(bad.parse::<Slug>().is_err(), "{bad}");
        }
        assert!("a".repeat(63).parse::<Slug>().is_ok());
    }

    #[test]
    fn domains() {
        assert!("records.example.org".parse::<DomainName>().is_ok());
        assert_eq!(
            "example.org.".parse::<DomainName>().unwrap().as_str(),
            "example.org"
        );
        for bad in [
            "localhost",
            "Example.org",
            "a..b",
            "-a.org",
            "10.0.0.1",
            "a b.org",
            "x.org:80",
        ] {
            assert!(bad.parse::<DomainName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn host_header_normalisation() {
        assert_eq!(
            DomainName::from_host_header("A.Example.ORG:8080").as_deref(),
            Some("a.example.org")
        );
        assert_eq!(
            DomainName::from_host_header("a.example.org.").as_deref(),
            Some("a.example.org")
        );
        assert_eq!(DomainName::from_host_header("a.example.org:x"), None);
        assert_eq!(DomainName::from_host_header("user@a.example.org"), None);
        assert_eq!(DomainName::from_host_header("[::1]:80"), None);
        assert_eq!(DomainName::from_host_header(""), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,80}") {
            let _ = s.parse::<Slug>();
            let _ = s.parse::<DomainName>();
            let _ = s.parse::<PlanName>();
            let _ = DomainName::from_host_header(&s);
        }

        #[test]
        fn valid_slugs_are_valid_labels(s in "[a-z][a-z0-9-]{1,61}[a-z0-9]") {
            if let Ok(slug) = s.parse::<Slug>() {
                let host = format!("{}.example.org", slug);
                prop_assert!(host.parse::<DomainName>().is_ok());
            }
        }
    }
}
