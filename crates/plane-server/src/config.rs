//! Configuration: flags > environment > TOML file > defaults.
//!
//! Secrets (the API key, the webhook secrets) come only from the environment or
//! from a file named by an environment variable (`PLANE_API_KEY_FILE`,
//! `PLANE_WEBHOOK_SECRET_FILE`); one found in the TOML file is a startup error.
//! A secret file that group or others may read is reported with a warning.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plane_core::SecretString;
use serde::Deserialize;

use crate::token_store::{TokenKey, TokenOwner};

/// An invalid configuration: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration `{key}`: {message}")]
pub struct ConfigError {
    /// The key (`server.listen`), variable (`PLANE_API_KEY_FILE`) or file at fault.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `plane.base_url` / `PLANE_BASE_URL`.
    pub base_url: String,
    /// `plane.workspace_slug` / `PLANE_WORKSPACE_SLUG`.
    pub workspace_slug: String,
    /// `PLANE_API_KEY` or the file named by `PLANE_API_KEY_FILE`.
    pub api_key: Option<SecretString>,
    /// Active webhook secrets (several during rotation).
    pub webhook_secrets: Vec<SecretString>,
    /// `[plane.oauth]`, when the connector authenticates as a Plane app.
    pub oauth: Option<OAuthConfig>,
    /// `plane.enabled` as configured; see [`Config::is_enabled`] for the default.
    pub enabled: Option<bool>,
    /// Requests per minute of the key (60 on Plane Cloud, 300 for service tokens).
    pub rate_limit_per_minute: u32,
    /// `server.listen` / `PLANE_LISTEN` / `--listen`.
    pub listen: SocketAddr,
    /// `store.database` / `PLANE_DATABASE_URL` / `--db`: the SQLite file (unused when
    /// [`postgres`](Self::postgres) is set).
    pub database: PathBuf,
    /// The same setting when it is a `postgres://` URL: every store lives in PostgreSQL.
    pub postgres: Option<PostgresConfig>,
    /// `server.body_limit_bytes`: the largest webhook body taken.
    pub body_limit: usize,
    /// `server.max_in_flight`: webhook requests read at once; the rest wait.
    pub max_in_flight: usize,
    /// `store.retention` (like `7d`): how long finished deliveries are kept.
    pub retention: Duration,
    /// `store.purge_interval` (like `24h`): how often they are purged.
    pub purge_interval: Duration,
    /// `worker.lease_seconds`: how long a claimed item is held.
    pub lease: Duration,
    /// `worker.max_attempts`: tries before an item is parked as dead.
    pub max_attempts: u32,
    /// `[bir]`: which Plane project each BIR profile is synced to.
    pub bir: BirConfig,
    /// `mcp.http`: serve MCP over Streamable HTTP at `/mcp` inside `serve` (default off).
    pub mcp_http: bool,
    /// `PLANE_MCP_TOKEN` or the file named by `PLANE_MCP_TOKEN_FILE`: the bearer token
    /// `/mcp` requires.
    pub mcp_token: Option<SecretString>,
}

/// PostgreSQL, when `store.database` / `PLANE_DATABASE_URL` / `--db` is a `postgres://`
/// (or `postgresql://`) URL.
///
/// The password comes from the URL (environment or flag only: a URL with a password in the
/// config file is refused), else `PGPASSWORD` or the file `PGPASSWORD_FILE` names. The
/// tables go in `store.schema` / `PLANE_DATABASE_SCHEMA` (default `plane`).
#[derive(Clone)]
pub struct PostgresConfig {
    options: plane_postgres::Options,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("target", &self.options.target())
            .field("schema", &self.options.schema_name())
            .finish()
    }
}

impl PostgresConfig {
    /// Where to connect, the password included (it never prints).
    pub fn options(&self) -> &plane_postgres::Options {
        &self.options
    }

    /// The URL without its password, and the schema: what logs and `check` show.
    pub fn describe(&self) -> String {
        format!(
            "{} (schema {})",
            self.options.target(),
            self.options.schema_name()
        )
    }
}

/// `[bir]` in the config file: where `plane-server bir sync` sends deadlines.
///
/// ```toml
/// [bir]
/// project = "6f1c…"            # default project (or PLANE_BIR_PROJECT_ID)
/// ahead = "12m"                 # how far a `bir sync` without --year reaches (1m-36m, or 1y-3y)
///
/// [[bir.profiles]]              # one per company; synced in this order
/// file = "profiles/bayanihan.toml"   # relative to the config file
/// project = "0b2d…"            # its own project (else the default)
/// overrides = "bayanihan-overrides.toml"  # optional
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BirConfig {
    /// `bir.project` / `PLANE_BIR_PROJECT_ID` (the environment wins).
    pub project: Option<uuid::Uuid>,
    /// `[[bir.profiles]]`, in file order.
    pub profiles: Vec<BirProfileConfig>,
    /// `bir.ahead`: how far the rolling window of `bir sync` reaches (`--ahead` wins).
    pub ahead: Option<plane_bir::Ahead>,
}

/// One `[[bir.profiles]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirProfileConfig {
    /// `file`: the profile TOML, resolved against the config file's directory.
    pub file: PathBuf,
    /// `project`: its Plane project, if not the default.
    pub project: Option<uuid::Uuid>,
    /// `overrides`: its override file, if not the default.
    pub overrides: Option<PathBuf>,
    /// Where it is named, for errors: `bir.profiles[1]`.
    pub key: String,
}

