//! `/users/me/`: who the credentials belong to.

use http::Method;

use crate::client::Request;
use crate::{Error, PlaneClient, UserLite};

/// Handler for the current user. Get one with [`PlaneClient::users`].
#[derive(Debug, Clone, Copy)]
pub struct UsersHandler<'a> {
    client: &'a PlaneClient,
}

impl PlaneClient {
    /// The current user (`/users/me/`).
    pub fn users(&self) -> UsersHandler<'_> {
        UsersHandler { client: self }
    }
}

impl UsersHandler<'_> {
    /// The user the API key or token belongs to; a cheap credentials check.
    ///
    /// ```no_run
    /// # async fn run(client: plane_core::PlaneClient) -> Result<(), plane_core::Error> {
    /// let me = client.users().me().await?;
    /// println!("{} <{}>", me.display_name, me.email.unwrap_or_default());
    /// # Ok(()) }
    /// ```
    pub async fn me(&self) -> Result<UserLite, Error> {
        self.client
            .send_json(Request::new(Method::GET, vec!["users".into(), "me".into()]))
            .await
    }
}
