//! Work items (formerly "issues"), the resource a sync lives on.
//!
//! Paths use `work-items` (or `issues` with
//! [`legacy_issue_paths`](crate::PlaneClientBuilder::legacy_issue_paths)); Plane
//! routes both to the same views, and payloads and webhooks still say `issue`.

use chrono::NaiveDate;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Collection;
use crate::client::Request;
use crate::models::{Timestamp, identified};
use crate::{
    Error, Expandable, Label, ListParams, Page, PlaneClient, Priority, ProjectLite, StateLite,
    UserLite, WorkItemLite,
};

/// A work item. Fields that `expand=` can turn into objects are [`Expandable`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// Plane's id of this work item.
    pub id: Uuid,
    /// The work item's name as shown in Plane.
    pub name: Option<String>,
    /// The number in `BIR-12`.
    pub sequence_id: Option<u64>,
    /// The description as HTML, Plane's rich-text format.
    pub description_html: Option<String>,
    /// The priority: urgent, high, medium, low or none.
    pub priority: Option<Priority>,
    /// The workflow state: its id, or the state itself with `expand=state`.
    pub state: Option<Expandable<StateLite>>,
    /// The project the work item belongs to.
    pub project: Option<Expandable<ProjectLite>>,
    /// The workspace the work item belongs to.
    pub workspace: Option<Uuid>,
    /// The parent work item, if any.
    pub parent: Option<Expandable<WorkItemLite>>,
    /// The users it is assigned to (ids, or users with `expand=assignees`).
    #[serde(default)]
    pub assignees: Vec<Expandable<UserLite>>,
    /// Its labels (ids, or labels with `expand=labels`).
    #[serde(default)]
    pub labels: Vec<Expandable<Label>>,
    /// The planned start date.
    pub start_date: Option<NaiveDate>,
    /// The due date (a calendar date, no time of day).
    pub target_date: Option<NaiveDate>,
    /// When it moved to a completed state; `None` while it is open.
    pub completed_at: Option<Timestamp>,
    /// When the work item was archived; `None` while it is active.
    pub archived_at: Option<Timestamp>,
    /// True for a draft, which Plane keeps out of the project's lists.
    pub is_draft: Option<bool>,
    /// The system that created this work item through the API (for example `plane-bir`); with `external_id` it names the record there.
    pub external_source: Option<String>,
    /// The record's id in `external_source`; the pair is what a sync looks the work item up by.
    pub external_id: Option<String>,
    /// The user who created it.
    pub created_by: Option<Expandable<UserLite>>,
    /// The user who last changed it.
    pub updated_by: Option<Expandable<UserLite>>,
    /// When Plane created the work item.
    pub created_at: Option<Timestamp>,
    /// When the work item last changed in Plane.
    pub updated_at: Option<Timestamp>,
    /// Fields this version of the client does not name, kept so that nothing Plane sends is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
identified!(WorkItem);