/// What flags may set (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--db`.
    pub database: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    plane: FilePlane,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    worker: FileWorker,
    #[serde(default)]
    bir: FileBir,
    #[serde(default)]
    mcp: FileMcp,
}

/// `[mcp]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMcp {
    http: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBir {
    project: Option<String>,
    ahead: Option<String>,
    #[serde(default)]
    profiles: Vec<FileBirProfile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBirProfile {
    file: PathBuf,
    project: Option<String>,
    overrides: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlane {
    base_url: Option<String>,
    workspace_slug: Option<String>,
    enabled: Option<bool>,
    rate_limit_per_minute: Option<u32>,
    oauth: Option<FileOAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOAuth {
    client_id: Option<String>,
    installation_id: Option<String>,
    user: Option<String>,
    redirect_uri: Option<String>,
    scopes: Option<Vec<String>>,
    pkce: Option<bool>,
}

/// `[plane.oauth]`: authenticate as a Plane app (Plane Cloud) instead of with an
/// API key.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// `plane.oauth.client_id` / `PLANE_OAUTH_CLIENT_ID` (not a secret).
    pub client_id: String,
    /// `PLANE_OAUTH_CLIENT_SECRET` or the file named by `PLANE_OAUTH_CLIENT_SECRET_FILE`.
    pub client_secret: SecretString,
    /// Whose token the connector uses.
    pub owner: TokenOwner,
    /// `plane.oauth.redirect_uri` / `PLANE_OAUTH_REDIRECT_URI`: the app's Redirect URI
    /// (needed for user tokens).
    pub redirect_uri: Option<String>,
    /// `plane.oauth.scopes` (default `["read", "write"]`, what Plane's SDKs ask for).
    pub scopes: Vec<String>,
    /// `plane.oauth.pkce` (default true): send a PKCE S256 challenge with the
    /// authorization code grant.
    pub pkce: bool,
    /// `PLANE_TOKEN_ENCRYPTION_KEY` or `PLANE_TOKEN_ENCRYPTION_KEY_FILE`.
    pub key: TokenKey,
}

impl OAuthConfig {
    /// What `check` prints for the auth in use.
    pub fn describe(&self) -> String {
        match &self.owner {
            TokenOwner::Installation(id) => {
                format!(
                    "OAuth bot token of installation {id} (client {})",
                    self.client_id
                )
            }
            TokenOwner::User(name) => {
                format!("OAuth user token of {name} (client {})", self.client_id)
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    body_limit_bytes: Option<usize>,
    max_in_flight: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    database: Option<PathBuf>,
    schema: Option<String>,
    retention: Option<String>,
    purge_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorker {
    lease_seconds: Option<u64>,
    max_attempts: Option<u32>,
}

/// Keys that name secrets: refused in the file, whatever section they are in.
const SECRET_WORDS: [&str; 5] = ["secret", "api_key", "token", "password", "key_file"];

impl Config {
    /// Loads the configuration from `overrides`, the environment `env` and the
    /// TOML file (`--config`, else none).
    pub fn load(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let mut file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };

        let base_url = env("PLANE_BASE_URL")
            .or(file.plane.base_url)
            .unwrap_or_else(|| plane_core::DEFAULT_BASE_URL.to_owned());
        plane_core::BaseUrl::parse(&base_url)
            .map_err(|e| ConfigError::new("plane.base_url", e.to_string()))?;
        let workspace_slug = env("PLANE_WORKSPACE_SLUG")
            .or(file.plane.workspace_slug)
            .unwrap_or_else(|| plane_core::DEFAULT_WORKSPACE_SLUG.to_owned());
        if workspace_slug.trim().is_empty() || workspace_slug.contains('/') {
            return Err(ConfigError::new(
                "plane.workspace_slug",
                format!("{workspace_slug:?} is not a workspace slug"),
            ));
        }

        let api_key = secret(&env, "PLANE_API_KEY")?.map(SecretString::from);
        let webhook_secrets: Vec<SecretString> = secret(&env, "PLANE_WEBHOOK_SECRET")?
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(SecretString::from)
                    .collect()
            })
            .unwrap_or_default();

        let oauth = oauth_config(file.plane.oauth.take(), &env, api_key.is_some())?;
        if oauth.is_some() {
            // The client secret, codes and tokens go to the base URL.
            plane_core::oauth::require_https("the OAuth base URL", &base_url)
                .map_err(|e| ConfigError::new("plane.base_url", e.to_string()))?;
        }

        let enabled = match env("PLANE_ENABLED") {
            Some(v) => Some(parse_bool("plane.enabled (PLANE_ENABLED)", &v)?),
            None => file.plane.enabled,
        };
        let rate_limit_per_minute = match env("PLANE_RATE_LIMIT_PER_MINUTE") {
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new(
                    "plane.rate_limit_per_minute",
                    format!("{v:?} is not a whole number"),
                )
            })?,
            None => file.plane.rate_limit_per_minute.unwrap_or(60),
        };
        if rate_limit_per_minute == 0 {
            return Err(ConfigError::new(
                "plane.rate_limit_per_minute",
                "must be at least 1",
            ));
        }

        let listen = match (overrides.listen, env("PLANE_LISTEN").or(file.server.listen)) {
            (Some(addr), _) => addr,
            (None, Some(text)) => text.parse().map_err(|_| {
                ConfigError::new(
                    "server.listen",
                    format!("{text:?} is not an address like 127.0.0.1:8080"),
                )
            })?,
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let (database, postgres) = database(
            overrides.database.as_deref(),
            env("PLANE_DATABASE_URL"),
            file.store.database.take(),
            env("PLANE_DATABASE_SCHEMA").or(file.store.schema.take()),
            &env,
        )?;
        let body_limit = file.server.body_limit_bytes.unwrap_or(1024 * 1024);
        if body_limit == 0 {
            return Err(ConfigError::new(
                "server.body_limit_bytes",
                "must be at least 1",
            ));
        }
        let max_in_flight = file
            .server
            .max_in_flight
            .unwrap_or(crate::in_flight::DEFAULT_MAX_IN_FLIGHT);
        let age = |key: &str, value: Option<String>, default: &str| {
            let value = value.unwrap_or_else(|| default.to_owned());
            match crate::age::parse_age(&value) {
                Ok(age) if age.is_zero() => Err(ConfigError::new(key, "must be more than 0")),
                Ok(age) => Ok(age),
                Err(e) => Err(ConfigError::new(key, e)),
            }
        };
        let retention = age("store.retention", file.store.retention, "7d")?;
        let purge_interval = age("store.purge_interval", file.store.purge_interval, "24h")?;
        let lease = file.worker.lease_seconds.unwrap_or(60);
        let max_attempts = file.worker.max_attempts.unwrap_or(8);
        for (key, value) in [
            ("server.max_in_flight", max_in_flight as u64),
            ("worker.lease_seconds", lease),
            ("worker.max_attempts", u64::from(max_attempts)),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        let bir = bir_config(
            file.bir,
            env("PLANE_BIR_PROJECT_ID"),
            overrides.config_file.as_deref(),
        )?;
        let mcp_http = file.mcp.http.unwrap_or(false);
        let mcp_token = secret(&env, "PLANE_MCP_TOKEN")?.map(SecretString::from);
        Ok(Self {
            bir,
            mcp_http,
            mcp_token,
            base_url,
            workspace_slug,
            api_key,
            oauth,
            webhook_secrets,
            enabled,
            rate_limit_per_minute,
            listen,
            database,
            postgres,
            body_limit,
            max_in_flight,
            retention,
            purge_interval,
            lease: Duration::from_secs(lease),
            max_attempts,
        })
    }

    /// `plane.enabled`, by default on when credentials (an API key or a webhook
    /// secret) are configured.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(
            self.api_key.is_some() || self.oauth.is_some() || !self.webhook_secrets.is_empty(),
        )
    }

    /// `serve` needs a webhook secret: without one every delivery would be
    /// answered 503, and Plane CE counts any answer as delivered and drops it.
    pub fn require_webhook_secret(&self) -> Result<(), ConfigError> {
        if self.webhook_secrets.is_empty() {
            return Err(ConfigError::new(
                "PLANE_WEBHOOK_SECRET",
                "no webhook secret is configured, and serve does not start without one (Plane \
                 counts any answer as delivered, so deliveries it cannot verify would be lost). Set \
                 PLANE_WEBHOOK_SECRET (comma-separated during rotation) or point \
                 PLANE_WEBHOOK_SECRET_FILE at a file holding it; see \
                 ssot/secrets/registry.yaml#plane_webhook_secret",
            ));
        }
        Ok(())
    }

    /// With `[mcp] http = true`, `serve` needs the bearer token `/mcp` asks for: an
    /// MCP endpoint open to anyone who reaches the port is refused at start.
    pub fn require_mcp_token(&self) -> Result<(), ConfigError> {
        if self.mcp_http && self.mcp_token.is_none() {
            return Err(ConfigError::new(
                "PLANE_MCP_TOKEN",
                "mcp.http is on but no bearer token is configured, and serve does not start \
                 without one (anyone who reaches the port could read the deadlines). Set \
                 PLANE_MCP_TOKEN or point PLANE_MCP_TOKEN_FILE at a file holding it (for \
                 example `openssl rand -hex 32`), or set mcp.http = false; see \
                 ssot/secrets/registry.yaml#plane_mcp_token",
            ));
        }
        Ok(())
    }

    /// The configuration from the process's environment.
    pub fn from_process(overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load(overrides, &|name| std::env::var(name).ok())
    }
}

fn oauth_config(
    file: Option<FileOAuth>,
    env: &dyn Fn(&str) -> Option<String>,
    api_key: bool,
) -> Result<Option<OAuthConfig>, ConfigError> {
    let file = file.unwrap_or_default();
    let Some(client_id) = env("PLANE_OAUTH_CLIENT_ID").or(file.client_id) else {
        return Ok(None);
    };
    if api_key {
        return Err(ConfigError::new(
            "PLANE_API_KEY and plane.oauth.client_id",
            "both an API key (PLANE_API_KEY) and OAuth (plane.oauth.client_id / \
             PLANE_OAUTH_CLIENT_ID) are configured, and Plane takes exactly one: unset \
             PLANE_API_KEY to use OAuth, or remove the OAuth client id to use the API key",
        ));
    }
    let client_secret = secret(env, "PLANE_OAUTH_CLIENT_SECRET")?
        .map(SecretString::from)
        .ok_or_else(|| {
            ConfigError::new(
                "PLANE_OAUTH_CLIENT_SECRET",
                "OAuth is configured (plane.oauth.client_id) but the client secret is not: set \
                 PLANE_OAUTH_CLIENT_SECRET or point PLANE_OAUTH_CLIENT_SECRET_FILE at a file \
                 holding it (see ssot/secrets/registry.yaml#plane_oauth_client_secret)",
            )
        })?;
    let installation = env("PLANE_OAUTH_INSTALLATION_ID").or(file.installation_id);
    let user = env("PLANE_OAUTH_USER").or(file.user);
    let owner = match (installation, user) {
        (Some(id), None) => TokenOwner::Installation(id.trim().to_owned()),
        (None, Some(name)) => TokenOwner::User(name.trim().to_owned()),
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "plane.oauth.installation_id and plane.oauth.user",
                "both are set: use the bot token of an installation, or a user's token, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                "plane.oauth",
                "OAuth needs plane.oauth.installation_id (PLANE_OAUTH_INSTALLATION_ID) for the \
                 app's bot token, or plane.oauth.user (PLANE_OAUTH_USER) for a user token",
            ));
        }
    };
    let redirect_uri = env("PLANE_OAUTH_REDIRECT_URI").or(file.redirect_uri);
    if let Some(uri) = &redirect_uri {
        // The code comes back to it.
        plane_core::oauth::require_https("the redirect URI", uri)
            .map_err(|e| ConfigError::new("plane.oauth.redirect_uri", e.to_string()))?;
    }
    if matches!(owner, TokenOwner::User(_)) && redirect_uri.is_none() {
        return Err(ConfigError::new(
            "plane.oauth.redirect_uri",
            "a user token needs the app's Redirect URI (plane.oauth.redirect_uri or \
             PLANE_OAUTH_REDIRECT_URI), exactly as registered in Plane",
        ));
    }
    let key = TokenKey::from_env(env)
        .map_err(|e| ConfigError::new("PLANE_TOKEN_ENCRYPTION_KEY", e.to_string()))?
        .ok_or_else(|| {
            ConfigError::new(
                "PLANE_TOKEN_ENCRYPTION_KEY",
                crate::token_store::TokenStoreError::KeyMissing.to_string(),
            )
        })?;
    // TokenKey::from_env read the file itself; only its mode is checked here.
    if let Some(path) = env("PLANE_TOKEN_ENCRYPTION_KEY_FILE") {
        warn_if_shared("PLANE_TOKEN_ENCRYPTION_KEY_FILE", Path::new(&path));
    }
    Ok(Some(OAuthConfig {
        client_id: client_id.trim().to_owned(),
        client_secret,
        owner,
        redirect_uri,
        scopes: file
            .scopes
            .unwrap_or_else(|| vec!["read".into(), "write".into()]),
        pkce: file.pkce.unwrap_or(true),
        key,
    }))
}

