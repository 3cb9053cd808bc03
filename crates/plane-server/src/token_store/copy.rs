//! Moving the OAuth tokens from a SQLite file into PostgreSQL, for `plane-server db
//! migrate` ([`PgTokenStore::copy_from_sqlite`]), still encrypted.
//!
//! Both backends keep the same sealed records (the `record` module): a token's sealed
//! bytes are bound to its owner, its version and its clear columns (`expires_at` as the
//! same text, `has_refresh`, `scope`), so copying those byte for byte is all it takes
//! for the record to open on PostgreSQL with the same key. The key is not needed here
//! and never read: nothing is opened or sealed.
//!
//! Copied: `oauth_tokens` (with their versions), `oauth_token_versions` (the highest
//! version written per owner, which keeps rollback protection: an older record put back
//! later is still refused), and `oauth_pending` (authorizations waiting for `oauth
//! exchange`; past their 15 minutes they are refused there as here). Not copied:
//! `oauth_renewals` and `oauth_spending`, the leases and spend records of processes on the
//! old file, which mean nothing to the replicas (a renewal in flight there has ended:
//! `serve` is stopped for the copy).
//!
//! Running it again is safe: an owner or a state already in PostgreSQL is left as it is,
//! so a token a replica has renewed since is never put back to the copied (spent) one.

use chrono::{DateTime, Utc};
use plane_postgres::{Database, Transaction};
use rusqlite::Connection;

use super::{PgTokenStore, SCHEMA_VERSION, TokenStoreError};

/// A token record as SQLite keeps it, `updated_at` parsed for `timestamptz`.
struct Token {
    owner: String,
    sealed: Vec<u8>,
    expires_at: Option<String>,
    has_refresh: bool,
    scope: Option<String>,
    version: i64,
    updated_at: DateTime<Utc>,
}

struct Pending {
    state: String,
    owner: String,
    sealed: Vec<u8>,
    redirect_uri: String,
    created_at: DateTime<Utc>,
}

