//! The sync: a profile's deadlines as work items in a Plane project, at the fewest requests.
//!
//! One run ([`sync`]):
//!
//! 1. **Lists** the project's states, its labels and its work items (every page, at
//!    `per_page=1000`; plane-core falls back to a smaller page when a server refuses it).
//!    Nothing else is read, and nothing is looked up one by one.
//! 2. **Plans**: each deadline is matched to a work item by
//!    `external_source = "plane-bir"` and [`external_id`], then compared with the store's
//!    row for it:
//!    - no work item → **create**, in the first state of the `unstarted` group (Plane owns
//!      the state from then on: the sync never changes it), with the form's label;
//!    - a work item but no row (an empty database, a crashed run, another machine) →
//!      **adopt** it, patching only the fields that differ;
//!    - what the sync would ask for changed since it last pushed (an override, a holiday,
//!      a new rule) → **update** the fields that changed;
//!    - Plane's owned fields (name, `description_html`, `target_date`) differ from the
//!      fingerprint of what Plane returned after the last push → **drift**, reported and
//!      restored;
//!    - the priority's bucket changed (days left, from the `today` given) → **update**
//!      the priority, except on filed or void items, whose priority is left alone;
//!    - anything else → **unchanged**, no request.
//! 3. **Writes** the plan, one request per work item (and one per missing label, created
//!    once; a 409 adopts the label that exists), and records each outcome in the
//!    [`DeadlineStore`] straight after its request, so a run killed at any point is
//!    resumed by the next without duplicates.
//!
//! A run with nothing to change therefore costs three listing requests (more only for
//! projects above 1000 work items), and a run with k changes adds k writes.
//!
//! # What a work item says
//!
//! - name: `1601-C 2026-03 · due 2026-04-15` (form, period, filing date);
//! - `description_html`: the form's name, the period, the rule, the filing and payment
//!   dates (both eFPS dates where they differ), the days that moved the date, the override
//!   and its reason if any. The reference gives no BIR web page per form, so there is no
//!   link; a form's page goes in `data/forms.toml` (`page`) once it is known;
//! - `target_date`: the earlier of the filing and payment dates (the reference, §2:
//!   "use the earlier one as the Plane `target_date`");
//! - priority by days left until `target_date` ([`priority_for`]): urgent when 3 days or
//!   fewer (or overdue), high within 7, medium within 30, low beyond;
//! - the label `BIR <form>`;
//! - `external_source = "plane-bir"`, `external_id = bir:<profile key>:<form>:<period>`
//!   ([`profile_key`]: the TIN's digits, or the profile's name made a slug when it has no
//!   TIN), so two profiles never share a work item, even in one project.
//!
//! Plane may rewrite `description_html` (it sanitises HTML). The fingerprint is taken of
//! what Plane *returned*, so a rewritten description is not drift.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use futures::TryStreamExt;
use plane_core::{
    Error as PlaneError, LabelFields, ListParams, MAX_PER_PAGE, PlaneClient, Priority, State,
    StateGroup, WorkItem, WorkItemFields,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::calendar::Deadline;
use crate::error::{Error, Result};
use crate::profile::Profile;
use crate::store::{DeadlineRecord, DeadlineStatus, DeadlineStore, StatusChange, SyncRun};

/// The `external_source` of every work item the sync owns.
pub const EXTERNAL_SOURCE: &str = "plane-bir";

/// What identifies a taxpayer in external ids: the TIN's digits (`123456789000`), or, for a
/// profile without a TIN (profile files require one; [`Profile::whole_catalog`] has none),
/// `name-` and the name as a slug (at most 64 characters).
///
/// ```
/// use plane_bir::{Profile, sync::profile_key};
/// let mut p = Profile::whole_catalog();
/// p.name = "Maria Santos (architect)".into();
/// assert_eq!(profile_key(&p), "name-maria-santos-architect");
/// let corp = Profile::parse(
///     include_str!("../profiles/efps-a-vat-corporation.toml"), "corp.toml")?;
/// assert_eq!(profile_key(&corp), "123456789000");
/// # Ok::<(), plane_bir::Error>(())
/// ```
pub fn profile_key(profile: &Profile) -> String {
    if let Some(tin) = &profile.tin {
        return tin.digits().to_owned();
    }
    let mut slug = String::new();
    for c in profile.name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(64).collect();
    format!("name-{}", slug.trim_end_matches('-'))
}

/// The `external_id` of a deadline's work item: `bir:<profile key>:<form>:<period>`.
///
/// ```
/// assert_eq!(plane_bir::sync::external_id("123456789000", "1601-C", "2026-03"),
///            "bir:123456789000:1601-C:2026-03");
/// ```
pub fn external_id(profile_key: &str, form: &str, period: &str) -> String {
    format!("bir:{profile_key}:{form}:{period}")
}

/// The priority for a deadline `target` days ahead of `today`: urgent at 3 days or fewer
/// (or overdue), high within 7, medium within 30, low beyond.
///
/// ```
/// use chrono::NaiveDate;
/// use plane_bir::sync::priority_for;
/// use plane_core::Priority;
/// let day = |d| NaiveDate::from_ymd_opt(2026, 4, d).unwrap();
/// assert_eq!(priority_for(day(15), day(14)), Priority::Urgent);
/// assert_eq!(priority_for(day(15), day(8)), Priority::High);
/// assert_eq!(priority_for(day(30), day(1)), Priority::Medium);
/// ```
pub fn priority_for(target: NaiveDate, today: NaiveDate) -> Priority {
    match (target - today).num_days() {
        ..=3 => Priority::Urgent,
        4..=7 => Priority::High,
        8..=30 => Priority::Medium,
        _ => Priority::Low,
    }
}

/// The label of a form's work items: `BIR <form>`.
pub fn label_name(form: &str) -> String {
    format!("BIR {form}")
}

/// What the sync asks a work item to be (the fields it owns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItemContent {
    /// `1601-C 2026-03 · due 2026-04-15`.
    pub name: String,
    /// The rule, the dates and the override reason, as HTML.
    pub description_html: String,
    /// The earlier of the filing and payment dates.
    pub target_date: NaiveDate,
    /// By days left; see [`priority_for`].
    pub priority: Priority,
}

