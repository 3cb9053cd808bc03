//! One Plane budget for every replica: [`PgBudget`] keeps the key's request log in
//! PostgreSQL, so N replicas spending one key stay under Plane's per-key limit together.
//!
//! Each replica sees only its own answers' `X-RateLimit-*`, so none can pace the others.
//! Every request takes a row in `plane_budget_slots` (plane-core's [`SharedBudget`]):
//! a transaction-scoped advisory lock per budget makes "count, then take" atomic across
//! replicas, and a slot counts until one window after its request's answer, as the local
//! log does. A slot whose answer never came (the replica died mid-request) counts for
//! [`UNANSWERED`] more. With SQLite, or one replica, none of this runs.

use std::sync::Arc;
use std::time::Duration;

use plane_core::{BoxFuture, Budget, SharedBudget};
use plane_postgres::Database;

/// How long a slot whose request was never answered counts, past its window: longer
/// than any request may take (plane-core's request timeout is 30 s by default).
pub const UNANSWERED: Duration = Duration::from_secs(300);

/// The shared budget's migrations (component `budget`); append-only.
const MIGRATIONS: &[&str] = &["CREATE TABLE plane_budget_slots (
         id          bigserial PRIMARY KEY,
         budget      text NOT NULL,
         taken_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
         answered_at timestamptz
     );
     CREATE INDEX plane_budget_slots_budget ON plane_budget_slots (budget, answered_at);"];

/// A key's budget shared through PostgreSQL. See the [module docs](self).
///
/// Built without I/O ([`PgBudget::new`]): the pool is made and the table created at the
/// first request, and again at the next if that failed (the database may be down; the
/// request then goes on under the local limiter alone).
#[derive(Debug, Clone)]
pub struct PgBudget {
    options: plane_postgres::Options,
    db: Arc<tokio::sync::OnceCell<Database>>,
    name: String,
}

impl PgBudget {
    /// The budget called `name` (plane-server uses the Plane URL and workspace: what one
    /// key spends), in the database `options` names.
    pub fn new(options: plane_postgres::Options, name: impl Into<String>) -> Self {
        Self {
            options: options.pool_size(4),
            db: Arc::default(),
            name: name.into(),
        }
    }

    /// As a plane-core [`SharedBudget`].
    pub fn shared(self) -> Arc<dyn SharedBudget> {
        Arc::new(self)
    }

    async fn db(&self) -> Result<&Database, plane_postgres::Error> {
        self.db
            .get_or_try_init(|| async {
                let db = self.options.connect().await?;
                db.migrate("budget", MIGRATIONS).await?;
                Ok(db)
            })
            .await
    }

    async fn take(&self, budget: Budget) -> Result<Result<u64, Duration>, plane_postgres::Error> {
        let db = self.db().await?;
        let mut client = db.client().await?;
        let fail = db.query("take a slot in the shared Plane budget");
        let tx = client.transaction().await.map_err(&fail)?;
        let window = budget.window.as_secs_f64();
        let unanswered = UNANSWERED.as_secs_f64();
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('budget:' || $1, 0))",
            &[&self.name],
        )
        .await
        .map_err(&fail)?;
        tx.execute(
            "DELETE FROM plane_budget_slots WHERE budget = $1 AND \
             COALESCE(answered_at, taken_at + make_interval(secs => $3)) \
             + make_interval(secs => $2) <= clock_timestamp()",
            &[&self.name, &window, &unanswered],
        )
        .await
        .map_err(&fail)?;
        let row = tx
            .query_one(
                "SELECT count(*), EXTRACT(EPOCH FROM min(COALESCE(answered_at, \
                 taken_at + make_interval(secs => $3)) + make_interval(secs => $2) \
                 - clock_timestamp()))::float8 FROM plane_budget_slots WHERE budget = $1",
                &[&self.name, &window, &unanswered],
            )
            .await
            .map_err(&fail)?;
        let used: i64 = row.get(0);
        let answer = if used < i64::from(budget.requests) {
            let id: i64 = tx
                .query_one(
                    "INSERT INTO plane_budget_slots (budget) VALUES ($1) RETURNING id",
                    &[&self.name],
                )
                .await
                .map_err(&fail)?
                .get(0);
            Ok(u64::try_from(id).unwrap_or_default())
        } else {
            // Until the first slot ends; while every slot is still unanswered (requests
            // in flight), ask again soon: an answer frees nothing sooner than a window, but
            // it tells us when.
            let next: Option<f64> = row.get(1);
            let in_flight_only = Duration::from_millis(250);
            Err(next
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(in_flight_only, |s| {
                    Duration::from_secs_f64(s).min(budget.window)
                }))
        };
        tx.commit().await.map_err(&fail)?;
        Ok(answer)
    }

    async fn answered(&self, slot: u64) -> Result<(), plane_postgres::Error> {
        let db = self.db().await?;
        let client = db.client().await?;
        let id = i64::try_from(slot).unwrap_or(i64::MAX);
        client
            .execute(
                "UPDATE plane_budget_slots SET answered_at = clock_timestamp() WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(db.query("end a slot in the shared Plane budget"))?;
        Ok(())
    }
}

impl SharedBudget for PgBudget {
    fn try_take(&self, budget: Budget) -> BoxFuture<'_, Result<Result<u64, Duration>, String>> {
        Box::pin(async move { self.take(budget).await.map_err(|e| e.to_string()) })
    }

    fn finished(&self, slot: u64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.answered(slot).await {
                // The slot then counts for UNANSWERED longer: safe, only slower.
                tracing::warn!(error = %e, "could not mark a shared budget slot answered");
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replicas_never_hold_more_slots_than_the_budget_and_learn_when_one_frees() {
        let Some(pg) = plane_postgres::testing::database("budget").await else {
            return;
        };
        let budget = Budget::new(3, Duration::from_secs(2));
        let mut replicas = Vec::new();
        for _ in 0..3 {
            replicas.push(PgBudget::new(pg.options().clone(), "plane:acme"));
        }
        // Nine asks at once from three replicas: exactly three slots.
        let mut asks = Vec::new();
        for i in 0..9 {
            let replica = replicas[i % 3].clone();
            asks.push(tokio::spawn(async move { replica.take(budget).await }));
        }
        let mut taken = Vec::new();
        let mut refused = 0;
        for ask in asks {
            match ask.await.unwrap().unwrap() {
                Ok(slot) => taken.push(slot),
                Err(wait) => {
                    assert!(wait <= budget.window, "{wait:?}");
                    refused += 1;
                }
            }
        }
        assert_eq!((taken.len(), refused), (3, 6));
        // Answered now: each frees one window later, and a refusal says about when.
        for slot in &taken {
            replicas[0].answered(*slot).await.unwrap();
        }
        let wait = replicas[1].take(budget).await.unwrap().unwrap_err();
        assert!(
            wait > Duration::from_secs(1) && wait <= budget.window,
            "{wait:?}"
        );
        // Another budget (another key) is not affected.
        let other = PgBudget::new(pg.options().clone(), "plane:other");
        assert!(other.take(budget).await.unwrap().is_ok());
        // A window later, the slots are free again.
        tokio::time::sleep(wait + Duration::from_millis(100)).await;
        assert!(replicas[2].take(budget).await.unwrap().is_ok());
    }
}