/// The body of a work item create or update; unset fields are not sent.
///
/// The fields Plane lets a PATCH empty (`state`, `parent`, `start_date`,
/// `target_date`) are tri-state: `None` leaves the field alone, `Some(None)` sends
/// JSON `null` (clears it; a null `state` puts the item back in the project's default
/// state), `Some(Some(v))` sets it. The `clear_*` methods say the same more plainly.
///
/// ```
/// use plane_core::{Priority, WorkItemFields};
/// let body = WorkItemFields::new("File BIR 1601-C for October")
///     .priority(Priority::High)
///     .external("plane-bir", "1601C-2026-10");
/// let json = serde_json::to_value(&body).unwrap();
/// assert_eq!(json["priority"], "high");
/// assert_eq!(json["external_id"], "1601C-2026-10");
/// assert!(json.get("state").is_none());
///
/// // Clearing a date sends an explicit null.
/// let patch = WorkItemFields::default()
///     .target_date("2026-11-10".parse().unwrap())
///     .clear_start_date();
/// let json = serde_json::to_value(&patch).unwrap();
/// assert_eq!(json, serde_json::json!({"start_date": null, "target_date": "2026-11-10"}));
/// ```
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkItemFields {
    /// The name to set.
    pub name: Option<String>,
    /// The description to set, as HTML.
    pub description_html: Option<String>,
    /// The priority to set.
    pub priority: Option<Priority>,
    /// The id of the state to move it to; `Some(None)` sends `null` (back to the project's default).
    pub state: Option<Option<Uuid>>,
    /// The id of the parent to set; `Some(None)` sends `null` (no parent).
    pub parent: Option<Option<Uuid>>,
    /// The ids of the users to assign (replaces the current list).
    pub assignees: Option<Vec<Uuid>>,
    /// The ids of the labels to set (replaces the current list).
    pub labels: Option<Vec<Uuid>>,
    /// The start date to set; `Some(None)` sends `null` (clears it).
    pub start_date: Option<Option<NaiveDate>>,
    /// The due date to set; `Some(None)` sends `null` (clears it).
    pub target_date: Option<Option<NaiveDate>>,
    /// The system this record comes from (for example `plane-bir`), stored by Plane for later look-ups.
    pub external_source: Option<String>,
    /// The record's id in `external_source`, unique per project with it.
    pub external_id: Option<String>,
    /// Anything else Plane accepts.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WorkItemFields {
    /// A new work item's required field.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the state.
    pub fn state(mut self, state: Uuid) -> Self {
        self.state = Some(Some(state));
        self
    }

    /// Sets the description (HTML).
    pub fn description_html(mut self, html: impl Into<String>) -> Self {
        self.description_html = Some(html.into());
        self
    }

    /// Sets the due date.
    pub fn target_date(mut self, date: NaiveDate) -> Self {
        self.target_date = Some(Some(date));
        self
    }

    /// Sets the start date.
    pub fn start_date(mut self, date: NaiveDate) -> Self {
        self.start_date = Some(Some(date));
        self
    }

    /// Sends `"start_date": null`, emptying the start date.
    pub fn clear_start_date(mut self) -> Self {
        self.start_date = Some(None);
        self
    }

    /// Sends `"target_date": null`, emptying the due date.
    pub fn clear_target_date(mut self) -> Self {
        self.target_date = Some(None);
        self
    }

    /// Sets the parent work item.
    pub fn parent(mut self, parent: Uuid) -> Self {
        self.parent = Some(Some(parent));
        self
    }

    /// Sends `"parent": null`, detaching the item from its parent.
    pub fn clear_parent(mut self) -> Self {
        self.parent = Some(None);
        self
    }

    /// Sends `"state": null`: Plane puts the item back in the project's default state.
    pub fn reset_state(mut self) -> Self {
        self.state = Some(None);
        self
    }

    /// Sets the labels.
    pub fn labels(mut self, labels: impl IntoIterator<Item = Uuid>) -> Self {
        self.labels = Some(labels.into_iter().collect());
        self
    }

    /// Keys the item to a record of another system, which makes creates idempotent.
    pub fn external(mut self, source: impl Into<String>, id: impl Into<String>) -> Self {
        self.external_source = Some(source.into());
        self.external_id = Some(id.into());
        self
    }

    fn external_key(&self) -> Option<(&str, &str)> {
        Some((
            self.external_source.as_deref()?,
            self.external_id.as_deref()?,
        ))
    }
}

/// Handler for a project's work items. Get one with [`PlaneClient::work_items`].
///
/// `fields` and `expand` set on the handler apply to `get`, `get_by_identifier`
/// and `find_by_external_id`; listings take theirs in [`ListParams`].
#[derive(Debug, Clone)]
pub struct WorkItemsHandler<'a> {
    collection: Collection<'a>,
    project: Uuid,
    select: ListParams,
}

impl PlaneClient {
    /// The work items of a project.
    ///
    /// ```no_run
    /// use futures::TryStreamExt;
    /// use plane_core::ListParams;
    /// # async fn run(client: plane_core::PlaneClient, project: uuid::Uuid) -> Result<(), plane_core::Error> {
    /// let items: Vec<_> = client
    ///     .work_items(project)
    ///     .stream(ListParams::new().per_page(100).expand(["state"]))
    ///     .try_collect()
    ///     .await?;
    /// println!("{} work items", items.len());
    /// # Ok(()) }
    /// ```
    pub fn work_items(&self, project: Uuid) -> WorkItemsHandler<'_> {
        WorkItemsHandler {
            collection: Collection::new(
                self,
                self.project_path(project, &[self.work_items_segment()]),
            ),
            project,
            select: ListParams::new(),
        }
    }
}