impl WorkItemContent {
    /// The content of `deadline`'s work item on `today`.
    pub fn of(deadline: &Deadline, today: NaiveDate) -> Self {
        let target_date = deadline
            .payment_date
            .map_or(deadline.due_date, |p| p.min(deadline.due_date));
        WorkItemContent {
            name: format!(
                "{} {} · due {}",
                deadline.form, deadline.period, deadline.due_date
            ),
            description_html: describe(deadline),
            target_date,
            priority: priority_for(target_date, today),
        }
    }

    fn fingerprint(&self) -> String {
        fingerprint(
            Some(&self.name),
            Some(&self.description_html),
            Some(self.target_date),
        )
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn describe(d: &Deadline) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<p><strong>BIR Form {}</strong>: {}</p>",
        escape(&d.form),
        escape(&d.form_name)
    );
    let _ = write!(
        html,
        "<p>Period: {} ({} to {})</p>",
        d.period, d.period_start, d.period_end
    );
    let _ = write!(html, "<p>Rule: {}</p>", escape(&d.rule));
    let pay = d.payment_date.unwrap_or(d.due_date);
    let _ = write!(
        html,
        "<p>File by: {} · Pay by: {}</p>",
        d.due_date.format("%a %Y-%m-%d"),
        pay.format("%a %Y-%m-%d")
    );
    if !d.moved_by.is_empty() {
        let moves: Vec<String> = d
            .moved_by
            .iter()
            .map(|m| format!("{} ({})", m.date, escape(&m.why)))
            .collect();
        let _ = write!(
            html,
            "<p>Moved from {} by: {}</p>",
            d.rule_date,
            moves.join(", ")
        );
    }
    if let Some(o) = &d.overridden {
        let _ = write!(
            html,
            "<p>Override: {} (the rule gives {})</p>",
            escape(&o.reason),
            o.computed_due_date
        );
    }
    if let Some(why) = &d.provisional_reason {
        let _ = write!(
            html,
            "<p><strong>Provisional date</strong>: {}. The next sync moves it if the \
             proclaimed holidays change it.</p>",
            escape(why)
        );
    }
    html.push_str(
        "<p><em>Kept by plane-connector (plane-bir). Edits to the name, dates or this \
         description are restored on the next sync; move the work item to a completed \
         state once the return is filed.</em></p>",
    );
    html
}

