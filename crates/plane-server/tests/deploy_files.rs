//! The files in deploy/ against the server they watch: the Grafana dashboard is valid
//! JSON, and every `plane_*` metric the alerting rules, their promtool tests and the
//! dashboard name is in a real scrape of `/metrics` (a server started here with a Plane
//! client, so the `plane_api_*` families are there too). promtool itself runs in
//! scripts/check-alerts.sh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plane_fake::FakePlane;
use plane_server::config::{Config, Overrides};
use plane_webhook::SystemClock;
use tokio::net::TcpListener;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const RULES: &str = "deploy/prometheus/plane-connector.rules.yml";
const TESTS: &str = "deploy/prometheus/plane-connector.tests.yml";
const DASHBOARD: &str = "deploy/grafana/plane-connector.json";

/// The series names a Prometheus scrape of `text` produces, from its `# TYPE` lines (so
/// a family with no sample yet counts too): a counter `X` is stored as `X_total`, a
/// histogram as `X_bucket`, `X_sum` and `X_count`, anything else under its own name.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every `plane_...` metric name in `text`: a word starting `plane_` (label names and the
/// job `plane-connector` never do).
fn plane_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while let Some(at) = text[i..].find("plane_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if start == 0 || !word(bytes[start - 1]) {
            names.insert(text[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    names
}

/// Every `expr` of the dashboard's panels (the strings Grafana sends to Prometheus).
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                dashboard_exprs(v, out);
            }
        }
        _ => {}
    }
}

/// A real scrape: `start` as `serve` runs it, with an API key (plane-fake), after one
/// `/readyz` so the Plane families have samples.
async fn scrape() -> String {
    let fake = FakePlane::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("PLANE_WEBHOOK_SECRET", "plane_wh_deploy_files".to_owned()),
        ("PLANE_API_KEY", fake.api_key()),
        ("PLANE_BASE_URL", fake.base_url()),
    ];
    let config = Config::load(
        &Overrides {
            database: Some(dir.path().join("plane.db")),
            ..Overrides::default()
        },
        &move |name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()),
    )
    .unwrap();
    let store = plane_server::open_store(&config, Arc::new(SystemClock)).unwrap();
    let handlers = plane_server::handlers(&store).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = plane_server::start(&config, store, handlers, listener, std::future::pending())
        .await
        .unwrap();
    let base = format!("http://{}", running.addr);
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    running.shutdown().await.unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_in_a_real_scrape() {
    let served = series_names(&scrape().await);
    // The families the alerts rest on, so the check below cannot pass on an empty scrape.
    for name in [
        "plane_inbox_backlog_items",
        "plane_inbox_processed_total",
        "plane_connector_plane_check",
        "plane_bir_overdue_deadlines",
        "plane_bir_next_unfiled_deadline_seconds",
        "plane_bir_last_sync_timestamp_seconds",
        "plane_api_rate_limit_wait_seconds_total",
        "plane_inbox_processing_seconds_bucket",
    ] {
        assert!(served.contains(name), "{name} not served: {served:?}");
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut missing = Vec::new();
    for (file, names) in [
        (RULES, plane_names(&read(RULES))),
        (TESTS, plane_names(&read(TESTS))),
        (DASHBOARD, plane_names(&exprs.join("\n"))),
    ] {
        assert!(!names.is_empty(), "{file} names no plane_ metric");
        for name in names.difference(&served) {
            // `plane_bir_*` in prose names a family prefix: some served name must have it.
            let prefix_served = name.ends_with('_') && served.iter().any(|s| s.starts_with(name));
            if !prefix_served {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in plane-server's /metrics:\n  {}\nserved: {served:?}",
        missing.join("\n  ")
    );
}

#[test]
fn the_name_checks_see_what_prometheus_would_store() {
    let text = "# TYPE plane_a counter\n# TYPE plane_b_seconds histogram\n# TYPE plane_c gauge\n";
    let served = series_names(text);
    assert_eq!(
        served.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "plane_a_total",
            "plane_b_seconds_bucket",
            "plane_b_seconds_count",
            "plane_b_seconds_sum",
            "plane_c"
        ]
    );
    // A counter under its family name is not what Prometheus stores.
    let used = plane_names(r#"rate(plane_a[5m]) + up{job="plane-connector"} + xplane_d"#);
    assert_eq!(
        used.iter().map(String::as_str).collect::<Vec<_>>(),
        ["plane_a"]
    );
    assert_eq!(
        used.difference(&served).collect::<Vec<_>>(),
        [&"plane_a".to_owned()]
    );
}
