//! Plane's cursor pagination, as a `Page<T>` and as a `Stream` of every item.
//!
//! The "cursor" is offset paging in disguise (`per_page:page:is_prev`), so rows
//! created or deleted during a walk shift the pages. The stream therefore drops
//! items it has already yielded, stops on an empty page, and fails instead of
//! looping when a cursor comes back.

use std::collections::{HashSet, VecDeque};

use http::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::client::{DEFAULT_PER_PAGE, Request, check_per_page};
use crate::{Error, PlaneClient};

/// The items of a listing, page after page: a boxed (so `Unpin`) `Stream`.
pub type ItemStream<T> = futures::stream::BoxStream<'static, Result<T, Error>>;

/// One page of a paginated listing, with Plane's envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    /// The items of this page.
    pub results: Vec<T>,
    /// The cursor of the next page. Plane sends one even on the last page; look at
    /// `next_page_results`.
    pub next_cursor: Option<String>,
    /// The cursor of the previous page (on the first page it points before the start).
    pub prev_cursor: Option<String>,
    /// Whether another page exists.
    #[serde(default)]
    pub next_page_results: bool,
    /// Whether a previous page exists.
    #[serde(default)]
    pub prev_page_results: bool,
    /// Items on this page.
    #[serde(default)]
    pub count: u64,
    /// Total rows (for work items: of the unfiltered project).
    pub total_count: Option<u64>,
    /// `ceil(total / per_page)`.
    pub total_pages: Option<u64>,
    /// Same as `total_count`.
    pub total_results: Option<u64>,
    /// Always null on `/api/v1` today; kept for forward compatibility.
    pub extra_stats: Option<Value>,
}

/// Items with a Plane id, so a walk can drop repeats.
pub trait Identified {
    /// The item's id.
    fn id(&self) -> Uuid;
}

/// `per_page`, `cursor`, `fields`, `expand` and endpoint filters of a listing.
///
/// ```
/// use plane_core::ListParams;
/// let params = ListParams::new().per_page(50).fields(["name", "state"]).expand(["state"]);
/// let query = params.to_query(100).unwrap();
/// assert!(query.contains(&("per_page".into(), "50".into())));
/// // `id` is always requested with `fields`, so items can be told apart.
/// assert!(query.contains(&("fields".into(), "id,name,state".into())));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    per_page: Option<u32>,
    cursor: Option<String>,
    fields: Vec<String>,
    expand: Vec<String>,
    filters: Vec<(String, String)>,
}

impl ListParams {
    /// No parameters: the client's default page size, from the first page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Items per page (1..=1000; Plane Cloud documents 100 as its maximum).
    pub fn per_page(mut self, per_page: u32) -> Self {
        self.per_page = Some(per_page);
        self
    }

    /// Start from this cursor (as returned in `next_cursor`).
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Only these fields (Plane ignores unknown names). `id` is always added.
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields.extend(fields.into_iter().map(Into::into));
        self
    }

    /// Replace these id fields with objects (`state`, `labels`, `assignees`, `project`, `parent`...).
    pub fn expand<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expand.extend(names.into_iter().map(Into::into));
        self
    }

    /// Any other query parameter (an endpoint's filter, `order_by`...).
    pub fn filter(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filters.push((key.into(), value.into()));
        self
    }

    /// The query pairs; `default_per_page` applies when none was chosen.
    pub fn to_query(&self, default_per_page: u32) -> Result<Vec<(String, String)>, Error> {
        let per_page = self.per_page.unwrap_or(default_per_page);
        check_per_page(per_page)?;
        let mut query = vec![("per_page".to_owned(), per_page.to_string())];
        if let Some(cursor) = &self.cursor {
            query.push(("cursor".to_owned(), cursor.clone()));
        }
        query.extend(self.selection_query()?);
        // Plane reads the last value of a repeated parameter, so a filter must
        // not smuggle in a second page size, cursor or selection.
        if let Some((key, _)) = self
            .filters
            .iter()
            .find(|(k, _)| matches!(k.as_str(), "per_page" | "cursor" | "fields" | "expand"))
        {
            return Err(Error::InvalidArgument {
                message: format!("`{key}` is not a filter; use ListParams::{key}() instead"),
            });
        }
        query.extend(self.filters.iter().cloned());
        Ok(query)
    }

    /// Just `fields` and `expand`, for single-object endpoints.
    pub(crate) fn selection_query(&self) -> Result<Vec<(String, String)>, Error> {
        let mut query = Vec::new();
        for (key, names) in [("fields", &self.fields), ("expand", &self.expand)] {
            if names.is_empty() {
                continue;
            }
            // Plane splits on ',' without trimming, so a stray space or comma
            // would silently select nothing.
            if let Some(bad) = names
                .iter()
                .find(|n| n.is_empty() || n.contains([',', ' ']))
            {
                return Err(Error::InvalidArgument {
                    message: format!("{key} name {bad:?} must be a single field name"),
                });
            }
            let mut list: Vec<&str> = Vec::new();
            if key == "fields" && !names.iter().any(|n| n == "id") {
                list.push("id");
            }
            list.extend(names.iter().map(String::as_str));
            query.push((key.to_owned(), list.join(",")));
        }
        Ok(query)
    }
}

