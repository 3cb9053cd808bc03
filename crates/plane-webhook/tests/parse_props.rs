//! A proptest harness for the parsers that see untrusted input (headers and
//! envelopes): whatever arrives, they answer Ok or Err and never panic. Run a
//! longer bounded search with
//! `PARSE_CASES=200000 cargo test --release -p plane-webhook --test parse_props`.
#![allow(clippy::unwrap_used)]

use http::{HeaderMap, HeaderName, HeaderValue};
use plane_webhook::{DeliveryHeaders, Envelope, EventHead, Verifier};
use proptest::prelude::*;
use serde_json::{Value, json};

/// JSON shaped like envelopes, with every field liable to be missing or odd.
fn envelope_like() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(json!("10726b93-2516-4e16-91f4-d6804b6c9979")),
    ];
    let value = scalar.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let event = prop_oneof![
        Just("issue"),
        Just("project"),
        Just("cycle"),
        Just("module"),
        Just("issue_comment"),
        Just("workitem.updated"),
        Just("workitem.comment.created"),
        Just("page"),
        Just(""),
    ];
    let action = prop_oneof![
        Just(Some("created")),
        Just(Some("update")),
        Just(Some("WEIRD_VERB")),
        Just(None)
    ];
    (
        event,
        action,
        value.clone(),
        value.clone(),
        value,
        any::<bool>(),
    )
        .prop_map(|(event, action, data, activity, extra, v2)| {
            let mut e = json!({"event": event, "data": data, "activity": activity, "extra": extra});
            if let Some(a) = action {
                e["action"] = json!(a);
            }
            if v2 {
                e["version"] = json!("v2");
                e["event_id"] = extra_id(&e);
            }
            e
        })
}

/// 2,000 per property in `cargo test`; `PARSE_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PARSE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn extra_id(e: &Value) -> Value {
    e.get("extra").cloned().unwrap_or(Value::Null)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic_the_envelope_parser(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::parse(&body);
    }

    #[test]
    fn the_head_accepts_exactly_what_the_envelope_parser_accepts(body in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert_eq!(EventHead::parse(&body).ok(), Envelope::parse(&body).ok().map(|e| e.head()));
    }

    #[test]
    fn the_receivers_head_is_the_workers_head(
        value in envelope_like(),
        updated_at in prop_oneof![Just(None), Just(Some(json!("2026-11-25T13:42:52.086386Z"))), Just(Some(json!(7)))],
    ) {
        let mut value = value;
        if let (Some(stamp), Some(data)) = (updated_at, value.get_mut("data").and_then(Value::as_object_mut)) {
            data.insert("updated_at".into(), stamp);
        }
        let body = serde_json::to_vec(&value).unwrap();
        prop_assert_eq!(EventHead::parse(&body).ok(), Envelope::parse(&body).ok().map(|e| e.head()));
    }

    #[test]
    fn envelope_shaped_json_never_panics(value in envelope_like()) {
        let body = serde_json::to_vec(&value).unwrap();
        if let Ok(envelope) = Envelope::parse(&body) {
            prop_assert_eq!(envelope.event.as_str(), value["event"].as_str().unwrap());
        }
    }

    #[test]
    fn arbitrary_header_values_never_panic(
        delivery in prop::collection::vec(any::<u8>(), 0..64),
        event in prop::collection::vec(any::<u8>(), 0..32),
        signature in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [("x-plane-delivery", delivery), ("x-plane-event", event), ("x-plane-signature", signature.clone())] {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        let parsed = DeliveryHeaders::from_headers(&headers);
        if let Ok(parsed) = parsed {
            let verifier = Verifier::new(["plane_wh_proptest"]).unwrap();
            let verdict = verifier.verify(b"{}", parsed.signature.as_deref());
            prop_assert!(verdict.is_err(), "a random signature verified");
        }
    }
}