pub(crate) fn fingerprint(
    name: Option<&str>,
    html: Option<&str>,
    target: Option<NaiveDate>,
) -> String {
    let mut hash = Sha256::new();
    for part in [
        name.unwrap_or(""),
        "\u{0}",
        html.unwrap_or(""),
        "\u{0}",
        &target.map(|d| d.to_string()).unwrap_or_default(),
    ] {
        hash.update(part.as_bytes());
    }
    hash.finalize()
        .iter()
        .take(16)
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(crate) fn plane_fingerprint(item: &WorkItem) -> String {
    fingerprint(
        item.name.as_deref(),
        item.description_html.as_deref(),
        item.target_date,
    )
}

/// `pushed` in the store: `<content fingerprint>:<priority pushed>`.
fn pushed(content: &str, priority: &str) -> String {
    format!("{content}:{priority}")
}

fn priority_str(p: &Priority) -> &str {
    match p {
        Priority::Urgent => "urgent",
        Priority::High => "high",
        Priority::Medium => "medium",
        Priority::Low => "low",
        Priority::None => "none",
        Priority::Other(s) => s,
    }
}

/// One run's input.
#[derive(Debug, Clone)]
pub struct SyncRequest<'a> {
    /// The taxpayer.
    pub profile: &'a Profile,
    /// Its deadlines (from [`crate::calendar()`], overrides applied).
    pub deadlines: &'a [Deadline],
    /// The Plane project they go to.
    pub project: Uuid,
    /// The day priorities are counted from (the caller's "today", Manila time in the CLI).
    pub today: NaiveDate,
    /// Plan only: list, compare and report, but write nothing to Plane or the store.
    pub dry_run: bool,
}

/// What the sync does (or, in a dry run, would do) to one work item or label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create the form's label.
    CreateLabel,
    /// Create the work item.
    Create,
    /// Take over a work item found by its external id that the store did not know.
    Adopt,
    /// Change the fields named in [`PlannedChange::fields`].
    Update,
}

impl Action {
    /// `create_label`, `create`, `adopt`, `update`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CreateLabel => "create_label",
            Action::Create => "create",
            Action::Adopt => "adopt",
            Action::Update => "update",
        }
    }
}

/// One change of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    /// What.
    pub action: Action,
    /// The form.
    pub form: String,
    /// The period (empty for a label).
    pub period: String,
    /// The filing date (`None` for a label).
    pub due_date: Option<NaiveDate>,
    /// The work item's external id (empty for a label).
    pub external_id: String,
    /// The fields sent: `name`, `description_html`, `target_date`, `priority`.
    pub fields: Vec<&'static str>,
    /// Whether it restores drift.
    pub drift: bool,
    /// Whether it makes a request to Plane (an adoption with nothing to change does not).
    pub writes: bool,
}

/// A change a person made in Plane to a field the sync owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The work item's external id.
    pub external_id: String,
    /// The form.
    pub form: String,
    /// The period.
    pub period: String,
    /// The work item.
    pub work_item_id: Uuid,
    /// The owned fields that differ (`name`, `description_html`, `target_date`).
    pub fields: Vec<&'static str>,
}

/// A deadline whose date changed since the sync last pushed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescheduled {
    /// The work item's external id.
    pub external_id: String,
    /// The form.
    pub form: String,
    /// The period.
    pub period: String,
    /// The filing date last pushed.
    pub from: NaiveDate,
    /// The filing date now.
    pub to: NaiveDate,
    /// Whether the new date is still provisional.
    pub provisional: bool,
}