impl PgTokenStore {
    /// Copies the token records, their versions and the pending authorizations from
    /// `from`, a SQLite file's connection (read only; open it read-only, inside a read
    /// transaction for one consistent snapshot), into `db`'s schema through `to`, a
    /// transaction the caller commits. The tables must exist at this build's version
    /// ([`PgTokenStore::migrate`]). See the module docs.
    ///
    /// Returns the rows inserted per table (`oauth_tokens`, `oauth_token_versions`,
    /// `oauth_pending`): 0 for rows already there, and for a file without token tables.
    ///
    /// # Errors
    /// [`TokenStoreError::Store`] when the file's token tables are older than this build
    /// or a row cannot be read; [`TokenStoreError::SchemaTooNew`] for newer ones;
    /// [`TokenStoreError::Postgres`] when a statement fails or the connection is lost.
    /// Nothing is committed here.
    pub async fn copy_from_sqlite(
        from: &Connection,
        db: &Database,
        to: &Transaction<'_>,
    ) -> Result<Vec<(&'static str, u64)>, TokenStoreError> {
        let path = from.path().unwrap_or("(SQLite)").to_owned();
        let read = |e: rusqlite::Error| TokenStoreError::Store {
            path: path.clone(),
            operation: "read the token tables",
            message: e.to_string(),
        };
        let mut copied = vec![
            ("oauth_tokens", 0),
            ("oauth_token_versions", 0),
            ("oauth_pending", 0),
        ];
        match sqlite_version(from).map_err(read)? {
            0 => return Ok(copied),
            SCHEMA_VERSION => {}
            found if found > SCHEMA_VERSION => {
                return Err(TokenStoreError::SchemaTooNew { path, found });
            }
            found => {
                return Err(TokenStoreError::Store {
                    path,
                    operation: "copy the tokens",
                    message: format!(
                        "the token tables are at schema version {found}, older than this \
                         build's {SCHEMA_VERSION}: run this build's `plane-server serve` (with \
                         OAuth configured) on the file once (it migrates it), stop it, and \
                         copy again"
                    ),
                });
            }
        }
        let time = |column: &'static str, text: String| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| TokenStoreError::Store {
                    path: path.clone(),
                    operation: "read the token tables",
                    message: format!("{column} holds {text:?}, which this build cannot read"),
                })
        };

        let tokens: Vec<Token> = from
            .prepare(
                "SELECT owner, sealed, expires_at, has_refresh, scope, version, updated_at
                 FROM oauth_tokens ORDER BY owner",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(read)?
            .into_iter()
            .map(
                |(owner, sealed, expires_at, has_refresh, scope, version, updated)| {
                    Ok(Token {
                        updated_at: time("oauth_tokens.updated_at", updated)?,
                        owner,
                        sealed,
                        expires_at,
                        has_refresh,
                        scope,
                        version,
                    })
                },
            )
            .collect::<Result<_, TokenStoreError>>()?;
        let versions: Vec<(String, i64)> = from
            .prepare("SELECT owner, version FROM oauth_token_versions ORDER BY owner")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(read)?;
        let pending: Vec<Pending> = from
            .prepare(
                "SELECT state, owner, sealed, redirect_uri, created_at FROM oauth_pending
                 ORDER BY state",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(read)?
            .into_iter()
            .map(|(state, owner, sealed, redirect_uri, created)| {
                Ok(Pending {
                    created_at: time("oauth_pending.created_at", created)?,
                    state,
                    owner,
                    sealed,
                    redirect_uri,
                })
            })
            .collect::<Result<_, TokenStoreError>>()?;

        let fail =
            |operation: &'static str| move |e| TokenStoreError::Postgres(db.error(operation, &e));
        copied[0].1 = to
            .execute(
                "INSERT INTO oauth_tokens (owner, sealed, expires_at, has_refresh, scope, version,
                                           updated_at)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::boolean[],
                                      $5::text[], $6::bigint[], $7::timestamptz[])
                 ON CONFLICT (owner) DO NOTHING",
                &[
                    &tokens.iter().map(|t| &t.owner).collect::<Vec<_>>(),
                    &tokens
                        .iter()
                        .map(|t| t.sealed.as_slice())
                        .collect::<Vec<_>>(),
                    &tokens.iter().map(|t| &t.expires_at).collect::<Vec<_>>(),
                    &tokens.iter().map(|t| t.has_refresh).collect::<Vec<_>>(),
                    &tokens.iter().map(|t| &t.scope).collect::<Vec<_>>(),
                    &tokens.iter().map(|t| t.version).collect::<Vec<_>>(),
                    &tokens.iter().map(|t| t.updated_at).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(fail("copy the tokens"))?;
        copied[1].1 = to
            .execute(
                "INSERT INTO oauth_token_versions (owner, version)
                 SELECT * FROM unnest($1::text[], $2::bigint[])
                 ON CONFLICT (owner) DO NOTHING",
                &[
                    &versions.iter().map(|v| &v.0).collect::<Vec<_>>(),
                    &versions.iter().map(|v| v.1).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(fail("copy the token versions"))?;
        copied[2].1 = to
            .execute(
                "INSERT INTO oauth_pending (state, owner, sealed, redirect_uri, created_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[],
                                      $5::timestamptz[])
                 ON CONFLICT (state) DO NOTHING",
                &[
                    &pending.iter().map(|p| &p.state).collect::<Vec<_>>(),
                    &pending.iter().map(|p| &p.owner).collect::<Vec<_>>(),
                    &pending
                        .iter()
                        .map(|p| p.sealed.as_slice())
                        .collect::<Vec<_>>(),
                    &pending.iter().map(|p| &p.redirect_uri).collect::<Vec<_>>(),
                    &pending.iter().map(|p| p.created_at).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(fail("copy the pending authorizations"))?;
        Ok(copied)
    }
}

/// The token tables' version in the file (0 without them).
fn sqlite_version(from: &Connection) -> rusqlite::Result<i64> {
    let exists: bool = from.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
         AND name = 'oauth_schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    from.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM oauth_schema_migrations",
        [],
        |r| r.get(0),
    )
}
