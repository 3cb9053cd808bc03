//! One module per Plane resource: its model, its request body builder, and a
//! handler that borrows the client (`client.work_items(project).get(id)`).

pub mod activities;
pub mod comments;
pub mod cycles;
pub mod labels;
pub mod links;
pub mod members;
pub mod modules;
pub mod projects;
pub mod states;
pub mod users;
pub mod work_items;

use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::client::Request;
use crate::{Error, Identified, ListParams, Page, PlaneClient};

/// The usual REST collection under `segments`: list, walk, get, create, update,
/// delete. Handlers delegate here, so each resource says only what differs.
#[derive(Debug, Clone)]
pub(crate) struct Collection<'a> {
    pub client: &'a PlaneClient,
    pub segments: Vec<String>,
}

impl<'a> Collection<'a> {
    pub fn new(client: &'a PlaneClient, segments: Vec<String>) -> Self {
        Self { client, segments }
    }

    fn item(&self, id: Uuid) -> Vec<String> {
        let mut segments = self.segments.clone();
        segments.push(id.to_string());
        segments
    }

    pub async fn page<T: DeserializeOwned>(&self, params: &ListParams) -> Result<Page<T>, Error> {
        self.client.page(self.segments.clone(), params).await
    }

    pub fn walk<T>(&self, params: ListParams) -> crate::ItemStream<T>
    where
        T: DeserializeOwned + Identified + Send + 'static,
    {
        self.client.walk(self.segments.clone(), params)
    }

    pub async fn list_plain<T: DeserializeOwned>(&self) -> Result<Vec<T>, Error> {
        self.client
            .send_json(Request::new(Method::GET, self.segments.clone()))
            .await
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        id: Uuid,
        select: &ListParams,
    ) -> Result<T, Error> {
        let request = Request::new(Method::GET, self.item(id)).query(select.selection_query()?);
        self.client.send_json(request).await
    }

    pub async fn create<T: DeserializeOwned>(&self, body: &impl Serialize) -> Result<T, Error> {
        let request = Request::new(Method::POST, self.segments.clone()).json(body)?;
        self.client.send_json(request).await
    }

    pub async fn update<T: DeserializeOwned>(
        &self,
        id: Uuid,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        let request = Request::new(Method::PATCH, self.item(id)).json(body)?;
        self.client.send_json(request).await
    }

    pub async fn delete(&self, id: Uuid) -> Result<(), Error> {
        self.client
            .send_empty(Request::new(Method::DELETE, self.item(id)))
            .await
    }
}

/// The six standard methods of a handler holding a `collection`.
macro_rules! collection_methods {
    ($model:ty, $fields:ty, $what:literal) => {
        #[doc = concat!("One page of ", $what, ".")]
        pub async fn list(&self, params: &$crate::ListParams) -> Result<$crate::Page<$model>, $crate::Error> {
            self.collection.page(params).await
        }

        #[doc = concat!("Every one of the ", $what, ", following the cursors, each once.")]
        pub fn stream(
            &self,
            params: $crate::ListParams,
        ) -> $crate::ItemStream<$model> {
            self.collection.walk(params)
        }

        #[doc = concat!("One of the ", $what, " by id.")]
        pub async fn get(&self, id: uuid::Uuid) -> Result<$model, $crate::Error> {
            self.collection.get(id, &$crate::ListParams::new()).await
        }

        #[doc = concat!("Creates one of the ", $what, " (409 [`Error::Conflict`](crate::Error::Conflict) carries the id of a duplicate).")]
        pub async fn create(&self, fields: &$fields) -> Result<$model, $crate::Error> {
            self.collection.create(fields).await
        }

        /// Changes the fields that are set.
        pub async fn update(&self, id: uuid::Uuid, fields: &$fields) -> Result<$model, $crate::Error> {
            self.collection.update(id, fields).await
        }

        /// Deletes it.
        pub async fn delete(&self, id: uuid::Uuid) -> Result<(), $crate::Error> {
            self.collection.delete(id).await
        }
    };
}
pub(crate) use collection_methods;

/// The work items of a cycle or module (`cycle-issues`, `module-issues`).
#[derive(Debug, Clone)]
pub struct Membership<'a, T> {
    collection: Collection<'a>,
    _item: std::marker::PhantomData<fn() -> T>,
}

impl<'a> Membership<'a, work_items::WorkItem> {
    fn new(parent: Collection<'a>, container: Uuid, what: &str) -> Self {
        let mut segments = parent.segments;
        segments.extend([container.to_string(), what.to_owned()]);
        Self {
            collection: Collection::new(parent.client, segments),
            _item: std::marker::PhantomData,
        }
    }

    /// One page of the work items in it.
    pub async fn list(&self, params: &ListParams) -> Result<Page<work_items::WorkItem>, Error> {
        self.collection.page(params).await
    }

    /// Every work item in it, following the cursors.
    pub fn stream(&self, params: ListParams) -> crate::ItemStream<work_items::WorkItem> {
        self.collection.walk(params)
    }

    /// Adds work items; Plane answers with the membership rows it created.
    pub async fn add(&self, work_items: &[Uuid]) -> Result<Vec<serde_json::Value>, Error> {
        self.collection
            .create(&serde_json::json!({ "issues": work_items }))
            .await
    }

    /// Removes one work item.
    pub async fn remove(&self, work_item: Uuid) -> Result<(), Error> {
        self.collection.delete(work_item).await
    }
}