/// Progress, reported after the listings (`done = 0`) and after each write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Writes done.
    pub done: usize,
    /// Writes planned.
    pub planned: usize,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// The project.
    pub project: Uuid,
    /// The profile's key.
    pub profile: String,
    /// Work items created.
    pub created: usize,
    /// Work items changed (drift restored, changed deadlines, priority buckets, adoptions
    /// that needed a change).
    pub updated: usize,
    /// Work items left as they were.
    pub unchanged: usize,
    /// Work items found in Plane by external id that the store did not know.
    pub adopted: usize,
    /// Labels created.
    pub labels_created: usize,
    /// Drift found (and, unless a dry run, restored).
    pub drift: Vec<Drift>,
    /// Deadlines whose date changed since the last sync (new holiday data, an override),
    /// each moved with one write.
    pub rescheduled: Vec<Rescheduled>,
    /// Every change, in order (what a dry run would do).
    pub plan: Vec<PlannedChange>,
    /// HTTP requests sent by the client during the run (retries included).
    pub requests: u64,
    /// Of those, writes (POST, PATCH).
    pub writes: u64,
    /// Time spent waiting for the rate limit.
    pub waited: Duration,
    /// 429 answers seen (all retried by plane-core; 0 when pacing works).
    pub throttled: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

struct Step {
    change: PlannedChange,
    deadline: usize,
    item: Option<WorkItem>,
    send: WorkItemFields,
    /// The priority to record as pushed once the step is done (see [`recorded_priority`]).
    priority: String,
}

/// The priority the store records as pushed: the bucket, when it is due (sent now, or
/// already in Plane); else what the sync last pushed (a person's priority is left alone
/// until the bucket moves, so it must not be taken for the sync's own and overwritten by
/// the next run); else what Plane has (an adoption of a filed or void item).
fn recorded_priority(
    due: bool,
    bucket: &Priority,
    last_pushed: &str,
    plane: Option<&Priority>,
) -> String {
    if due {
        priority_str(bucket).to_owned()
    } else if !last_pushed.is_empty() {
        last_pushed.to_owned()
    } else {
        priority_str(plane.unwrap_or(bucket)).to_owned()
    }
}

/// Runs one sync; see the [module docs](self): list, compare, apply.
/// `progress` is called after the listings and after each write. The report's request
/// counts are the client's counters over the run, so the client should not be used by
/// anything else meanwhile.
pub async fn sync(
    client: &PlaneClient,
    store: Arc<dyn DeadlineStore>,
    request: &SyncRequest<'_>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<SyncReport> {
    let stats_before = client.stats();
    let limit_before = client.rate_limit();
    let key = profile_key(request.profile);
    let listing = list(client, request.project).await?;
    let records: HashMap<String, DeadlineRecord> = store
        .deadlines_of(&key)
        .await?
        .into_iter()
        .map(|r| (r.external_id.clone(), r))
        .collect();

    let mut report = SyncReport {
        project: request.project,
        profile: key.clone(),
        dry_run: request.dry_run,
        ..SyncReport::default()
    };
    let plan = compare(request, &key, listing, &records, &mut report);
    let planned = plan.labels.len() + plan.steps.iter().filter(|s| s.change.writes).count();
    progress(Progress { done: 0, planned });
    if request.dry_run {
        for step in &plan.steps {
            match step.change.action {
                Action::Create => report.created += 1,
                Action::Adopt | Action::Update if step.change.writes => report.updated += 1,
                _ => {}
            }
        }
    } else {
        apply(client, &store, request, &key, plan, &mut report, progress).await?;
    }
    let report = finish(report, client, &stats_before, &limit_before);
    if !request.dry_run {
        // Step 4, after every write was recorded: a run that failed part-way returned
        // above and leaves the previous success in place.
        let run = SyncRun {
            profile: key,
            project_id: request.project,
            finished_at: Utc::now(),
            requests: report.requests,
            writes: report.writes,
            waited: report.waited,
        };
        store.record_sync_run(&run).await?;
    }
    Ok(report)
}

