//! `plane-fake`: run the fake Plane CE API as a standalone server.
//!
//! ```text
//! plane-fake --listen 127.0.0.1:8080 --rate-limit 60/60s --seed-work-items 250
//! ```
//!
//! Prints `base_url:`, `workspace_slug:`, `project_id:` and `api_key:` lines, then serves
//! until Ctrl-C.

use anyhow::Context as _;
use clap::Parser;
use plane_fake::FakePlane;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// A fake Plane CE REST API for tests, demos and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "plane-fake", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", env = "PLANE_FAKE_LISTEN")]
    listen: SocketAddr,

    /// The valid API key (default: a random plane_api_<32 hex>).
    #[arg(long, env = "PLANE_FAKE_API_KEY")]
    api_key: Option<String>,

    /// Requests per window per key: N/Ds, N/Dms or none.
    #[arg(long, default_value = "60/60s", value_parser = parse_rate_limit_arg)]
    rate_limit: RateLimitArg,

    /// Work items to create in the default project.
    #[arg(long, default_value_t = 0)]
    seed_work_items: usize,

    /// The workspace slug.
    #[arg(long, default_value = "insightpulseai")]
    workspace_slug: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RateLimitArg(Option<(u32, Duration)>);

fn parse_rate_limit_arg(s: &str) -> Result<RateLimitArg, String> {
    plane_fake::cli::parse_rate_limit(s).map(RateLimitArg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut builder = FakePlane::builder()
        .workspace_slug(args.workspace_slug)
        .seed_work_items(args.seed_work_items);
    if let Some(key) = args.api_key {
        builder = builder.api_key(key);
    }
    builder = match args.rate_limit.0 {
        Some((n, window)) => builder.rate_limit(n, window),
        None => builder.no_rate_limit(),
    };
    let fake = builder
        .start_on(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "base_url: {}", fake.base_url())?;
    writeln!(out, "workspace_slug: {}", fake.workspace_slug())?;
    writeln!(out, "project_id: {}", fake.project_id())?;
    writeln!(out, "api_key: {}", fake.api_key())?;
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    fake.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let a = Args::try_parse_from(["plane-fake"]).expect("defaults parse");
        assert_eq!(a.listen, "127.0.0.1:0".parse::<SocketAddr>().expect("addr"));
        assert_eq!(
            a.rate_limit,
            RateLimitArg(Some((60, Duration::from_secs(60))))
        );
        assert_eq!(a.seed_work_items, 0);
        assert_eq!(a.workspace_slug, "insightpulseai");
        assert!(a.api_key.is_none());
    }

    #[test]
    fn all_flags() {
        let a = Args::try_parse_from([
            "plane-fake",
            "--listen",
            "127.0.0.1:8089",
            "--api-key",
            "k",
            "--rate-limit",
            "5/500ms",
            "--seed-work-items",
            "12",
            "--workspace-slug",
            "acme",
        ])
        .expect("flags parse");
        assert_eq!(a.listen.port(), 8089);
        assert_eq!(a.api_key.as_deref(), Some("k"));
        assert_eq!(
            a.rate_limit,
            RateLimitArg(Some((5, Duration::from_millis(500))))
        );
        assert_eq!(a.seed_work_items, 12);
        assert_eq!(a.workspace_slug, "acme");
        let none = Args::try_parse_from(["plane-fake", "--rate-limit", "none"]).expect("none");
        assert_eq!(none.rate_limit, RateLimitArg(None));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = Args::try_parse_from(["plane-fake", "--rate-limit", "lots"])
            .expect_err("bad rate limit")
            .to_string();
        assert!(err.contains("--rate-limit"), "{err}");
        assert!(err.contains("N/Ds"), "{err}");
        let err = Args::try_parse_from(["plane-fake", "--listen", "nowhere"])
            .expect_err("bad listen")
            .to_string();
        assert!(err.contains("--listen"), "{err}");
        let err = Args::try_parse_from(["plane-fake", "--seed-work-items", "many"])
            .expect_err("bad seed")
            .to_string();
        assert!(err.contains("--seed-work-items"), "{err}");
    }
}
