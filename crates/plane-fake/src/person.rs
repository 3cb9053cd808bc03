//! More than one user: workspace members, keys they own, and a person acting in Plane's
//! web app.

use crate::RunningFake;
use crate::store::Obj;
use serde_json::{Value, json};
use uuid::Uuid;

/// A workspace member acting in Plane's web app, from [`RunningFake::as_user`].
///
/// The web app talks to Plane's session API (`/api/...`), not to `/api/v1/` with a key, so
/// what a person does here costs no API key any rate budget and adds nothing to
/// [`RunningFake::request_log`]. Each change still fans out into the signed webhooks Plane
/// sends for it (one `updated` delivery per changed field), with this member as
/// `activity.actor` and `data.updated_by`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use plane_fake::FakePlane;
/// use serde_json::json;
///
/// let fake = FakePlane::builder().start().await?;
/// let item = fake.insert_work_item("File 1601-C");
/// let id = item["id"].as_str().unwrap().parse().unwrap();
/// let ana = fake.add_user(json!({"display_name": "ana"}));
/// let done = fake.state_id(fake.project_id(), "completed").unwrap();
/// let closed = fake
///     .as_user(ana)
///     .patch_work_item(fake.project_id(), id, json!({"state": done.to_string()}))
///     .unwrap();
/// assert_eq!(closed["updated_by"], ana.to_string());
/// assert_eq!(fake.request_count(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Person {
    fake: RunningFake,
    user: Uuid,
}

/// A web-app change Plane refused: the status and body it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct WebAppError {
    /// The HTTP status, e.g. 400 for a field error or 404 for an unknown item.
    pub status: u16,
    /// The answer's JSON body, e.g. `{"non_field_errors": [...]}`.
    pub body: Value,
}

impl std::fmt::Display for WebAppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plane refused the web-app change ({}): {}",
            self.status, self.body
        )
    }
}

impl std::error::Error for WebAppError {}

impl Person {
    /// The member's id.
    pub fn id(&self) -> Uuid {
        self.user
    }

    /// Changes a work item the way a person does in the web app (for example
    /// `{"state": "<done state id>"}` to close it). Validation, the change and the webhooks
    /// are those of the API's PATCH; the answer is the updated item.
    pub fn patch_work_item(
        &self,
        project_id: Uuid,
        work_item_id: Uuid,
        fields: Value,
    ) -> Result<Value, WebAppError> {
        let Value::Object(body) = fields else {
            return Err(WebAppError {
                status: 400,
                body: json!({"detail": "JSON parse error - the body must be a JSON object"}),
            });
        };
        let shared = &self.fake.inner.shared;
        let outcome = {
            let mut store = shared.store();
            crate::api::web_patch_work_item(
                &mut store,
                &self.user.to_string(),
                project_id,
                work_item_id,
                &body,
            )
        };
        let status = outcome.resp.status;
        let answer = serde_json::from_slice(&outcome.resp.body).unwrap_or(Value::Null);
        shared.dispatch_webhooks(outcome.events);
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(WebAppError {
                status,
                body: answer,
            })
        }
    }
}

impl RunningFake {
    /// Adds a workspace member (also a member of every project) and returns its id.
    /// `user` is a UserLite-shaped object; missing keys get defaults (`id` a new uuid,
    /// `display_name` and names derived from it), so `json!({"display_name": "ana"})` is
    /// enough.
    ///
    /// # Panics
    /// If `user` is not a JSON object.
    pub fn add_user(&self, user: Value) -> Uuid {
        let Value::Object(obj) = user else {
            panic!("add_user: the user must be a JSON object");
        };
        self.store().add_member(obj)
    }

    /// A member acting in the web app; see [`Person`].
    ///
    /// # Panics
    /// If `user` is not a member (see [`add_user`](Self::add_user)); the primary user is one.
    pub fn as_user(&self, user: Uuid) -> Person {
        assert!(
            self.store().member(&user.to_string()).is_some(),
            "as_user: {user} is not a member of the workspace; add it with add_user first"
        );
        Person {
            fake: self.clone(),
            user,
        }
    }

    /// Makes `key` a valid API key owned by member `owner`: requests with it act as that
    /// member (`/users/me/`, `created_by`, `updated_by`, webhook actor) and have their own
    /// rate-limit bucket.
    ///
    /// # Panics
    /// If `owner` is not a member.
    pub fn add_api_key(&self, key: impl Into<String>, owner: Uuid) {
        let mut store = self.store();
        assert!(
            store.member(&owner.to_string()).is_some(),
            "add_api_key: {owner} is not a member of the workspace; add it with add_user first"
        );
        store.key_owners.insert(key.into(), owner.to_string());
    }

    /// The id of the key owner (the user `/users/me/` returns for [`api_key`](Self::api_key)).
    pub fn user_id(&self) -> Uuid {
        let store = self.store();
        crate::store::id_of(&store.user).unwrap_or_else(Uuid::nil)
    }

    /// The id of the first state of `group` (`backlog`, `unstarted`, `started`,
    /// `completed`, `cancelled`) in a project, e.g. "Done" for `completed`.
    pub fn state_id(&self, project_id: Uuid, group: &str) -> Option<Uuid> {
        let store = self.store();
        let states: &[Obj] = &store.project(project_id)?.states;
        states
            .iter()
            .find(|s| crate::store::str_of(s, "group") == Some(group))
            .and_then(crate::store::id_of)
    }
}