/// An [`Error::Plane`] naming what the sync was doing.
fn plane(during: String) -> impl FnOnce(PlaneError) -> Error {
    move |source| Error::Plane {
        during,
        source: Box::new(source),
    }
}

/// What the three listings found (step 1).
struct Listing {
    /// Label ids by name.
    labels: HashMap<String, Uuid>,
    /// Our work items by external id.
    items: HashMap<String, WorkItem>,
    /// Each state's group.
    group_of: HashMap<Uuid, StateGroup>,
    /// The first state of the `unstarted` group, where new work items go.
    unstarted: Option<Uuid>,
}

/// Step 1: the project's states, labels and work items, every page at `per_page=1000`.
async fn list(client: &PlaneClient, project: Uuid) -> Result<Listing> {
    let params = ListParams::new().per_page(MAX_PER_PAGE);
    let states: Vec<_> = client
        .states(project)
        .stream(params.clone())
        .try_collect()
        .await
        .map_err(plane(format!("list the states of project {project}")))?;
    let labels: HashMap<String, Uuid> = client
        .labels(project)
        .stream(params.clone())
        .try_collect::<Vec<_>>()
        .await
        .map_err(plane(format!("list the labels of project {project}")))?
        .into_iter()
        .filter_map(|l| Some((l.name?, l.id)))
        .collect();
    let mut items: HashMap<String, WorkItem> = HashMap::new();
    let listed: Vec<WorkItem> = client
        .work_items(project)
        .stream(params)
        .try_collect()
        .await
        .map_err(plane(format!("list the work items of project {project}")))?;
    for item in listed {
        if item.external_source.as_deref() == Some(EXTERNAL_SOURCE)
            && let Some(id) = item.external_id.clone()
        {
            items.insert(id, item);
        }
    }
    let group_of: HashMap<Uuid, StateGroup> = states
        .iter()
        .filter_map(|s| Some((s.id, s.group.clone()?)))
        .collect();
    let unstarted = first_state(&states, &StateGroup::Unstarted).map(|s| s.id);

    Ok(Listing {
        labels,
        items,
        group_of,
        unstarted,
    })
}

/// The first state of `group` in the project's order (`sequence`, then as listed): where
/// the sync puts new work items (`unstarted`), and where `plane-server mcp`'s `mark_filed`
/// moves one (`completed`).
pub fn first_state<'s>(states: &'s [State], group: &StateGroup) -> Option<&'s State> {
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.group.as_ref() == Some(group))
        .min_by(|(i, a), (j, b)| {
            let (x, y) = (
                a.sequence.unwrap_or(f64::MAX),
                b.sequence.unwrap_or(f64::MAX),
            );
            x.total_cmp(&y).then(i.cmp(j))
        })
        .map(|(_, s)| s)
}

/// What step 2 decided: the writes, and what only the store needs; with what step 3
/// needs of the listing.
struct Plan {
    listing: Listing,
    /// The labels to create, by name.
    labels: Vec<String>,
    /// One per work item to create, adopt or update.
    steps: Vec<Step>,
    /// Rows whose sync columns changed without a write to Plane.
    quiet: Vec<DeadlineRecord>,
    /// Status changes read from the listing.
    statuses: Vec<StatusChange>,
}