impl<'a> WorkItemsHandler<'a> {
    /// Only these fields in single-item answers (`id` is always added).
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.select = self.select.fields(fields);
        self
    }

    /// Expand these fields in single-item answers.
    pub fn expand<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.select = self.select.expand(names);
        self
    }

    /// The project this handler works in.
    pub fn project(&self) -> Uuid {
        self.project
    }

    /// One page of work items (filters such as `order_by` go in `params`).
    pub async fn list(&self, params: &ListParams) -> Result<Page<WorkItem>, Error> {
        self.collection.page(params).await
    }

    /// Every work item of the project, each once, following the cursors.
    pub fn stream(&self, params: ListParams) -> crate::ItemStream<WorkItem> {
        self.collection.walk(params)
    }

    /// One work item by id.
    pub async fn get(&self, id: Uuid) -> Result<WorkItem, Error> {
        self.collection.get(id, &self.select).await
    }

    /// One work item by its human identifier, e.g. `BIR-12`.
    pub async fn get_by_identifier(&self, identifier: &str) -> Result<WorkItem, Error> {
        let valid = identifier.rsplit_once('-').is_some_and(|(key, number)| {
            !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric())
                && number.parse::<u64>().is_ok()
        });
        if !valid {
            return Err(Error::InvalidArgument {
                message: format!(
                    "{identifier:?} is not a work item identifier like PROJ-12 \
                     (project identifier, '-', sequence number)"
                ),
            });
        }
        let client = self.collection.client;
        let request = Request::new(
            Method::GET,
            client.workspace_path(&[client.work_items_segment(), identifier]),
        )
        .query(self.select.selection_query()?);
        client.send_json(request).await
    }

    /// The work item keyed to `(source, id)` of another system, if there is one.
    pub async fn find_by_external_id(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<WorkItem>, Error> {
        let mut query = vec![
            ("external_id".to_owned(), id.to_owned()),
            ("external_source".to_owned(), source.to_owned()),
        ];
        query.extend(self.select.selection_query()?);
        let request = Request::new(Method::GET, self.collection.segments.clone()).query(query);
        match self.collection.client.send_json(request).await {
            Ok(item) => Ok(Some(item)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a work item.
    ///
    /// A POST is never repeated blindly. When `fields` carries an external key and
    /// the answer is lost (timeout, dropped connection, 5xx), the item is looked up
    /// by that key, twice, after pauses that grow with each repeat (the retry
    /// policy's base delay doubled): if the first POST took effect it is returned,
    /// otherwise the POST is sent again (within the retry budget). A 409 for the
    /// key on such a repeat resolves to the existing item; on the first attempt it
    /// is returned as [`Error::Conflict`] with the existing id. Plane checks the key
    /// in application code only, so a first POST still running after both lookups
    /// could in principle land beside the second: a sync should look up before it
    /// creates, as plane-bir does.
    pub async fn create(&self, fields: &WorkItemFields) -> Result<WorkItem, Error> {
        let first = self.collection.create(fields).await;
        let Some((source, external_id)) = fields.external_key() else {
            return first;
        };
        let policy = self.collection.client.retry_policy();
        let (max_retries, pause) = (policy.max_retries, policy.base_delay);
        let mut outcome = first;
        for repeat in 1..=max_retries {
            match outcome {
                Err(ref e) if e.is_ambiguous() => {
                    tracing::warn!(error = %e, repeat, "work item create had no clear answer; looking it up by external id");
                    // The first POST may still be running on Plane, which has no
                    // unique constraint on the key: give it time and look twice.
                    for look in 0..2 {
                        tokio::time::sleep(pause * 2u32.pow(repeat + look)).await;
                        if let Some(item) = self.find_by_external_id(source, external_id).await? {
                            return Ok(item);
                        }
                    }
                    outcome = self.collection.create(fields).await;
                    if let Err(Error::Conflict {
                        existing_id: Some(id),
                        ..
                    }) = outcome
                    {
                        return self.get(id).await;
                    }
                }
                other => return other,
            }
        }
        outcome
    }

    /// Changes the fields that are set.
    pub async fn update(&self, id: Uuid, fields: &WorkItemFields) -> Result<WorkItem, Error> {
        self.collection.update(id, fields).await
    }

    /// Deletes a work item (Plane sends no webhook for this).
    pub async fn delete(&self, id: Uuid) -> Result<(), Error> {
        self.collection.delete(id).await
    }

    /// The comments of a work item.
    pub fn comments(&self, work_item: Uuid) -> super::comments::CommentsHandler<'a> {
        super::comments::CommentsHandler::new(self.child(work_item, "comments"))
    }

    /// The links of a work item.
    pub fn links(&self, work_item: Uuid) -> super::links::LinksHandler<'a> {
        super::links::LinksHandler::new(self.child(work_item, "links"))
    }

    /// The activity log of a work item.
    pub fn activities(&self, work_item: Uuid) -> super::activities::ActivitiesHandler<'a> {
        super::activities::ActivitiesHandler::new(self.child(work_item, "activities"))
    }

    fn child(&self, work_item: Uuid, what: &str) -> Collection<'a> {
        let mut segments = self.collection.segments.clone();
        segments.extend([work_item.to_string(), what.to_owned()]);
        Collection::new(self.collection.client, segments)
    }
}
