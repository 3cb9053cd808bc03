//! Joining a configured base URL with Plane's `/api/v1/` paths.
//!
//! Plane routes every endpoint with a trailing slash and answers a slashless POST
//! with a redirect that loses the body, so URLs are built from segments here and
//! nowhere else: each segment is percent-encoded and the path always ends in `/`.

use std::fmt;

use url::Url;

use crate::Error;

/// The validated origin (plus optional path prefix) of a Plane server.
///
/// Accepts `https://api.plane.so`, `https://plane.example.com/`, a self-hosted
/// prefix such as `https://example.com/plane/`, and also a pasted API root such as
/// `https://api.plane.so/api/v1/` (the `/api/v1` suffix is stripped, not doubled).
/// Rejects anything that is not plain `http`/`https`, or that carries credentials,
/// a query or a fragment.
///
/// ```
/// use plane_core::BaseUrl;
/// let base = BaseUrl::parse("https://plane.example.com/plane//").unwrap();
/// let url = base.endpoint(&["workspaces", "acme", "projects"]).unwrap();
/// assert_eq!(url.as_str(), "https://plane.example.com/plane/api/v1/workspaces/acme/projects/");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// Always ends in `/api/v1/`.
    api_root: Url,
}

impl BaseUrl {
    /// Validates a base URL.
    pub fn parse(input: &str) -> Result<Self, Error> {
        // Shown without what may carry secrets (user:password@, the query):
        // some of these errors are about exactly that.
        let shown = redact(input.trim());
        let invalid = |why: &str| Error::InvalidConfig {
            key: "base_url",
            message: format!("{shown:?} is not a usable Plane base URL: {why}"),
        };
        let mut url = Url::parse(input.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "it carries credentials; pass the API key separately (PLANE_API_KEY)",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("it must not have a query or fragment"));
        }
        let mut prefix: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if prefix.ends_with(&["api".to_owned(), "v1".to_owned()]) {
            prefix.truncate(prefix.len() - 2);
        }
        // The prefix segments are already percent-encoded; set_path keeps them as they are.
        let path: String = prefix.iter().map(|s| format!("/{s}")).collect();
        url.set_path(&format!("{path}/api/v1/"));
        Ok(Self { api_root: url })
    }

    /// The server origin plus prefix, without `/api/v1/` (for display and OAuth URLs).
    pub fn origin(&self) -> String {
        let s = self.api_root.as_str();
        s.strip_suffix("api/v1/")
            .unwrap_or(s)
            .trim_end_matches('/')
            .to_owned()
    }

    /// `…/api/v1/<segments…>/`, each segment percent-encoded.
    ///
    /// An empty, `.` or `..` segment, or one with control characters (which URL
    /// parsing strips), is an error rather than a silently different URL.
    pub fn endpoint<S: AsRef<str>>(&self, segments: &[S]) -> Result<Url, Error> {
        let mut url = self.api_root.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("api_root was validated as a base URL");
            path.pop_if_empty();
            for segment in segments {
                let segment = segment.as_ref();
                if segment.is_empty()
                    || segment == "."
                    || segment == ".."
                    || segment.chars().any(char::is_control)
                {
                    return Err(Error::InvalidArgument {
                        message: format!(
                            "path segment {segment:?} in {:?} is not allowed \
                             (empty, '.', '..' or containing control characters)",
                            segments.iter().map(AsRef::as_ref).collect::<Vec<_>>()
                        ),
                    });
                }
                path.push(segment);
            }
            path.push("");
        }
        Ok(url)
    }
}

/// `scheme://[redacted]@host/path`, without query or fragment.
fn redact(input: &str) -> String {
    let without_query = input.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = without_query.split_once("://") else {
        return without_query.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://[redacted]@{host}{path}"),
        None => without_query.to_owned(),
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BaseUrl")
            .field(&self.api_root.as_str())
            .finish()
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin())
    }
}