/// Step 2: each deadline against its work item and its stored row. Fills the report's
/// counts, drift and moved dates; sends nothing.
fn compare(
    request: &SyncRequest<'_>,
    key: &str,
    listing: Listing,
    records: &HashMap<String, DeadlineRecord>,
    report: &mut SyncReport,
) -> Plan {
    let project = request.project;
    let Listing {
        labels,
        items,
        group_of,
        ..
    } = &listing;
    let mut steps: Vec<Step> = Vec::new();
    let mut label_steps: Vec<String> = Vec::new();
    let mut quiet: Vec<DeadlineRecord> = Vec::new();
    let mut statuses: Vec<StatusChange> = Vec::new();
    for (index, d) in request.deadlines.iter().enumerate() {
        let period = d.period.to_string();
        let ext = external_id(key, &d.form, &period);
        let content = WorkItemContent::of(d, request.today);
        let record = records.get(&ext);
        let item = items.get(&ext);
        let group_closed = item
            .and_then(|i| i.state.as_ref())
            .and_then(|s| group_of.get(&s.id()))
            .is_some_and(|g| DeadlineStatus::of_group(g).is_closed());
        let closed = group_closed || record.is_some_and(|r| r.status.is_closed());
        let change = |action, fields: Vec<&'static str>, drift, writes| PlannedChange {
            action,
            form: d.form.clone(),
            period: period.clone(),
            due_date: Some(d.due_date),
            external_id: ext.clone(),
            fields,
            drift,
            writes,
        };
        let Some(item) = item else {
            if record.is_some_and(|r| r.work_item_id.is_some() && r.status.is_closed()) {
                // Filed or void and gone from the listing: Plane archived it. Leave it.
                report.unchanged += 1;
                continue;
            }
            let label = label_name(&d.form);
            if !labels.contains_key(&label) && !label_steps.contains(&label) {
                label_steps.push(label);
            }
            let fields = vec!["name", "description_html", "target_date", "priority"];
            steps.push(Step {
                change: change(Action::Create, fields, false, true),
                deadline: index,
                item: None,
                send: WorkItemFields::default(),
                priority: priority_str(&content.priority).to_owned(),
            });
            continue;
        };
        if let Some(r) = record.filter(|r| r.due_date != d.due_date) {
            report.rescheduled.push(Rescheduled {
                external_id: ext.clone(),
                form: d.form.clone(),
                period: period.clone(),
                from: r.due_date,
                to: d.due_date,
                provisional: d.provisional,
            });
        }
        if let (Some(r), Some(status)) = (record, listed_status(item, group_of))
            && r.work_item_id == Some(item.id)
            && r.status != status
        {
            statuses.push(status_change(item, status));
        }
        let known = record.and_then(|r| Some((r.pushed.as_deref()?, r.fingerprint.as_deref()?)));
        let (pushed_content, pushed_priority) = known
            .and_then(|(p, _)| p.split_once(':'))
            .unwrap_or(("", ""));
        let drifted = known.is_some_and(|(_, fp)| fp != plane_fingerprint(item));
        let content_changed = known.is_none() || pushed_content != content.fingerprint();
        let differing = differing_fields(item, &content);
        let mut send = WorkItemFields::default();
        let mut fields = Vec::new();
        if drifted || content_changed {
            for field in &differing {
                fields.push(*field);
                match *field {
                    "name" => send.name = Some(content.name.clone()),
                    "description_html" => {
                        send.description_html = Some(content.description_html.clone());
                    }
                    _ => {
                        send.target_date = Some(Some(content.target_date));
                        if item.start_date.is_some_and(|s| s > content.target_date) {
                            // Plane refuses a target date before the start date.
                            send = send.clear_start_date();
                        }
                    }
                }
            }
        }
        let priority_due = !closed
            && match known {
                Some(_) => pushed_priority != priority_str(&content.priority),
                None => item.priority.as_ref() != Some(&content.priority),
            };
        if priority_due && item.priority.as_ref() != Some(&content.priority) {
            fields.push("priority");
            send.priority = Some(content.priority.clone());
        }
        let drift = drifted && fields.iter().any(|f| *f != "priority");
        if drift {
            report.drift.push(Drift {
                external_id: ext.clone(),
                form: d.form.clone(),
                period: period.clone(),
                work_item_id: item.id,
                fields: fields
                    .iter()
                    .copied()
                    .filter(|f| *f != "priority")
                    .collect(),
            });
        }
        let adopt = known.is_none();
        if adopt {
            report.adopted += 1;
        }
        let priority = recorded_priority(
            priority_due,
            &content.priority,
            pushed_priority,
            item.priority.as_ref(),
        );
        if fields.is_empty() {
            report.unchanged += 1;
            let row = DeadlineRecord {
                pushed: Some(pushed(&content.fingerprint(), &priority)),
                fingerprint: Some(plane_fingerprint(item)),
                ..new_record(key, d, &ext, project, item.id)
            };
            if adopt {
                steps.push(Step {
                    change: change(Action::Adopt, Vec::new(), false, false),
                    deadline: index,
                    item: Some(item.clone()),
                    send,
                    priority,
                });
            } else if record.is_none_or(|r| !same_sync_columns(r, &row)) {
                quiet.push(row);
            }
            continue;
        }
        let action = if adopt { Action::Adopt } else { Action::Update };
        steps.push(Step {
            change: change(action, fields, drift, true),
            deadline: index,
            item: Some(item.clone()),
            send,
            priority,
        });
    }
    for label in &label_steps {
        report.plan.push(PlannedChange {
            action: Action::CreateLabel,
            form: label.trim_start_matches("BIR ").to_owned(),
            period: String::new(),
            due_date: None,
            external_id: String::new(),
            fields: vec!["name"],
            drift: false,
            writes: true,
        });
    }
    report
        .plan
        .extend(steps.iter().map(|s| s.change.clone()).filter(|c| c.writes));
    Plan {
        listing,
        labels: label_steps,
        steps,
        quiet,
        statuses,
    }
}

