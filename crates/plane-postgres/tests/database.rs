//! Migrations and advisory locks against a real PostgreSQL (skipped without
#![allow(clippy::unwrap_used)]
//! `PLANE_TEST_DATABASE_URL`; see `plane_postgres::testing`).

use plane_postgres::{Error, testing};

const STEPS: &[&str] = &[
    "CREATE TABLE widgets (id bigint PRIMARY KEY)",
    "ALTER TABLE widgets ADD COLUMN name text",
];

#[tokio::test]
async fn migrations_run_once_in_order_and_a_newer_schema_is_refused() {
    let Some(pg) = testing::database("migrations").await else {
        return;
    };
    let db = pg.db();
    assert_eq!(db.schema_version("widgets").await.unwrap(), None);
    assert_eq!(db.migrate("widgets", &STEPS[..1]).await.unwrap(), 1);
    assert_eq!(db.migrate("widgets", STEPS).await.unwrap(), 2);
    // Again: nothing runs (the ALTER would fail if it did).
    assert_eq!(db.migrate("widgets", STEPS).await.unwrap(), 2);
    let client = db.client().await.unwrap();
    client
        .execute("INSERT INTO widgets (id, name) VALUES (1, 'a')", &[])
        .await
        .unwrap();
    // The tables are in the test's schema, not `public`.
    let schema: String = client
        .query_one(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'widgets' \
             AND table_schema = $1",
            &[&pg.schema()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, pg.schema());
    // An older build (one step) finds version 2: refused, and says so.
    let err = db.migrate("widgets", &STEPS[..1]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("newer than this build knows"),
        "{err}"
    );
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let Some(pg) = testing::database("migrate_together").await else {
        return;
    };
    let mut replicas = Vec::new();
    for _ in 0..4 {
        let db = pg.options().connect().await.unwrap();
        replicas.push(tokio::spawn(
            async move { db.migrate("widgets", STEPS).await },
        ));
    }
    for replica in replicas {
        assert_eq!(replica.await.unwrap().unwrap(), 2);
    }
}

#[tokio::test]
async fn an_advisory_lock_is_held_by_one_and_names_its_holder() {
    let Some(pg) = testing::database("locks").await else {
        return;
    };
    let one = pg
        .db()
        .try_lock("sync:project-a")
        .await
        .unwrap()
        .expect("free");
    assert!(one.is_held());
    let other = pg.options().connect().await.unwrap();
    let holder = other.try_lock("sync:project-a").await.unwrap().unwrap_err();
    assert!(holder.backend_pid > 0, "{holder:?}");
    assert!(holder.application.starts_with("plane-server"), "{holder:?}");
    // Another name, or another schema, is another lock.
    let b = other.try_lock("sync:project-b").await.unwrap();
    assert!(b.is_ok());
    let elsewhere = testing::database("locks_other").await.unwrap();
    assert!(
        elsewhere
            .db()
            .try_lock("sync:project-a")
            .await
            .unwrap()
            .is_ok()
    );
    // Released by dropping (the connection closes); `lock` then gets it at once.
    drop(one);
    let again = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        other.lock("sync:project-a"),
    )
    .await
    .expect("the lock comes free once its holder is gone")
    .unwrap();
    assert!(again.is_held());
}

#[tokio::test]
async fn a_database_that_is_not_there_is_unavailable() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options =
        plane_postgres::Options::from_url(&format!("postgres://x@127.0.0.1:{port}/db"), None)
            .unwrap();
    let err = options.connect().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_restarted_database_is_unavailable_while_down_and_usable_again_after() {
    let Some(cluster) = testing::Cluster::start() else {
        return;
    };
    let db = plane_postgres::Options::from_url(&cluster.url(), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    db.ping().await.unwrap();
    let lock = db.try_lock("sync:project").await.unwrap().unwrap();
    cluster.stop();
    // The lock went with its connection, and says so.
    tokio::time::timeout(std::time::Duration::from_secs(30), lock.lost())
        .await
        .expect("a lock whose connection closed is lost");
    assert!(!lock.is_held());
    let down = db.ping().await.unwrap_err();
    assert!(down.is_unavailable(), "{down}");
    cluster.start_server();
    // The pool drops the dead connections and makes new ones by itself.
    let mut again = db.ping().await;
    for _ in 0..20 {
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        again = db.ping().await;
    }
    again.unwrap();
}

#[tokio::test]
async fn a_pool_whose_connections_stay_busy_is_saturated_not_unavailable() {
    let Some(pg) = testing::database("saturated").await else {
        return;
    };
    let db = pg.options().clone().pool_size(1).connect().await.unwrap();
    let held = db.client().await.unwrap();
    // The pool waits 10 s for a connection to come back, then says why it gave up.
    let err = db.client().await.unwrap_err();
    assert!(!err.is_unavailable(), "{err}");
    assert!(
        err.to_string().contains("all 1 connections stayed busy"),
        "{err}"
    );
    drop(held);
    db.ping().await.unwrap();
}