fn project_id(key: &str, text: &str) -> Result<uuid::Uuid, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("{text:?} is not a project id (a UUID, as in the project's URL in Plane)"),
        )
    })
}

fn bir_config(
    file: FileBir,
    env_project: Option<String>,
    config_file: Option<&Path>,
) -> Result<BirConfig, ConfigError> {
    let project = match env_project {
        Some(v) => Some(project_id("PLANE_BIR_PROJECT_ID", &v)?),
        None => file
            .project
            .as_deref()
            .map(|v| project_id("bir.project", v))
            .transpose()?,
    };
    let base = config_file
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let profiles = file
        .profiles
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let key = format!("bir.profiles[{i}]");
            Ok(BirProfileConfig {
                file: base.join(&p.file),
                project: p
                    .project
                    .as_deref()
                    .map(|v| project_id(&format!("{key}.project"), v))
                    .transpose()?,
                overrides: p.overrides.map(|o| base.join(o)),
                key,
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    let ahead = file
        .ahead
        .map(|text| text.parse().map_err(|e| ConfigError::new("bir.ahead", e)))
        .transpose()?;
    Ok(BirConfig {
        project,
        profiles,
        ahead,
    })
}

fn is_postgres_url(value: &str) -> bool {
    value.starts_with("postgres://") || value.starts_with("postgresql://")
}

/// The SQLite path, or PostgreSQL, from `--db`, `PLANE_DATABASE_URL` or `store.database`
/// (in that order).
fn database(
    flag: Option<&Path>,
    env_url: Option<String>,
    file: Option<PathBuf>,
    schema: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(PathBuf, Option<PostgresConfig>), ConfigError> {
    let (key, value) = match (flag, env_url, file) {
        (Some(flag), _, _) => ("--db", flag.to_string_lossy().into_owned()),
        (None, Some(url), _) => ("PLANE_DATABASE_URL", url),
        (None, None, Some(file)) => ("store.database", file.to_string_lossy().into_owned()),
        (None, None, None) => ("store.database", "plane.db".to_owned()),
    };
    if !is_postgres_url(&value) {
        if schema.is_some() {
            tracing::debug!("store.schema is only used with PostgreSQL");
        }
        return Ok((database_path(&value), None));
    }
    let password = secret(env, "PGPASSWORD")?;
    let options = plane_postgres::Options::from_url(&value, password.as_deref())
        .map_err(|e| ConfigError::new(key, e.to_string()))?;
    if key == "store.database" && options.has_url_password() {
        return Err(ConfigError::new(
            key,
            "the URL holds a password; secrets are never read from the config file. Leave it \
             out and set PGPASSWORD, or point PGPASSWORD_FILE at a file holding it",
        ));
    }
    let options = match schema {
        Some(schema) => options
            .schema(&schema)
            .map_err(|e| ConfigError::new("store.schema", e.to_string()))?,
        None => options,
    };
    Ok((PathBuf::from("plane.db"), Some(PostgresConfig { options })))
}

/// `sqlite:///var/lib/plane.db`, `sqlite:plane.db` or a plain path.
fn database_path(value: &str) -> PathBuf {
    let trimmed = value
        .strip_prefix("sqlite://")
        .or_else(|| value.strip_prefix("sqlite:"))
        .unwrap_or(value);
    PathBuf::from(trimmed)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(ConfigError::new(
            key,
            format!("{other:?} is not true or false"),
        )),
    }
}

/// A secret from `NAME`, or from the file named by `NAME_FILE`.
fn secret(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<String>, ConfigError> {
    let file_var = format!("{name}_FILE");
    match (env(name), env(&file_var)) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            name,
            format!("both {name} and {file_var} are set; set only one"),
        )),
        (Some(value), None) => Ok(Some(value.trim().to_owned())),
        (None, Some(path)) => {
            let value = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::new(&file_var, format!("cannot read {path:?}: {e}")))?;
            warn_if_shared(&file_var, Path::new(&path));
            let value = value.trim();
            if value.is_empty() {
                return Err(ConfigError::new(file_var, format!("{path:?} is empty")));
            }
            Ok(Some(value.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// Warns, naming the variable and the path but never the content, when the
/// secret file `var` names may be read or written by group or others.
fn warn_if_shared(var: &str, path: &Path) {
    if let Some(text) = shared_secret_file(var, path) {
        tracing::warn!(variable = var, path = %path.display(), "{text}");
    }
}

/// Why the secret file at `path` is not private, or `None` when it is (or
/// cannot be inspected: reading it reports that).
#[cfg(unix)]
fn shared_secret_file(var: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    // Group and others' read and write bits.
    (mode & 0o066 != 0).then(|| {
        format!(
            "the secret file {var}={} has mode {mode:04o}: group or others may read or write it; \
             make it private with `chmod 600 {}`",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn shared_secret_file(_var: &str, _path: &Path) -> Option<String> {
    None
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let key = format!("--config {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&key, format!("cannot read it: {e}")))?;
    // toml's Display quotes the offending line, which may hold a secret: report
    // the position and the reason only.
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::new(&key, toml_error(&text, &e)))?;
    // Refuse secrets before anything else, naming the key but never the value.
    fn dotted(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v.as_table() {
                Some(inner) => dotted(&key, inner, out),
                None => out.push(key),
            }
        }
    }
    let mut keys = Vec::new();
    dotted("", &table, &mut keys);
    {
        if let Some(bad) = keys.iter().find(|k| {
            SECRET_WORDS
                .iter()
                .any(|w| k.to_ascii_lowercase().contains(w))
        }) {
            return Err(ConfigError::new(
                bad,
                format!(
                    "{} holds a secret; secrets are never read from the config file. Set it in the \
                     environment (PLANE_API_KEY, PLANE_WEBHOOK_SECRET, PLANE_OAUTH_CLIENT_SECRET) or \
                     point the matching _FILE variable at a file, and remove it from the file",
                    path.display()
                ),
            ));
        }
    }
    toml::from_str(&text)
        .map_err(|e: toml::de::Error| ConfigError::new(&key, toml_error(&text, &e)))
}

/// "line N: reason", without the text of the line.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message())
        }
        None => e.message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use plane_core::ExposeSecret;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn toml_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plane-server.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// Loads a config file holding `text` with `env`, expecting an error.
    fn file_error(text: &str, env: &[(&str, &str)]) -> ConfigError {
        let (_dir, path) = toml_file(text);
        Config::load(
            &Overrides {
                config_file: Some(path),
                ..Overrides::default()
            },
            &env_of(env),
        )
        .unwrap_err()
    }

    #[test]
    fn defaults() {
        let c = Config::load(&Overrides::default(), &env_of(&[])).unwrap();
        assert_eq!(c.base_url, plane_core::DEFAULT_BASE_URL);
        assert_eq!(c.workspace_slug, "insightpulseai");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database, PathBuf::from("plane.db"));
        assert_eq!(c.body_limit, 1024 * 1024);
        assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
        assert!(!c.is_enabled(), "no credentials: off by default");
    }

    #[test]
    fn a_postgres_url_selects_postgres_and_its_password_never_shows() {
        let c = Config::load(
            &Overrides::default(),
            &env_of(&[
                (
                    "PLANE_DATABASE_URL",
                    "postgres://plane@db.internal:5433/odoo",
                ),
                ("PGPASSWORD", "pw-from-env"),
                ("PLANE_DATABASE_SCHEMA", "connector"),
            ]),
        )
        .unwrap();
        let pg = c.postgres.as_ref().expect("postgres");
        assert_eq!(
            pg.describe(),
            "postgres://plane@db.internal:5433/odoo (schema connector)"
        );
        assert!(!format!("{c:?}").contains("pw-from-env"));
        // A flag with a password in it (a test database, say) is taken; it is not shown.
        let c = Config::load(
            &Overrides {
                database: Some("postgresql://plane:pw-in-url@127.0.0.1/plane".into()),
                ..Overrides::default()
            },
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(
            c.postgres.as_ref().unwrap().options().target(),
            "postgres://plane@127.0.0.1:5432/plane"
        );
        assert!(!format!("{c:?}").contains("pw-in-url"));
        // A plain path stays SQLite.
        let c = Config::load(
            &Overrides::default(),
            &env_of(&[("PLANE_DATABASE_URL", "x.db")]),
        )
        .unwrap();
        assert!(c.postgres.is_none());
    }

    #[test]
    fn a_postgres_password_in_the_config_file_or_a_bad_schema_is_refused() {
        let err = file_error(
            "[store]\ndatabase = \"postgres://plane:hunter2@db/odoo\"\n",
            &[],
        );
        assert_eq!(err.key, "store.database");
        assert!(err.message.contains("PGPASSWORD_FILE"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = file_error(
            "[store]\ndatabase = \"postgres://plane@db/odoo\"\nschema = \"Odoo-Public\"\n",
            &[],
        );
        assert_eq!(err.key, "store.schema");
        assert!(err.message.contains("Odoo-Public"), "{err}");
        let err = file_error(
            "[store]\ndatabase = \"postgres://plane@db/odoo?sslmode=require\"\n",
            &[],
        );
        assert!(err.message.contains("sslmode"), "{err}");
        // The password file, as for every other secret.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "pw-from-file\n").unwrap();
        let (_d, path) = toml_file("[store]\ndatabase = \"postgres://plane@db/odoo\"\n");
        let c = Config::load(
            &Overrides {
                config_file: Some(path),
                ..Overrides::default()
            },
            &env_of(&[("PGPASSWORD_FILE", file.to_str().unwrap())]),
        )
        .unwrap();
        assert!(c.postgres.is_some());
        assert!(!format!("{c:?}").contains("pw-from-file"));
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let (_dir, path) = toml_file(
            "[plane]\nworkspace_slug = \"from-file\"\nbase_url = \"https://file.example\"\n\
             [server]\nlisten = \"127.0.0.1:7000\"\n[store]\ndatabase = \"file.db\"\n",
        );
        let overrides = Overrides {
            config_file: Some(path.clone()),
            ..Overrides::default()
        };
        let c = Config::load(
            &overrides,
            &env_of(&[
                ("PLANE_WORKSPACE_SLUG", "from-env"),
                ("PLANE_DATABASE_URL", "sqlite:///var/env.db"),
            ]),
        )
        .unwrap();
        assert_eq!(c.workspace_slug, "from-env");
        assert_eq!(c.base_url, "https://file.example");
        assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(c.database, PathBuf::from("/var/env.db"));
        let overrides = Overrides {
            config_file: Some(path),
            listen: Some("127.0.0.1:9000".parse().unwrap()),
            database: Some("flag.db".into()),
        };
        let c = Config::load(&overrides, &env_of(&[("PLANE_LISTEN", "127.0.0.1:8000")])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.database, PathBuf::from("flag.db"));
    }

    #[test]
    fn a_secret_in_the_file_is_refused_by_name_without_echoing_it() {
        for (text, key) in [
            ("[plane]\napi_key = \"plane_api_abc\"\n", "plane.api_key"),
            (
                "[plane]\nwebhook_secret = \"plane_wh_abc\"\n",
                "plane.webhook_secret",
            ),
            ("token = \"x\"\n", "token"),
        ] {
            let err = file_error(text, &[]);
            assert_eq!(err.key, key);
            assert!(
                err.message.contains("never read from the config file"),
                "{err}"
            );
            assert!(!err.to_string().contains("abc"), "{err}");
        }
    }

    #[test]
    fn invalid_values_name_their_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 5] = [
            ("", &[("PLANE_BASE_URL", "ftp://x")], "plane.base_url"),
            (
                "",
                &[("PLANE_ENABLED", "maybe")],
                "plane.enabled (PLANE_ENABLED)",
            ),
            ("[server]\nlisten = \"everywhere\"\n", &[], "server.listen"),
            ("[worker]\nmax_attempts = 0\n", &[], "worker.max_attempts"),
            ("[plane]\nworkspace = \"typo\"\n", &[], "--config"),
        ];
        for (text, env, key) in cases {
            let err = file_error(text, env);
            assert!(err.key.starts_with(key), "{key}: got {err}");
        }
        let err = Config::load(
            &Overrides {
                config_file: Some("/no/such/plane-server.toml".into()),
                ..Overrides::default()
            },
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(err.message.contains("cannot read"), "{err}");
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_named_file_and_rotation_lists_split() {
        let c = Config::load(
            &Overrides::default(),
            &env_of(&[("PLANE_WEBHOOK_SECRET", " old , new ,")]),
        )
        .unwrap();
        assert_eq!(
            c.webhook_secrets
                .iter()
                .map(|s| s.expose_secret())
                .collect::<Vec<_>>(),
            ["old", "new"]
        );
        assert!(
            c.is_enabled(),
            "a webhook secret turns the connector on by default"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "plane_api_from_file\n").unwrap();
        let c = Config::load(
            &Overrides::default(),
            &env_of(&[("PLANE_API_KEY_FILE", file.to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(c.api_key.unwrap().expose_secret(), "plane_api_from_file");
        let both = Config::load(
            &Overrides::default(),
            &env_of(&[("PLANE_API_KEY", "a"), ("PLANE_API_KEY_FILE", "b")]),
        );
        assert!(both.unwrap_err().message.contains("only one"));
        let explicit_off = Config::load(
            &Overrides::default(),
            &env_of(&[("PLANE_API_KEY", "a"), ("PLANE_ENABLED", "false")]),
        )
        .unwrap();
        assert!(!explicit_off.is_enabled());
    }

    #[test]
    fn a_toml_syntax_error_gives_the_line_but_not_its_text() {
        let err = file_error(
            "[plane]\nworkspace_slug = \"ok\"\nwebhook_secret = \"plane_wh_leaky\n",
            &[],
        );
        assert!(err.message.starts_with("line 3:"), "{err}");
        assert!(!err.to_string().contains("leaky"), "{err}");
    }

    #[test]
    fn an_empty_secret_file_is_an_error_not_a_missing_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "\n").unwrap();
        let err = Config::load(
            &Overrides::default(),
            &env_of(&[("PLANE_WEBHOOK_SECRET_FILE", file.to_str().unwrap())]),
        )
        .unwrap_err();
        assert_eq!(err.key, "PLANE_WEBHOOK_SECRET_FILE");
        assert!(err.message.contains("is empty"), "{err}");
    }

    #[test]
    fn mcp_http_is_off_by_default_and_on_needs_a_token() {
        let c = Config::load(&Overrides::default(), &env_of(&[])).unwrap();
        assert!(!c.mcp_http);
        assert!(c.require_mcp_token().is_ok(), "off: no token needed");
        let (_dir, path) = toml_file("[mcp]\nhttp = true\n");
        let overrides = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        let c = Config::load(&overrides, &env_of(&[])).unwrap();
        assert!(c.mcp_http);
        let err = c.require_mcp_token().unwrap_err();
        assert_eq!(err.key, "PLANE_MCP_TOKEN");
        assert!(err.message.contains("PLANE_MCP_TOKEN_FILE"), "{err}");
        let c = Config::load(&overrides, &env_of(&[("PLANE_MCP_TOKEN", " t0ken \n")])).unwrap();
        assert!(c.require_mcp_token().is_ok());
        assert_eq!(c.mcp_token.unwrap().expose_secret(), "t0ken");
        let both = Config::load(
            &overrides,
            &env_of(&[("PLANE_MCP_TOKEN", "a"), ("PLANE_MCP_TOKEN_FILE", "b")]),
        );
        assert_eq!(both.unwrap_err().key, "PLANE_MCP_TOKEN");
        for text in ["[mcp]\nhttp = \"yes\"\n", "[mcp]\nhtp = true\n"] {
            let err = file_error(text, &[]);
            assert!(err.key.starts_with("--config"), "{text}: {err}");
        }
        let err = file_error("[mcp]\ntoken = \"abc\"\n", &[]);
        assert_eq!(err.key, "mcp.token");
        assert!(!err.to_string().contains("abc"), "{err}");
    }

    #[test]
    fn a_huge_retention_is_refused() {
        let err = file_error("[store]\nretention = \"1000000000000000000000d\"\n", &[]);
        assert_eq!(err.key, "store.retention");
    }

    #[test]
    fn retention_and_purge_interval_are_humantime_ages_and_in_flight_is_bounded() {
        let (_dir, path) = toml_file(
            "[store]\nretention = \"36h\"\npurge_interval = \"1h 30m\"\n[server]\nmax_in_flight = 8\n",
        );
        let c = Config::load(
            &Overrides {
                config_file: Some(path),
                ..Overrides::default()
            },
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(c.retention, Duration::from_secs(36 * 3600));
        assert_eq!(c.purge_interval, Duration::from_secs(5400));
        assert_eq!(c.max_in_flight, 8);
        let defaults = Config::load(&Overrides::default(), &env_of(&[])).unwrap();
        assert_eq!(
            defaults.max_in_flight,
            crate::in_flight::DEFAULT_MAX_IN_FLIGHT
        );
        assert_eq!(defaults.purge_interval, Duration::from_secs(86_400));
        for (text, key) in [
            ("[store]\nretention = \"2w\"\n", "store.retention"),
            ("[store]\nretention = \"0s\"\n", "store.retention"),
            (
                "[store]\npurge_interval = \"soon\"\n",
                "store.purge_interval",
            ),
            ("[server]\nmax_in_flight = 0\n", "server.max_in_flight"),
        ] {
            let err = file_error(text, &[]);
            assert_eq!(err.key, key, "{text}: {err}");
        }
    }

    /// An obviously fake key, made at run time.
    fn fake_key() -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode([9u8; 32])
    }

    #[test]
    fn oauth_is_configured_from_the_file_and_the_environment_and_refused_beside_an_api_key() {
        let key = fake_key();
        let secret = format!("fake-client-secret-{}", std::process::id());
        let base = [
            ("PLANE_OAUTH_CLIENT_SECRET", secret.as_str()),
            ("PLANE_TOKEN_ENCRYPTION_KEY", key.as_str()),
        ];
        let (_dir, path) =
            toml_file("[plane.oauth]\nclient_id = \"c1\"\ninstallation_id = \"inst-1\"\n");
        let overrides = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        let c = Config::load(&overrides, &env_of(&base)).unwrap();
        let oauth = c.oauth.as_ref().unwrap();
        assert_eq!(oauth.owner, TokenOwner::Installation("inst-1".into()));
        assert!(oauth.pkce);
        assert!(c.is_enabled());
        assert!(
            !format!("{c:?}").contains(&secret),
            "Debug hides the secret"
        );
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains(&key), "Debug hides the key");
        assert!(
            !shown.contains(&format!("{:?}", [9u8; 32])),
            "Debug hides the key's bytes"
        );

        // An API key as well: an error naming both.
        let both = [base[0], base[1], ("PLANE_API_KEY", "plane_api_fake")];
        let err = Config::load(&overrides, &env_of(&both)).unwrap_err();
        assert!(
            err.key.contains("PLANE_API_KEY") && err.key.contains("plane.oauth.client_id"),
            "{err}"
        );

        for (text, env, key_at_fault) in [
            // No secret.
            (
                "[plane.oauth]\nclient_id = \"c1\"\nuser = \"ops\"\n",
                vec![("PLANE_TOKEN_ENCRYPTION_KEY", key.as_str())],
                "PLANE_OAUTH_CLIENT_SECRET",
            ),
            // Neither installation nor user; both.
            (
                "[plane.oauth]\nclient_id = \"c1\"\n",
                base.to_vec(),
                "plane.oauth",
            ),
            (
                "[plane.oauth]\nclient_id = \"c1\"\nuser = \"a\"\ninstallation_id = \"b\"\n",
                base.to_vec(),
                "plane.oauth.installation_id and plane.oauth.user",
            ),
            // A user token without a redirect URI.
            (
                "[plane.oauth]\nclient_id = \"c1\"\nuser = \"ops\"\n",
                base.to_vec(),
                "plane.oauth.redirect_uri",
            ),
            // No key, and a short one.
            (
                "[plane.oauth]\nclient_id = \"c1\"\ninstallation_id = \"i\"\n",
                vec![base[0]],
                "PLANE_TOKEN_ENCRYPTION_KEY",
            ),
            (
                "[plane.oauth]\nclient_id = \"c1\"\ninstallation_id = \"i\"\n",
                vec![base[0], ("PLANE_TOKEN_ENCRYPTION_KEY", "c2hvcnQ=")],
                "PLANE_TOKEN_ENCRYPTION_KEY",
            ),
            // The secret in the file.
            (
                "[plane.oauth]\nclient_id = \"c1\"\nclient_secret = \"x\"\n",
                base.to_vec(),
                "plane.oauth.client_secret",
            ),
            // Secrets in clear: plain http:// off loopback, for Plane or the callback.
            (
                "[plane]\nbase_url = \"http://plane.example.com\"\n[plane.oauth]\nclient_id = \"c1\"\ninstallation_id = \"i\"\n",
                base.to_vec(),
                "plane.base_url",
            ),
            (
                "[plane.oauth]\nclient_id = \"c1\"\nuser = \"ops\"\nredirect_uri = \"http://app.example.com/cb\"\n",
                base.to_vec(),
                "plane.oauth.redirect_uri",
            ),
        ] {
            let err = file_error(text, &env);
            assert_eq!(err.key, key_at_fault, "{text}: {err}");
            if key_at_fault == "PLANE_TOKEN_ENCRYPTION_KEY" {
                assert!(err.message.contains("openssl rand -base64 32"), "{err}");
            }
            if text.contains("http://") {
                assert!(err.message.contains("is not https://"), "{err}");
            }
        }
        // On loopback, plain http is fine (tests, a local callback).
        let (_dir, path) = toml_file(
            "[plane]\nbase_url = \"http://127.0.0.1:8000\"\n[plane.oauth]\nclient_id = \"c1\"\nuser = \"ops\"\nredirect_uri = \"http://localhost:9/cb\"\n",
        );
        let loopback = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        assert!(Config::load(&loopback, &env_of(&base)).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_group_or_others_may_read_or_write_is_reported_and_a_private_one_is_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-key");
        std::fs::write(&path, "plane_api_fake_content").unwrap();
        for (mode, shared) in [
            (0o644, true),
            (0o640, true),
            (0o602, true),
            (0o620, true),
            (0o600, false),
            (0o400, false),
            (0o711, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let text = shared_secret_file("PLANE_API_KEY_FILE", &path);
            assert_eq!(text.is_some(), shared, "{mode:o}: {text:?}");
            if let Some(text) = text {
                assert!(text.contains("PLANE_API_KEY_FILE"), "{text}");
                assert!(text.contains(&format!("mode {mode:04o}")), "{text}");
                assert!(
                    text.contains(&format!("chmod 600 {}", path.display())),
                    "{text}"
                );
                assert!(!text.contains("plane_api_fake_content"), "{text}");
            }
        }
        assert_eq!(
            shared_secret_file("PLANE_API_KEY_FILE", &dir.path().join("missing")),
            None
        );
    }
}