/// Step 3: the writes, each recorded in the store straight after its request, so a run
/// killed at any point is resumed by the next without duplicates.
async fn apply(
    client: &PlaneClient,
    store: &Arc<dyn DeadlineStore>,
    request: &SyncRequest<'_>,
    key: &str,
    plan: Plan,
    report: &mut SyncReport,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<()> {
    let project = request.project;
    let planned = plan.labels.len() + plan.steps.iter().filter(|s| s.change.writes).count();
    let Plan {
        listing:
            Listing {
                mut labels,
                group_of,
                unstarted,
                ..
            },
        labels: label_steps,
        steps,
        quiet,
        statuses,
    } = plan;
    let mut done = 0;
    if !quiet.is_empty() || !statuses.is_empty() {
        // Plane owns the state: a status changed there (the webhook may not have reached
        // us) is taken from the listing, unless the store knows a newer change.
        for r in &quiet {
            store.record(r).await?;
        }
        for c in &statuses {
            store.apply_status(c).await?;
        }
    }
    for label in label_steps {
        let mut fields = LabelFields::new(label.clone());
        fields.external_source = Some(EXTERNAL_SOURCE.to_owned());
        fields.external_id = Some(format!("bir-form:{}", label.trim_start_matches("BIR ")));
        let id = match client.labels(project).create(&fields).await {
            Ok(created) => {
                report.labels_created += 1;
                created.id
            }
            // Someone (another run) created it meanwhile: use theirs.
            Err(PlaneError::Conflict {
                existing_id: Some(id),
                ..
            }) => id,
            Err(e) => return Err(plane(format!("create the label {label:?}"))(e)),
        };
        labels.insert(label, id);
        done += 1;
        progress(Progress { done, planned });
    }
    for step in steps {
        let d = &request.deadlines[step.deadline];
        let content = WorkItemContent::of(d, request.today);
        let ext = step.change.external_id.clone();
        let returned = match (step.change.action, step.item) {
            (Action::Create, _) => {
                let Some(state) = unstarted else {
                    return Err(Error::NoUnstartedState { project });
                };
                let mut fields = WorkItemFields::new(content.name.clone())
                    .description_html(content.description_html.clone())
                    .target_date(content.target_date)
                    .priority(content.priority.clone())
                    .state(state)
                    .external(EXTERNAL_SOURCE, ext.clone());
                if let Some(label) = labels.get(&label_name(&d.form)) {
                    fields = fields.labels([*label]);
                }
                match client.work_items(project).create(&fields).await {
                    Ok(item) => {
                        report.created += 1;
                        item
                    }
                    // An item of ours the listing did not show (archived): adopt it.
                    Err(PlaneError::Conflict {
                        existing_id: Some(id),
                        ..
                    }) => {
                        report.adopted += 1;
                        report.unchanged += 1;
                        client
                            .work_items(project)
                            .get(id)
                            .await
                            .map_err(plane(format!("read work item {id} ({ext})")))?
                    }
                    Err(e) => return Err(plane(format!("create the work item {ext}"))(e)),
                }
            }
            (_, Some(item)) if !step.change.writes => item,
            (_, Some(item)) => {
                let updated = client
                    .work_items(project)
                    .update(item.id, &step.send)
                    .await
                    .map_err(plane(format!("update work item {} ({ext})", item.id)))?;
                report.updated += 1;
                updated
            }
            (_, None) => continue,
        };
        let row = DeadlineRecord {
            pushed: Some(pushed(&content.fingerprint(), &step.priority)),
            fingerprint: Some(plane_fingerprint(&returned)),
            ..new_record(key, d, &ext, project, returned.id)
        };
        let change =
            listed_status(&returned, &group_of).map(|status| status_change(&returned, status));
        store.record(&row).await?;
        if let Some(change) = change {
            store.apply_status(&change).await?;
        }
        if step.change.writes {
            done += 1;
            progress(Progress { done, planned });
        }
    }
    Ok(())
}

fn listed_status(item: &WorkItem, groups: &HashMap<Uuid, StateGroup>) -> Option<DeadlineStatus> {
    let state = item.state.as_ref()?.id();
    groups.get(&state).map(DeadlineStatus::of_group)
}

fn status_change(item: &WorkItem, status: DeadlineStatus) -> StatusChange {
    StatusChange {
        work_item_id: item.id,
        status,
        by: item.updated_by.as_ref().map(|u| match u.object() {
            Some(user) if !user.display_name.is_empty() => user.display_name.clone(),
            _ => u.id().to_string(),
        }),
        at: item
            .updated_at
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc)),
        event: None,
    }
}

