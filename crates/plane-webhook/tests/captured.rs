//! Deliveries recorded from a real Plane CE (testdata/plane-ce/webhooks) verify
//! and parse.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use http::HeaderMap;
use plane_webhook::{
    Action, DeliveryHeaders, Envelope, EventKind, Payload, SignatureError, Verifier,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/plane-ce/webhooks")
}

/// The throwaway secret of the test instance, read from the fixtures' README so
/// no secret-shaped literal sits in the source.
fn recorded_secret() -> String {
    let readme = std::fs::read_to_string(dir().join("../README.md")).unwrap();
    readme
        .split_whitespace()
        .find(|w| w.starts_with("plane_wh_"))
        .unwrap()
        .to_owned()
}

fn deliveries() -> Vec<(String, Vec<u8>, HeaderMap)> {
    let mut names: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "body"))
        .collect();
    names.sort();
    assert!(names.len() >= 8);
    names
        .into_iter()
        .map(|body_path| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(body_path.with_extension("json")).unwrap())
                    .unwrap();
            let mut headers = HeaderMap::new();
            for pair in meta["headers"].as_array().unwrap() {
                let name: http::HeaderName = pair[0]
                    .as_str()
                    .unwrap()
                    .to_ascii_lowercase()
                    .parse()
                    .unwrap();
                headers.append(name, pair[1].as_str().unwrap().parse().unwrap());
            }
            let name = body_path
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&body_path).unwrap(), headers)
        })
        .collect()
}

#[test]
fn every_recorded_delivery_verifies_parses_and_matches_its_headers() {
    let secret = recorded_secret();
    let rotated = Verifier::new([format!("plane_wh_{}", "f".repeat(32)), secret.clone()]).unwrap();
    for (name, body, headers) in deliveries() {
        let parsed = DeliveryHeaders::from_headers(&headers).unwrap();
        let verified = rotated.verify(&body, parsed.signature.as_deref()).unwrap();
        assert_eq!(verified.secret_index, 1, "{name}");
        let envelope = Envelope::parse(&body).unwrap();
        assert_eq!(envelope.event, parsed.event, "{name}");
        // What the receiver reads is what the worker reads, timestamp included.
        let head = plane_webhook::EventHead::parse(&body).unwrap();
        assert_eq!(head, envelope.head(), "{name}");
        assert!(head.updated_at.is_some(), "{name}: no data.updated_at");
        assert!(name.ends_with(&parsed.event), "{name} vs {}", parsed.event);
        assert!(envelope.workspace_id.is_some());
        match (&envelope.kind, &envelope.payload) {
            (EventKind::WorkItem, Payload::WorkItem(item)) => {
                assert!(
                    item.state_group().is_some(),
                    "{name}: state is expanded in webhooks"
                );
                if envelope.action == Action::Updated {
                    assert!(
                        envelope.activity.as_ref().unwrap().field.is_some(),
                        "{name}"
                    );
                }
            }
            (EventKind::Project, Payload::Project(p)) => assert!(p.identifier.is_some()),
            (EventKind::Comment, Payload::Comment(c)) => assert!(c.comment_html.is_some()),
            other => panic!("{name}: unexpected {other:?}"),
        }
    }
}

#[test]
fn the_recorded_external_id_and_completion_are_readable() {
    let (_, body, _) = deliveries()
        .into_iter()
        .find(|(n, _, _)| n.contains("0002_issue"))
        .unwrap();
    let Payload::WorkItem(item) = Envelope::parse(&body).unwrap().payload else {
        panic!()
    };
    assert_eq!(item.external_source.as_deref(), Some("plane-bir"));
    assert!(item.external_id.unwrap().contains("1601-C"));
    assert!(item.name.unwrap().contains('·'), "\\u00b7 escapes decode");
}

#[test]
fn a_recorded_body_fails_under_another_secret_or_when_altered() {
    let verifier = Verifier::new([recorded_secret()]).unwrap();
    for (name, mut body, headers) in deliveries() {
        let signature = DeliveryHeaders::from_headers(&headers)
            .unwrap()
            .signature
            .unwrap();
        let other = Verifier::new([format!("{}x", recorded_secret())]).unwrap();
        assert_eq!(
            other.verify(&body, Some(&signature)),
            Err(SignatureError::Mismatch),
            "{name}"
        );
        // Re-serialising the parsed JSON changes the bytes, so verification must use the raw body.
        let reserialised =
            serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).unwrap())
                .unwrap();
        assert!(
            verifier.verify(&reserialised, Some(&signature)).is_err(),
            "{name}"
        );
        body.push(b' ');
        assert_eq!(
            verifier.verify(&body, Some(&signature)),
            Err(SignatureError::Mismatch),
            "{name}"
        );
    }
}

#[test]
fn the_work_item_fields_a_domain_handler_compares_are_typed() {
    let read = |name: &str| {
        let body = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../testdata/plane-ce/webhooks")
                .join(name),
        )
        .unwrap();
        plane_webhook::Envelope::parse(&body).unwrap()
    };
    let labelled = read("1795615130688_0005_issue.body");
    let item = labelled.work_item().unwrap();
    assert_eq!(item.description_html.as_deref(), Some("<p></p>"));
    assert_eq!(item.label_names().collect::<Vec<_>>(), ["form:1601-C"]);
    assert_eq!(
        item.updated_by,
        Some("39b1ea76-38fc-41d6-bf9d-004cb8cca054".parse().unwrap())
    );
    assert_eq!(
        item.updated_at.as_deref(),
        Some("2026-11-25T13:58:50.645287Z")
    );
    assert!(item.state_group().is_some());
    for typed in ["description_html", "labels", "updated_by"] {
        assert!(!item.extra.contains_key(typed), "{typed} left in extra");
    }
    assert!(!item.extra.is_empty(), "unknown fields are kept");
    // A create has no updated_by yet.
    let created = read("1795615127062_0002_issue.body");
    assert_eq!(created.work_item().unwrap().updated_by, None);
}

/// `Envelope::parse` leaves the members it does not type to be decoded on first
/// use; what it then holds is what serde's own (eager) decoding of `data` gives,
/// for every recorded delivery, and it serializes back to the same object.
#[test]
fn the_untyped_members_decoded_on_use_are_those_serde_decodes_at_once() {
    use plane_webhook::{CommentData, CycleData, ModuleData, ProjectData, WorkItemData};
    fn same<T>(data: &serde_json::Value, lazy: &T, name: &str)
    where
        T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        let eager: T = serde_json::from_value(data.clone()).unwrap();
        assert_eq!(lazy, &eager, "{name}");
        assert_eq!(&serde_json::to_value(lazy).unwrap(), data, "{name}");
    }
    let mut typed = 0;
    for (name, body, _) in deliveries() {
        let envelope = Envelope::parse(&body).unwrap();
        let data = &serde_json::from_slice::<serde_json::Value>(&body).unwrap()["data"];
        typed += 1;
        match &envelope.payload {
            Payload::WorkItem(item) => {
                assert!(!item.extra.is_empty(), "{name}");
                same::<WorkItemData>(data, item, &name)
            }
            Payload::Project(project) => same::<ProjectData>(data, project, &name),
            Payload::Cycle(cycle) => same::<CycleData>(data, cycle, &name),
            Payload::Module(module) => same::<ModuleData>(data, module, &name),
            Payload::Comment(comment) => same::<CommentData>(data, comment, &name),
            _ => typed -= 1,
        }
    }
    assert!(
        typed >= 5,
        "only {typed} recorded deliveries have typed data"
    );
}
