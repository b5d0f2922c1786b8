//! What stands before the routes on every listener: the web configuration's gate
//! ([`super::secure`]) and blackbox_exporter's `--web.route-prefix` / `--web.external-url`.
//!
//! With a prefix `/x/` (blackbox's rules): `/x/metrics` is the route `/metrics`, `/x` redirects
//! to `/x/`, `/` redirects to the external URL, anything else is 404. Pages link relatively, so
//! they need not know the prefix.

use std::sync::Arc;

use http::Uri;

/// The front of a listener.
#[derive(Clone, Debug)]
pub struct Front {
    pub security: Option<Arc<super::secure::WebSecurity>>,
    /// `/` or `/x/` (leading and trailing slash).
    pub prefix: String,
    /// Where `/` redirects when there is a prefix.
    pub external_url: String,
}

impl Default for Front {
    fn default() -> Self {
        Front {
            security: None,
            prefix: "/".into(),
            external_url: "/".into(),
        }
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq)]
pub enum Route {
    /// To the routes, as it came (no prefix).
    Same,
    /// To the routes, as this URI.
    Inner(Uri),
    Redirect(String),
    NotFound,
}

/// blackbox's normalisation: `x`, `/x`, `/x/` all mean `/x/`; empty means `/`.
pub fn normalise_prefix(p: &str) -> String {
    let t = p.trim_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        format!("/{t}/")
    }
}

impl Front {
    pub fn route(&self, uri: &Uri) -> Route {
        if self.prefix == "/" {
            return Route::Same;
        }
        let path = uri.path();
        let bare = self.prefix.trim_end_matches('/');
        if path == "/" {
            return Route::Redirect(self.external_url.clone());
        }
        if path == bare {
            return Route::Redirect(self.prefix.clone());
        }
        let Some(rest) = path.strip_prefix(bare).filter(|r| r.starts_with('/')) else {
            return Route::NotFound;
        };
        let pq = match uri.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        match pq.parse() {
            Ok(u) => Route::Inner(u),
            Err(_) => Route::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_stripped_and_its_edges_redirect() {
        let f = Front {
            prefix: normalise_prefix("sonde"),
            external_url: "https://mon.example.com/sonde".into(),
            ..Default::default()
        };
        let r = |u: &str| f.route(&u.parse().unwrap());
        assert_eq!(
            r("/sonde/metrics"),
            Route::Inner("/metrics".parse().unwrap())
        );
        assert_eq!(
            r("/sonde/probe?target=a&module=b"),
            Route::Inner("/probe?target=a&module=b".parse().unwrap())
        );
        assert_eq!(r("/sonde/"), Route::Inner("/".parse().unwrap()));
        assert_eq!(r("/sonde"), Route::Redirect("/sonde/".into()));
        assert_eq!(
            r("/"),
            Route::Redirect("https://mon.example.com/sonde".into())
        );
        assert_eq!(r("/metrics"), Route::NotFound);
        assert_eq!(r("/sondex/metrics"), Route::NotFound);
        // Without a prefix every request goes to the routes untouched.
        let root = Front::default();
        assert_eq!(root.route(&"/probe?target=a".parse().unwrap()), Route::Same);
    }

    #[test]
    fn prefixes_are_normalised_as_blackbox_does() {
        assert_eq!(normalise_prefix(""), "/");
        assert_eq!(normalise_prefix("/"), "/");
        assert_eq!(normalise_prefix("a/b"), "/a/b/");
        assert_eq!(normalise_prefix("/a/b/"), "/a/b/");
    }
}
