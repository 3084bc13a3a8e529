//! Where a call goes: its path `/crm.<package>.v1.<Service>/<Method>` names the service, whose
//! package names the upstream. Pure functions, no I/O.

use std::collections::BTreeMap;

use http::{Uri, uri::Authority};

/// The two parts of a gRPC path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcPath<'a> {
    /// Fully qualified service name, e.g. `crm.marketing.v1.PartnerService`.
    pub service: &'a str,
    /// Method name, e.g. `GetPartner`.
    pub method: &'a str,
}

impl<'a> GrpcPath<'a> {
    /// Splits `/package.Service/Method`; `None` when the path does not have that shape.
    pub fn parse(path: &'a str) -> Option<Self> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        (valid(service) && valid(method) && !method.contains('.') && service.contains('.'))
            .then_some(Self { service, method })
    }

    /// The package of the service: `crm.marketing.v1` for `crm.marketing.v1.PartnerService`.
    pub fn package(&self) -> &'a str {
        self.service
            .rsplit_once('.')
            .map_or(self.service, |(package, _)| package)
    }
}

/// The route key of a CRM package: `marketing` for `crm.marketing.v1`, `email_import` for
/// `crm.email_import.v1`. `None` for a package outside `crm.<name>.v<N>`.
pub fn route_key(package: &str) -> Option<&str> {
    let rest = package.strip_prefix("crm.")?;
    let (key, version) = rest.split_once('.')?;
    let is_version = version
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (is_route_key(key) && is_version).then_some(key)
}

/// Whether `key` can name a route: a lower-case package name segment.
pub fn is_route_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// A service's address: the scheme and authority every forwarded call is sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The route key (`marketing`), for logs and error messages.
    pub name: String,
    /// `host:port`.
    pub authority: Authority,
}

impl Upstream {
    /// The host of [`Self::authority`], without the brackets of an IPv6 address: what a
    /// resolver takes.
    pub fn host(&self) -> &str {
        let host = self.authority.host();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The port of [`Self::authority`] (always present: [`Self::parse_url`] requires it).
    pub fn port(&self) -> u16 {
        self.authority.port_u16().unwrap_or(80)
    }

    /// Parses `http://host:port` (a trailing `/` is tolerated). Only plaintext HTTP/2 (h2c) is
    /// spoken upstream: inside the cluster, NetworkPolicies (or a mesh) protect the hop.
    pub fn parse_url(url: &str) -> Result<Authority, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url:?} must start with http:// (h2c)"));
        }
        if uri.path() != "/" || uri.query().is_some() {
            return Err(format!("{url:?} must have no path"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        if authority.port_u16().is_none() {
            return Err(format!("{url:?} must name a port"));
        }
        Ok(authority)
    }
}

/// The upstream of every routed package.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    by_key: BTreeMap<String, Upstream>,
}

impl Routes {
    /// Routes from the settings' `routes` map (key → `http://host:port`).
    pub fn from_settings(routes: &BTreeMap<String, String>) -> Result<Self, String> {
        let by_key = routes
            .iter()
            .map(|(key, url)| {
                Upstream::parse_url(url).map(|authority| {
                    (
                        key.clone(),
                        Upstream {
                            name: key.clone(),
                            authority,
                        },
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { by_key })
    }

    /// Every upstream, in route key order.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.by_key.values()
    }

    /// The upstream serving `path`'s service, `None` when its package has no route.
    pub fn resolve(&self, path: GrpcPath<'_>) -> Option<&Upstream> {
        route_key(path.package()).and_then(|key| self.by_key.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes::from_settings(&BTreeMap::from([
            ("marketing".to_owned(), "http://127.0.0.1:50061".to_owned()),
            (
                "email_import".to_owned(),
                "http://email-import:50065/".to_owned(),
            ),
        ]))
        .unwrap()
    }

    fn resolve<'r>(routes: &'r Routes, path: &str) -> Option<&'r Upstream> {
        routes.resolve(GrpcPath::parse(path).expect(path))
    }

    #[test]
    fn a_call_goes_to_the_upstream_of_its_package() {
        let routes = routes();
        let path = GrpcPath::parse("/crm.marketing.v1.PartnerService/GetPartner").unwrap();
        assert_eq!(path.service, "crm.marketing.v1.PartnerService");
        assert_eq!(path.method, "GetPartner");
        assert_eq!(path.package(), "crm.marketing.v1");
        let upstream = routes.resolve(path).unwrap();
        assert_eq!(upstream.name, "marketing");
        assert_eq!(upstream.authority.as_str(), "127.0.0.1:50061");

        let upstream = resolve(&routes, "/crm.email_import.v1.MailboxService/SyncMailbox").unwrap();
        assert_eq!(upstream.authority.as_str(), "email-import:50065");
        assert_eq!((upstream.host(), upstream.port()), ("email-import", 50065));
    }

    #[test]
    fn an_ipv6_upstream_host_is_given_to_the_resolver_without_brackets() {
        let routes = Routes::from_settings(&BTreeMap::from([(
            "marketing".to_owned(),
            "http://[::1]:50061".to_owned(),
        )]))
        .unwrap();
        let upstream = routes.upstreams().next().unwrap();
        assert_eq!((upstream.host(), upstream.port()), ("::1", 50061));
    }

    #[test]
    fn an_unrouted_or_foreign_package_has_no_upstream() {
        let routes = routes();
        for path in [
            "/crm.tasks.v1.TaskService/GetTask",
            "/crm.marketing.PartnerService/GetPartner",
            "/other.marketing.v1.PartnerService/GetPartner",
            "/grpc.health.v1.Health/Check",
        ] {
            assert_eq!(resolve(&routes, path), None, "{path}");
        }
    }

    #[test]
    fn a_malformed_path_is_refused() {
        for path in [
            "/",
            "/crm.marketing.v1.PartnerService",
            "/crm.marketing.v1.PartnerService/",
            "/crm.marketing.v1.PartnerService/Get/Partner",
            "/PartnerService/GetPartner",
            "crm.marketing.v1.PartnerService/GetPartner",
            "/crm.marketing.v1.PartnerService/Get%20Partner",
        ] {
            assert_eq!(GrpcPath::parse(path), None, "{path}");
        }
    }

    #[test]
    fn route_keys_come_from_crm_packages_only() {
        assert_eq!(route_key("crm.marketing.v1"), Some("marketing"));
        assert_eq!(route_key("crm.email_import.v12"), Some("email_import"));
        assert_eq!(route_key("crm.marketing.beta"), None);
        assert_eq!(route_key("crm.Marketing.v1"), None);
        assert_eq!(route_key("crm.marketing.sub.v1"), None);
        assert_eq!(route_key("grpc.health.v1"), None);
    }

    #[test]
    fn upstream_urls_must_be_h2c_with_a_port() {
        assert!(Upstream::parse_url("http://marketing:50061").is_ok());
        assert!(Upstream::parse_url("https://marketing:50061").is_err());
        assert!(Upstream::parse_url("http://marketing").is_err());
        assert!(Upstream::parse_url("http://marketing:50061/api").is_err());
        assert!(Upstream::parse_url("marketing:50061").is_err());
    }
}
