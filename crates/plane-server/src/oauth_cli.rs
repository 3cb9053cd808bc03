//! `plane-server oauth …`: authorize a user (URL, then exchange), fetch a bot
//! token, and list what is stored. Tokens are stored encrypted (see
//! `plane_server::token_store`), in the SQLite file or in PostgreSQL, whichever the
//! database setting names; no command prints a token or a secret.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::Subcommand;
use plane_core::oauth::{Pkce, random_state};
use plane_core::{ExposeSecret, SecretString};
use plane_server::config::{Config, OAuthConfig, Overrides};
use plane_server::connector::oauth_app;
use plane_server::token_store::{
    self, PendingAuthorization, SqliteTokenStore, TokenInfo, TokenKey, TokenOwner, TokenStore,
};

use crate::{Common, OutputFormat};

#[derive(Debug, Subcommand)]
pub(crate) enum OAuthCommand {
    /// Print the URL a Plane user opens to authorize the app (user tokens, plane.oauth.user);
    /// the PKCE verifier and the state are kept, encrypted, in the database.
    AuthorizeUrl {
        #[command(flatten)]
        common: Common,
    },
    /// Trade the code from the redirect for the user's tokens, and store them encrypted.
    Exchange {
        #[command(flatten)]
        common: Common,
        /// The `code` parameter of the redirect.
        #[arg(long)]
        code: String,
        /// The `state` parameter of the redirect (checked against the one authorize-url kept).
        #[arg(long)]
        state: String,
    },
    /// Fetch the app's bot token for an installation (client_credentials), and store it encrypted.
    Bot {
        #[command(flatten)]
        common: Common,
        /// The `app_installation_id` Plane sent when the app was installed.
        #[arg(long, value_name = "ID")]
        installation: String,
    },
    /// Re-encrypt every stored token from the old key (PLANE_TOKEN_ENCRYPTION_KEY_OLD, or
    /// _FILE) to the new one (PLANE_TOKEN_ENCRYPTION_KEY, or _FILE), in one transaction. A
    /// wrong old key changes nothing and says so (exit 1).
    Rekey {
        #[command(flatten)]
        common: Common,
    },
    /// List the stored tokens: whose, and when they expire (never their values). Needs no key.
    Status {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

fn overrides(common: &Common) -> Overrides {
    Overrides {
        config_file: common.config.clone(),
        listen: None,
        database: common.db.clone(),
    }
}

/// Where `rekey` and `status` look: a `--db` file is used as it is (no configuration
/// read: `status` needs neither the key nor the client secret); otherwise the configured
/// database (with `--db postgres://…` too), SQLite or PostgreSQL.
enum Database {
    File(PathBuf),
    Configured(Box<Config>),
}

impl Database {
    fn of(common: &Common) -> anyhow::Result<Self> {
        match &common.db {
            Some(db) if !is_postgres_url(db) => Ok(Self::File(db.clone())),
            _ => {
                let config = Config::from_process(&overrides(common))?;
                Ok(match &config.postgres {
                    None => Self::File(config.database.clone()),
                    Some(_) => Self::Configured(Box::new(config)),
                })
            }
        }
    }

    fn location(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Configured(config) => token_store::location_of(config),
        }
    }
}

fn is_postgres_url(db: &std::path::Path) -> bool {
    let text = db.to_string_lossy();
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

fn oauth_of(config: &Config) -> anyhow::Result<&OAuthConfig> {
    config.oauth.as_ref().context(
        "OAuth is not configured: set plane.oauth.client_id (or PLANE_OAUTH_CLIENT_ID), \
         PLANE_OAUTH_CLIENT_SECRET and PLANE_TOKEN_ENCRYPTION_KEY (see the README, \"OAuth: a Plane app\")",
    )
}

fn user_of(oauth: &OAuthConfig, command: &str) -> anyhow::Result<TokenOwner> {
    match &oauth.owner {
        owner @ TokenOwner::User(_) => Ok(owner.clone()),
        TokenOwner::Installation(_) => bail!(
            "`oauth {command}` makes a user token, but the configuration names an installation \
             (plane.oauth.installation_id): set plane.oauth.user (PLANE_OAUTH_USER) instead, or \
             use `plane-server oauth bot --installation ID` for the bot token"
        ),
    }
}

pub(crate) async fn run(command: OAuthCommand) -> anyhow::Result<ExitCode> {
    match command {
        OAuthCommand::AuthorizeUrl { common } => {
            let config = Config::from_process(&overrides(&common))?;
            let oauth = oauth_of(&config)?;
            let owner = user_of(oauth, "authorize-url")?;
            let redirect_uri = oauth.redirect_uri.clone().context(
                "plane.oauth.redirect_uri is not set: it must be the app's Redirect URI",
            )?;
            let store = token_store::open_for(&config, oauth.key.clone()).await?;
            let pkce = oauth.pkce.then(Pkce::new);
            let state = random_state();
            store
                .save_pending(
                    &state,
                    &PendingAuthorization {
                        owner: owner.clone(),
                        verifier: pkce.as_ref().map_or_else(
                            || SecretString::from(String::new()),
                            |p| p.verifier().clone(),
                        ),
                        redirect_uri: redirect_uri.clone(),
                        created_at: Utc::now(),
                    },
                )
                .await?;
            let scopes: Vec<&str> = oauth.scopes.iter().map(String::as_str).collect();
            let url = oauth_app(&config, oauth)?.authorize_url(
                &redirect_uri,
                &scopes,
                &state,
                pkce.as_ref(),
            );
            eprintln!(
                "Open this URL as {owner}, approve the app, then run\n  plane-server oauth \
                 exchange --code CODE --state STATE\nwith the code and state of the page Plane \
                 redirects to:"
            );
            println!("{url}");
            Ok(ExitCode::SUCCESS)
        }
        OAuthCommand::Exchange {
            common,
            code,
            state,
        } => {
            let config = Config::from_process(&overrides(&common))?;
            let oauth = oauth_of(&config)?;
            let store = token_store::open_for(&config, oauth.key.clone()).await?;
            let Some(pending) = store.take_pending(&state).await? else {
                bail!(
                    "the state {state:?} matches no authorization started by `plane-server oauth \
                     authorize-url` in {} (it was used already, or the redirect is not the one that \
                     URL caused): run `plane-server oauth authorize-url` again",
                    store.location()
                );
            };
            let verifier = pending.verifier.expose_secret();
            let pkce = if verifier.is_empty() {
                None
            } else {
                Some(Pkce::from_verifier(verifier)?)
            };
            let tokens = oauth_app(&config, oauth)?
                .exchange_code(&code, &pending.redirect_uri, pkce.as_ref())
                .await?;
            store.save(&pending.owner, &tokens).await?;
            println!(
                "stored the token of {} in {} ({}, expires {})",
                pending.owner,
                store.location(),
                if tokens.refresh_token.is_some() {
                    "with a refresh token"
                } else {
                    "no refresh token"
                },
                tokens
                    .expires_at
                    .map_or("unknown".into(), |t| t.to_rfc3339())
            );
            Ok(ExitCode::SUCCESS)
        }
        OAuthCommand::Bot {
            common,
            installation,
        } => {
            let env = |name: &str| match name {
                "PLANE_OAUTH_INSTALLATION_ID" => Some(installation.clone()),
                "PLANE_OAUTH_USER" => None,
                _ => std::env::var(name).ok(),
            };
            let config = Config::load(&overrides(&common), &env)?;
            let oauth = oauth_of(&config)?;
            let app = oauth_app(&config, oauth)?;
            let tokens = app.client_credentials(&installation).await?;
            let store = token_store::open_for(&config, oauth.key.clone()).await?;
            let owner = TokenOwner::Installation(installation.clone());
            store.save(&owner, &tokens).await?;
            println!(
                "stored the bot token of {owner} in {} (expires {})",
                store.location(),
                tokens
                    .expires_at
                    .map_or("unknown".into(), |t| t.to_rfc3339())
            );
            match app.installation(&tokens.access_token, &installation).await {
                Ok(found) if found.workspace_slug != config.workspace_slug => eprintln!(
                    "plane-server: warning: the installation is in workspace {:?}, but \
                     plane.workspace_slug is {:?}; set PLANE_WORKSPACE_SLUG={}",
                    found.workspace_slug, config.workspace_slug, found.workspace_slug
                ),
                Ok(found) => println!("workspace:       {}", found.workspace_slug),
                Err(e) => eprintln!("plane-server: warning: installation lookup failed: {e}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        OAuthCommand::Rekey { common } => {
            let db = Database::of(&common)?;
            let env = |name: &str| std::env::var(name).ok();
            let missing = |var: &str| {
                format!(
                    "{var} is not set: `oauth rekey` needs the old key as \
                     PLANE_TOKEN_ENCRYPTION_KEY_OLD and the new one as PLANE_TOKEN_ENCRYPTION_KEY \
                     (or their _FILE variables)"
                )
            };
            let new =
                TokenKey::from_env(&env)?.with_context(|| missing("PLANE_TOKEN_ENCRYPTION_KEY"))?;
            let old = TokenKey::from_env_var(&env, "PLANE_TOKEN_ENCRYPTION_KEY_OLD")?
                .with_context(|| missing("PLANE_TOKEN_ENCRYPTION_KEY_OLD"))?;
            let store: Arc<dyn TokenStore> = match &db {
                Database::File(path) => {
                    if !path.exists() {
                        bail!(
                            "{}: no such database: nothing to re-encrypt",
                            path.display()
                        );
                    }
                    Arc::new(SqliteTokenStore::open(path, new)?)
                }
                Database::Configured(config) => token_store::open_for(config, new).await?,
            };
            let count = store.rekey(&old).await?;
            println!(
                "{}: re-encrypted {count} records under the new key; the old key is no longer \
                 needed",
                db.location()
            );
            Ok(ExitCode::SUCCESS)
        }
        OAuthCommand::Status { common, format } => {
            // Listing needs neither the key nor the client secret.
            let db = Database::of(&common)?;
            let store: Arc<dyn TokenStore> = match &db {
                Database::File(path) => Arc::new(SqliteTokenStore::open_for_listing(path)?),
                Database::Configured(config) => token_store::open_for_listing(config).await?,
            };
            let tokens = store.list().await?;
            print_status(&db.location(), &tokens, format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(db: &str, tokens: &[TokenInfo], format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(tokens)?);
        return Ok(());
    }
    if tokens.is_empty() {
        println!("no OAuth tokens stored in {db}");
        return Ok(());
    }
    println!("{:<40} {:<26} {:<8} SCOPE", "OWNER", "EXPIRES", "REFRESH");
    for t in tokens {
        println!(
            "{:<40} {:<26} {:<8} {}",
            t.owner,
            t.expires_at.map_or("unknown".into(), |e| e.to_rfc3339()),
            if t.has_refresh_token { "yes" } else { "no" },
            t.scope.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