/// The page size to fall back to when a listing asking `requested` per page was
/// refused, or `None` when the error is not that refusal.
///
/// Plane's paginator answers a page size above its maximum with 400
/// `{"detail": "Invalid per_page value. Cannot exceed N."}` (CE: N = 1000). Plane Cloud
/// documents 100 as its maximum, so a server naming no usable N gets 100.
fn per_page_fallback(error: &Error, requested: u32) -> Option<u32> {
    let Error::BadRequest { message, body, .. } = error else {
        return None;
    };
    let detail = body
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or(message.as_str());
    if !detail.to_ascii_lowercase().contains("per_page") || requested <= DEFAULT_PER_PAGE {
        return None;
    }
    let named = detail
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok())
        .next_back()
        .filter(|&n| (1..requested).contains(&n));
    Some(named.unwrap_or(DEFAULT_PER_PAGE))
}

impl PlaneClient {
    /// Fetches one page.
    pub(crate) async fn page<T: DeserializeOwned>(
        &self,
        segments: Vec<String>,
        params: &ListParams,
    ) -> Result<Page<T>, Error> {
        self.page_adapting(segments, &mut params.clone()).await
    }

    /// Fetches one page. A first page (no cursor) asks at most the page size the server
    /// was found to accept, and a refusal of the page size falls back once and is
    /// remembered; `params.per_page` is set to the size used, so the next pages of a
    /// walk match its cursors. A page with a cursor keeps its size: Plane's cursor
    /// counts pages of that size.
    async fn page_adapting<T: DeserializeOwned>(
        &self,
        segments: Vec<String>,
        params: &mut ListParams,
    ) -> Result<Page<T>, Error> {
        let first_page = params.cursor.is_none();
        let requested = params.per_page.unwrap_or(self.per_page());
        if let Some(cap) = self
            .per_page_cap()
            .filter(|&cap| first_page && requested > cap)
        {
            params.per_page = Some(cap);
        }
        let query = params.to_query(self.per_page())?;
        let result = self
            .send_json(Request::new(Method::GET, segments.clone()).query(query))
            .await;
        let asked = params.per_page.unwrap_or(self.per_page());
        match result {
            Err(error) if first_page => {
                let Some(smaller) = per_page_fallback(&error, asked) else {
                    return Err(error);
                };
                tracing::warn!(
                    refused = asked,
                    fallback = smaller,
                    %error,
                    "Plane refused the page size; using the smaller one from now on"
                );
                self.remember_per_page_cap(smaller);
                params.per_page = Some(smaller);
                let query = params.to_query(self.per_page())?;
                self.send_json(Request::new(Method::GET, segments).query(query))
                    .await
            }
            other => other,
        }
    }

    /// Every item of a listing, page after page, each id once.
    pub(crate) fn walk<T>(&self, segments: Vec<String>, params: ListParams) -> crate::ItemStream<T>
    where
        T: DeserializeOwned + Identified + Send + 'static,
    {
        struct Walk<T> {
            client: PlaneClient,
            segments: Vec<String>,
            params: ListParams,
            buffer: VecDeque<T>,
            seen_ids: HashSet<Uuid>,
            used_cursors: HashSet<String>,
            finished: bool,
        }
        let start = Walk {
            client: self.clone(),
            segments,
            used_cursors: HashSet::from([params.cursor.clone().unwrap_or_default()]),
            params,
            buffer: VecDeque::new(),
            seen_ids: HashSet::new(),
            finished: false,
        };
        Box::pin(futures::stream::try_unfold(start, |mut walk| async move {
            loop {
                if let Some(item) = walk.buffer.pop_front() {
                    return Ok(Some((item, walk)));
                }
                if walk.finished {
                    return Ok(None);
                }
                let page: Page<T> = walk
                    .client
                    .page_adapting(walk.segments.clone(), &mut walk.params)
                    .await?;
                let more = page.next_page_results && !page.results.is_empty();
                for item in page.results {
                    if walk.seen_ids.insert(item.id()) {
                        walk.buffer.push_back(item);
                    }
                }
                if !more {
                    walk.finished = true;
                    continue;
                }
                let path = Request::new(Method::GET, walk.segments.clone()).display_path();
                let Some(next) = page.next_cursor.filter(|c| !c.is_empty()) else {
                    return Err(Error::Decode {
                        method: Method::GET,
                        path,
                        message: "next_page_results is true but next_cursor is missing".into(),
                        excerpt: String::new(),
                    });
                };
                if !walk.used_cursors.insert(next.clone()) {
                    return Err(Error::PaginationLoop {
                        method: Method::GET,
                        path,
                        cursor: next,
                    });
                }
                walk.params.cursor = Some(next);
            }
        }))
    }
}
