//! Fault injection: make the fake misbehave on purpose for the next matching requests.

use std::time::Duration;

/// A misbehaviour for the next matching requests, installed with
/// [`RunningFake::inject`](crate::RunningFake::inject).
///
/// Faults are checked before routing, authentication and throttling; the first installed
/// fault that matches a request is applied and uses up one of its `times`. Faulted requests
/// are logged and cost no rate-limit budget (except [`Fault::delay`], which then answers
/// normally, and [`Fault::drop_after_handling`], which handles the request fully).
/// A fault with [`Fault::skip`] lets its first matching requests through (the next
/// installed faults still see them).
///
/// ```
/// use plane_fake::Fault;
/// use std::time::Duration;
/// let f = Fault::status(503).times(2).method("GET").path_contains("/work-items/");
/// let d = Fault::delay(Duration::from_millis(200));
/// let _ = (f, d, Fault::drop_connection(), Fault::too_many_requests(7));
/// // The third POST is created, then its answer is lost.
/// let third = Fault::drop_after_handling().method("POST").skip(2);
/// # let _ = third;
/// ```
#[derive(Debug, Clone)]
pub struct Fault {
    pub(crate) kind: FaultKind,
    pub(crate) remaining: usize,
    pub(crate) skip: usize,
    pub(crate) method: Option<String>,
    pub(crate) path_contains: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Status(u16),
    Delay(Duration),
    Drop,
    DropAfterHandling,
    TooManyRequests(u64),
}

impl Fault {
    fn new(kind: FaultKind) -> Self {
        Fault {
            kind,
            remaining: 1,
            skip: 0,
            method: None,
            path_contains: None,
        }
    }

    /// Answer with `status` and the body Plane (or the proxy in front of it) sends for it:
    /// 500 → `{"error":"Something went wrong please try again later"}`, 502/503/504 → a plain
    /// HTML gateway page, 429 → Plane's throttle body without `Retry-After`, other codes a
    /// small JSON body. A code outside 100..=999 is answered as 500.
    pub fn status(status: u16) -> Self {
        Fault::new(FaultKind::Status(status))
    }

    /// Answer normally, but only after `d`.
    pub fn delay(d: Duration) -> Self {
        Fault::new(FaultKind::Delay(d))
    }

    /// Close the TCP connection without sending any response.
    pub fn drop_connection() -> Self {
        Fault::new(FaultKind::Drop)
    }

    /// Handle the request completely (authentication, throttle, the write, its webhooks),
    /// then close the connection without answering: the "Plane did it, the client never
    /// heard" window. The request log records status 0 for it.
    pub fn drop_after_handling() -> Self {
        Fault::new(FaultKind::DropAfterHandling)
    }

    /// A 429 exactly like Plane's throttle: `Retry-After: <secs>`, body
    /// `{"error_code":5900,"error_message":"RATE_LIMIT_EXCEEDED"}`, no `X-RateLimit-*`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Fault::new(FaultKind::TooManyRequests(retry_after_secs))
    }

    /// Apply to the next `n` matching requests (default 1).
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = n;
        self
    }

    /// Let the first `n` matching requests through untouched, then apply to the next ones
    /// (`skip(2)` faults the third match): "fail after k creates".
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    /// Only match requests with this method (case-insensitive).
    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_ascii_uppercase());
        self
    }

    /// Only match requests whose path contains `s`.
    pub fn path_contains(mut self, s: &str) -> Self {
        self.path_contains = Some(s.to_owned());
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.remaining > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|s| path.contains(s))
    }
}

/// Takes one use of the first matching fault that is not skipping, dropping faults that
/// are used up; every skipping fault that matches counts the request as one skipped.
pub(crate) fn take_matching(
    faults: &mut Vec<Fault>,
    method: &str,
    path: &str,
) -> Option<FaultKind> {
    let mut found = None;
    for (i, f) in faults.iter_mut().enumerate() {
        if !f.matches(method, path) {
            continue;
        }
        if f.skip > 0 {
            f.skip -= 1;
        } else {
            found = Some(i);
            break;
        }
    }
    let idx = found?;
    let fault = &mut faults[idx];
    fault.remaining -= 1;
    let kind = fault.kind.clone();
    if fault.remaining == 0 {
        faults.remove(idx);
    }
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_filters() {
        let mut faults = vec![
            Fault::status(500).times(2).method("post"),
            Fault::drop_connection().path_contains("/states/"),
        ];
        assert_eq!(take_matching(&mut faults, "GET", "/a/"), None);
        assert_eq!(
            take_matching(&mut faults, "POST", "/a/"),
            Some(FaultKind::Status(500))
        );
        assert_eq!(
            take_matching(&mut faults, "POST", "/states/"),
            Some(FaultKind::Status(500))
        );
        assert_eq!(
            take_matching(&mut faults, "POST", "/states/"),
            Some(FaultKind::Drop)
        );
        assert!(faults.is_empty());
    }

    #[test]
    fn skip_lets_the_first_matches_through() {
        let mut faults = vec![Fault::drop_after_handling().method("POST").skip(2)];
        assert_eq!(take_matching(&mut faults, "GET", "/a/"), None);
        assert_eq!(take_matching(&mut faults, "POST", "/a/"), None);
        assert_eq!(take_matching(&mut faults, "POST", "/a/"), None);
        assert_eq!(
            take_matching(&mut faults, "POST", "/a/"),
            Some(FaultKind::DropAfterHandling)
        );
        assert_eq!(take_matching(&mut faults, "POST", "/a/"), None);
        assert!(faults.is_empty());

        // A skipping fault does not hide the request from the faults after it.
        let mut faults = vec![Fault::status(500).skip(1), Fault::status(503).times(1)];
        assert_eq!(
            take_matching(&mut faults, "GET", "/a/"),
            Some(FaultKind::Status(503))
        );
        assert_eq!(
            take_matching(&mut faults, "GET", "/a/"),
            Some(FaultKind::Status(500))
        );
        assert!(faults.is_empty());
    }
}