fn new_record(
    key: &str,
    d: &Deadline,
    ext: &str,
    project: Uuid,
    work_item: Uuid,
) -> DeadlineRecord {
    DeadlineRecord {
        external_id: ext.to_owned(),
        profile: key.to_owned(),
        form: d.form.clone(),
        period: d.period.to_string(),
        due_date: d.due_date,
        payment_date: d.payment_date,
        project_id: project,
        work_item_id: Some(work_item),
        pushed: None,
        fingerprint: None,
        status: DeadlineStatus::Pending,
        status_by: None,
        status_at: None,
    }
}

fn same_sync_columns(a: &DeadlineRecord, b: &DeadlineRecord) -> bool {
    (
        &a.profile,
        &a.form,
        &a.period,
        a.due_date,
        a.payment_date,
        a.project_id,
        a.work_item_id,
        &a.pushed,
        &a.fingerprint,
    ) == (
        &b.profile,
        &b.form,
        &b.period,
        b.due_date,
        b.payment_date,
        b.project_id,
        b.work_item_id,
        &b.pushed,
        &b.fingerprint,
    )
}

fn differing_fields(item: &WorkItem, content: &WorkItemContent) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if item.name.as_deref() != Some(content.name.as_str()) {
        fields.push("name");
    }
    if item.description_html.as_deref() != Some(content.description_html.as_str()) {
        fields.push("description_html");
    }
    if item.target_date != Some(content.target_date) {
        fields.push("target_date");
    }
    fields
}

fn finish(
    mut report: SyncReport,
    client: &PlaneClient,
    stats: &plane_core::ClientStats,
    limit: &plane_core::RateLimitStatus,
) -> SyncReport {
    let (now, now_limit) = (client.stats(), client.rate_limit());
    report.requests = now.requests.saturating_sub(stats.requests);
    report.writes = now.writes.saturating_sub(stats.writes);
    report.waited = now_limit.waited.saturating_sub(limit.waited);
    report.throttled = now_limit.throttled.saturating_sub(limit.throttled);
    report
}
