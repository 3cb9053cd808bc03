//! Members of the workspace and of projects (plain arrays, not paginated).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Collection;
use crate::{Error, PlaneClient, UserLite};

/// A workspace member: the user plus their workspace role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceMember {
    /// 20 admin, 15 member, 5 guest.
    pub role: Option<i64>,
    /// The user, whose fields Plane sends beside `role` in the same object.
    #[serde(flatten)]
    pub user: UserLite,
}

/// Handler for members. Get one with [`PlaneClient::members`].
#[derive(Debug, Clone, Copy)]
pub struct MembersHandler<'a> {
    client: &'a PlaneClient,
}

impl PlaneClient {
    /// Members of the workspace or of a project.
    pub fn members(&self) -> MembersHandler<'_> {
        MembersHandler { client: self }
    }
}

impl MembersHandler<'_> {
    /// Everyone in the workspace, with their role.
    pub async fn workspace(&self) -> Result<Vec<WorkspaceMember>, Error> {
        Collection::new(self.client, self.client.workspace_path(&["members"]))
            .list_plain()
            .await
    }

    /// Everyone in a project.
    pub async fn project(&self, project: Uuid) -> Result<Vec<UserLite>, Error> {
        Collection::new(self.client, self.client.project_path(project, &["members"]))
            .list_plain()
            .await
    }
}
