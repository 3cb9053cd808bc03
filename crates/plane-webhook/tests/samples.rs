//! One sample body per event and action (testdata/webhook-samples) parses into
//! the expected kind, action and payload.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use plane_webhook::{Action, Envelope, EventKind, Payload};

fn sample(name: &str) -> Envelope {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../testdata/webhook-samples/{name}.json"));
    Envelope::parse(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_sample_parses_to_its_kind_action_and_payload() {
    use Action::*;
    let cases: &[(&str, EventKind, Action, &str)] = &[
        ("issue_created", EventKind::WorkItem, Created, "work item"),
        (
            "issue_updated_state",
            EventKind::WorkItem,
            Updated,
            "work item",
        ),
        (
            "issue_updated_legacy_update",
            EventKind::WorkItem,
            Updated,
            "work item",
        ),
        (
            "issue_created_legacy_create",
            EventKind::WorkItem,
            Created,
            "work item",
        ),
        ("issue_deleted_legacy", EventKind::WorkItem, Deleted, "raw"),
        ("project_created", EventKind::Project, Created, "project"),
        ("project_updated", EventKind::Project, Updated, "project"),
        ("project_deleted", EventKind::Project, Deleted, "raw"),
        ("cycle_created", EventKind::Cycle, Created, "cycle"),
        ("cycle_updated", EventKind::Cycle, Updated, "cycle"),
        ("module_created", EventKind::Module, Created, "module"),
        ("module_updated", EventKind::Module, Updated, "module"),
        (
            "issue_comment_created",
            EventKind::Comment,
            Created,
            "comment",
        ),
        (
            "issue_comment_updated",
            EventKind::Comment,
            Updated,
            "comment",
        ),
        (
            "v2_workitem_updated",
            EventKind::WorkItem,
            Updated,
            "work item",
        ),
        ("v2_workitem_deleted", EventKind::WorkItem, Deleted, "raw"),
        (
            "unknown_event_page_created",
            EventKind::Other("page".into()),
            Created,
            "raw",
        ),
    ];
    let files = std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/webhook-samples"),
    )
    .unwrap()
    .filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "json")
    })
    .count();
    assert_eq!(
        files,
        cases.len(),
        "a sample without a case, or a case without a sample"
    );
    for (name, kind, action, payload) in cases {
        let envelope = sample(name);
        assert_eq!(&envelope.kind, kind, "{name}");
        assert_eq!(&envelope.action, action, "{name}");
        let got = match &envelope.payload {
            Payload::WorkItem(_) => "work item",
            Payload::Project(_) => "project",
            Payload::Cycle(_) => "cycle",
            Payload::Module(_) => "module",
            Payload::Comment(_) => "comment",
            Payload::Raw(_) => "raw",
            _ => "other",
        };
        assert_eq!(got, *payload, "{name}");
        if *name != "v2_workitem_deleted" {
            assert!(envelope.payload.id().is_some(), "{name}: no object id");
        }
    }
}

#[test]
fn v2_fields_are_kept_and_v1_has_none() {
    let v2 = sample("v2_workitem_updated");
    assert_eq!(v2.version.as_deref(), Some("v2"));
    assert_eq!(
        v2.event_id.as_deref(),
        Some("0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a")
    );
    assert!(v2.delivery_id.is_some() && v2.previous_attributes.is_some());
    let v1 = sample("issue_updated_state");
    assert!(v1.version.is_none() && v1.event_id.is_none());
    let activity = v1.activity.unwrap();
    assert_eq!(activity.field.as_deref(), Some("state"));
    assert!(activity.actor.unwrap().display_name.is_some());
}

#[test]
fn unknown_fields_are_kept() {
    let Payload::Cycle(cycle) = sample("cycle_created").payload else {
        panic!()
    };
    assert_eq!(cycle.extra["timezone"], "Asia/Manila");
    let Payload::Module(module) = sample("module_updated").payload else {
        panic!()
    };
    assert_eq!(module.status.as_deref(), Some("in-progress"));
}

#[test]
fn bodies_that_are_not_envelopes_are_refused_with_a_reason() {
    for (body, needle) in [
        (&b""[..], "empty"),
        (b"   ", "empty"),
        (b"[1,2]", "not a Plane webhook envelope"),
        (b"{\"action\": \"created\"}", "missing field `event`"),
        (b"{\"event\": \"issue\"}", "has no action"),
        (b"\xff\xfe", "not a Plane webhook envelope"),
    ] {
        let err = Envelope::parse(body).unwrap_err().to_string();
        assert!(err.contains(needle), "{body:?}: {err}");
    }
}

#[test]
fn odd_but_signed_bodies_are_kept_rather_than_refused() {
    // Plane's serialisers have sent "None" for missing values; a type that does
    // not fit keeps the data as raw JSON instead of losing the delivery.
    let body = br#"{"event": "issue", "action": "updated", "webhook_id": "None", "workspace_id": 7,
        "data": {"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "sequence_id": "12", "project": {"id": "x"}},
        "activity": {"field": "name", "actor": {"id": "not-a-uuid"}}}"#;
    let envelope = Envelope::parse(body).unwrap();
    assert_eq!((envelope.webhook_id, envelope.workspace_id), (None, None));
    assert!(matches!(envelope.payload, Payload::Raw(_)));
    assert_eq!(
        envelope.payload.id().unwrap().to_string(),
        "10726b93-2516-4e16-91f4-d6804b6c9979"
    );
    assert!(envelope.activity.is_none());
}

#[test]
fn a_delete_keeps_its_data_raw_and_unknown_members_alone_are_still_typed() {
    let id = "10726b93-2516-4e16-91f4-d6804b6c9979";
    let parse = |data: &str| {
        Envelope::parse(
            format!(r#"{{"event": "issue", "action": "deleted", "data": {data}}}"#).as_bytes(),
        )
        .unwrap()
        .payload
    };
    // v1 deletes send the id alone, v2 deletes an empty object.
    for data in [format!(r#"{{"id": "{id}"}}"#), "{}".to_owned()] {
        assert!(matches!(parse(&data), Payload::Raw(_)), "{data}");
    }
    // An array is no object, even one a struct could be read from.
    let array = Envelope::parse(
        format!(
            r#"{{"event": "project", "action": "updated", "data": ["{id}", "n", null, null]}}"#
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(matches!(array.payload, Payload::Raw(_)));
    // An id with only members the type does not name is still the typed object.
    let Payload::WorkItem(item) = parse(&format!(r#"{{"id": "{id}", "is_draft": true}}"#)) else {
        panic!("not typed")
    };
    assert_eq!(
        (item.id.to_string(), item.name.as_ref()),
        (id.to_owned(), None)
    );
    assert_eq!(item.extra["is_draft"], true);
}

#[test]
fn a_placeholder_event_id_is_not_an_id() {
    for placeholder in ["\"None\"", "\"\"", "null", "\"null\""] {
        let body = format!(
            r#"{{"version": "v2", "event": "workitem.updated", "event_id": {placeholder}, "data": {{"id": "10726b93-2516-4e16-91f4-d6804b6c9979", "name": "x"}}}}"#
        );
        let envelope = Envelope::parse(body.as_bytes()).unwrap();
        assert_eq!(envelope.event_id, None, "{placeholder}");
        let key = plane_webhook::NewDelivery::new(
            uuid::Uuid::new_v4(),
            &envelope.head(),
            body.into_bytes(),
        )
        .event_key;
        assert!(key.starts_with("sha256:"), "{placeholder}: {key}");
    }
}
