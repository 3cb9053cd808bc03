//! Delivery bodies for the load examples, made from a delivery recorded from
//! a running Plane CE (`testdata/plane-ce/webhooks/…_0026_issue.body`, an
//! `issue.updated` of 1,593 bytes) with its byte layout kept: Python's `", "`
//! and `": "` separators, `\u` escapes, every field Plane sends. Each
//! delivery is about its own work item (`data.id`) and happened one
//! microsecond after the one before (`data.updated_at`), as a stream of real
//! changes is, so every body is distinct. With `same_time`, every delivery
//! keeps the recorded timestamp: the worst case for the store's dedupe index,
//! which is ordered by it. `2k` and `8k` grow the description to 2.2 KiB and 8 KiB
//! bodies, as an item with a real description does; `small` is the 413-byte
//! body of earlier runs, kept for comparison.

use clap::ValueEnum;

/// The recorded `issue.updated` delivery the bodies are made from.
const FIXTURE: &str =
    include_str!("../../../../testdata/plane-ce/webhooks/1795614172182_0026_issue.body");
/// The fixture's work item id: each delivery has its own.
const FIXTURE_ITEM_ID: &str = "49804e6a-23dc-4630-ba9f-f8f5742e3c7c";
/// The fixture's `data.updated_at`: each delivery comes a microsecond later.
const FIXTURE_UPDATED_AT: &str = r#""updated_at": "2026-11-25T13:42:52.086386Z""#;
/// The fixture's description, grown for the larger bodies.
const FIXTURE_DESCRIPTION: &str =
    r#""description_html": "<p>hello from peer</p>", "description_stripped": "hello from peer""#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BodyKind {
    /// The recorded delivery as it is (1,593 bytes).
    Fixture,
    /// The recorded delivery with a description, 2.2 KiB (2,253 bytes).
    #[value(name = "2k")]
    TwoK,
    /// The recorded delivery with a long description, 8 KiB (8,192 bytes).
    #[value(name = "8k")]
    EightK,
    /// The 447-byte body of earlier runs (413 bytes before it had a full item id).
    Small,
}

/// The body options both load examples take.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct BodyArgs {
    /// Which body to send.
    #[arg(long, value_enum, default_value_t = BodyKind::TwoK)]
    pub body: BodyKind,
    /// Every delivery keeps the recorded `updated_at` (the worst case for the
    /// dedupe index's order) instead of coming a microsecond after the last.
    #[arg(long)]
    pub same_time: bool,
}

impl BodyArgs {
    /// The body of delivery `n` of run `run`.
    pub fn make(self, run: uuid::Uuid, n: usize) -> Vec<u8> {
        body(self.body, run, n, self.same_time)
    }
}

/// The body of delivery `n` of run `run`.
pub fn body(kind: BodyKind, run: uuid::Uuid, n: usize, same_time: bool) -> Vec<u8> {
    // Same length as the fixture's id, so every body of a kind has one size.
    let item_id = uuid::Uuid::from_u128(run.as_u128() ^ n as u128).to_string();
    let target = match kind {
        BodyKind::Small => {
            return format!(
                r#"{{"event": "issue", "action": "updated", "webhook_id": "9b70f55f-3e40-44a4-a814-f08b4ff86e59", "workspace_id": "94a89513-b7f8-4d70-97aa-ecf2810be8ea", "data": {{"id": "{item_id}", "name": "load {run} #{n}", "priority": "high", "target_date": "2026-11-10", "external_source": "plane-bir", "external_id": "bir:1601-C:2026-10"}}, "activity": {{"field": "name", "new_value": "{n}", "old_value": null}}}}"#
            )
            .into_bytes();
        }
        BodyKind::Fixture => None,
        BodyKind::TwoK => Some(2253),
        BodyKind::EightK => Some(8192),
    };
    let mut text = FIXTURE.trim_end().replacen(FIXTURE_ITEM_ID, &item_id, 1);
    if !same_time {
        let micros = ((13 * 60 + 42) * 60 + 52) * 1_000_000 + 86_386 + n as u64;
        let (h, m, s, us) = (
            micros / 3_600_000_000,
            micros / 60_000_000 % 60,
            micros / 1_000_000 % 60,
            micros % 1_000_000,
        );
        let later = format!(r#""updated_at": "2026-11-25T{h:02}:{m:02}:{s:02}.{us:06}Z""#);
        text = text.replacen(FIXTURE_UPDATED_AT, &later, 1);
    }
    if let Some(target) = target {
        // The description appears twice (HTML and stripped): grow both by the
        // same amount of prose until the body has the target size.
        let prose = "Quarterly withholding on compensation for the Makati branch: \
                     reconcile payroll with 1601-C, attach the alphalist, file through eFPS. ";
        let wrapper = FIXTURE_DESCRIPTION.len() - 2 * "hello from peer".len();
        let rest = text.len() - FIXTURE_DESCRIPTION.len();
        let grow = (target - rest - wrapper) / 2;
        // ASCII prose: one char is one byte.
        let words: String = prose.chars().cycle().take(grow).collect();
        let grown =
            format!(r#""description_html": "<p>{words}</p>", "description_stripped": "{words}""#);
        text = text.replacen(FIXTURE_DESCRIPTION, &grown, 1);
        // Odd remainders: pad the stripped text by the bytes still missing.
        let short = target.saturating_sub(text.len());
        if short > 0 {
            let pad = ".".repeat(short);
            text = text.replacen(
                &format!(r#""description_stripped": "{words}""#),
                &format!(r#""description_stripped": "{words}{pad}""#),
                1,
            );
        }
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_their_sizes_parse_and_differ() {
        let run = uuid::Uuid::new_v4();
        for (kind, size) in [
            (BodyKind::Fixture, FIXTURE.trim_end().len()),
            (BodyKind::TwoK, 2253),
            (BodyKind::EightK, 8192),
        ] {
            let (a, b) = (body(kind, run, 1, false), body(kind, run, 2, false));
            assert_eq!((a.len(), b.len()), (size, size), "{kind:?}");
            assert_ne!(a, b, "{kind:?}: each delivery is distinct");
            let (x, y) = (body(kind, run, 1, true), body(kind, run, 2, true));
            assert_ne!(x, y, "{kind:?}: distinct with one timestamp too");
            let stamp = |b: &[u8]| {
                plane_webhook::EventHead::parse(b)
                    .expect("a body")
                    .updated_at
            };
            assert!(stamp(&a) < stamp(&b), "{kind:?}: later");
            assert_eq!(stamp(&x), stamp(&y), "{kind:?}: the recorded time");
            let envelope = plane_webhook::Envelope::parse(&a).expect("a body Plane would send");
            assert_eq!(envelope.event, "issue");
        }
    }
}
