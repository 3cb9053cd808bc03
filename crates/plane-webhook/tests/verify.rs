//! Signature checks: well-formed, malformed, missing, rotation, and properties.
#![allow(clippy::unwrap_used)]

use plane_webhook::{SignatureError, Verifier};
use proptest::prelude::*;

fn secret(n: u8) -> String {
    format!("plane_wh_{}", format!("{n:x}").repeat(32))
}

#[test]
fn accepted_forms_of_a_good_signature() {
    let verifier = Verifier::new([secret(1)]).unwrap();
    let body = b"{\"event\": \"issue\"}";
    let sig = Verifier::sign(&secret(1), body);
    assert_eq!(sig.len(), 64);
    assert!(
        sig.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    );
    for form in [
        sig.clone(),
        sig.to_uppercase(),
        format!("sha256={sig}"),
        format!("SHA256={sig}"),
        format!(" {sig} "),
    ] {
        assert!(verifier.verify(body, Some(&form)).is_ok(), "{form}");
    }
}

#[test]
fn each_malformation_has_its_own_reason() {
    let verifier = Verifier::new([secret(1)]).unwrap();
    let body = b"{}";
    let sig = Verifier::sign(&secret(1), body);
    let cases = [
        (None, SignatureError::Missing),
        (Some(String::new()), SignatureError::Missing),
        (Some("sha256=".into()), SignatureError::Missing),
        (Some("zz".repeat(32)), SignatureError::NotHex),
        (Some(format!("{}é", &sig[..63])), SignatureError::NotHex),
        (
            Some(sig[..62].to_owned()),
            SignatureError::WrongLength { got: 62 },
        ),
        (
            Some(format!("{sig}00")),
            SignatureError::WrongLength { got: 66 },
        ),
        (
            Some(Verifier::sign(&secret(2), body)),
            SignatureError::Mismatch,
        ),
    ];
    for (header, expected) in cases {
        let got = verifier.verify(body, header.as_deref());
        assert_eq!(got, Err(expected.clone()), "{header:?}");
        let message = expected.to_string();
        assert!(
            !message.contains(&secret(1)) && !message.contains(&sig),
            "{message}"
        );
    }
}

#[test]
fn an_empty_body_is_signed_and_checked_like_any_other() {
    let verifier = Verifier::new([secret(3)]).unwrap();
    let sig = Verifier::sign(&secret(3), b"");
    assert!(verifier.verify(b"", Some(&sig)).is_ok());
    assert_eq!(
        verifier.verify(b"", Some(&Verifier::sign(&secret(4), b""))),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn rotation_reports_which_secret_matched_and_blank_entries_are_ignored() {
    let verifier = Verifier::from_list(&format!("{}, ,{}", secret(1), secret(2))).unwrap();
    assert_eq!(verifier.len(), 2);
    let body = b"rotating";
    assert_eq!(
        verifier
            .verify(body, Some(&Verifier::sign(&secret(1), body)))
            .unwrap()
            .secret_index,
        0
    );
    assert_eq!(
        verifier
            .verify(body, Some(&Verifier::sign(&secret(2), body)))
            .unwrap()
            .secret_index,
        1
    );
    assert!(Verifier::from_list(" , ").is_err());
    assert!(
        Verifier::new(Vec::<String>::new())
            .unwrap_err()
            .to_string()
            .contains("PLANE_WEBHOOK_SECRET")
    );
}

#[test]
fn debug_output_hides_the_secrets() {
    let verifier = Verifier::new([secret(7)]).unwrap();
    let text = format!("{verifier:?}");
    assert!(!text.contains("777777"), "{text}");
}

proptest! {
    #[test]
    fn any_single_byte_change_of_the_body_fails(body in prop::collection::vec(any::<u8>(), 0..512), at in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let verifier = Verifier::new([secret(5)]).unwrap();
        let sig = Verifier::sign(&secret(5), &body);
        prop_assert!(verifier.verify(&body, Some(&sig)).is_ok());
        if !body.is_empty() {
            let mut changed = body.clone();
            let i = at.index(body.len());
            changed[i] ^= xor;
            prop_assert_eq!(verifier.verify(&changed, Some(&sig)), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn any_single_character_change_of_the_signature_fails(body in prop::collection::vec(any::<u8>(), 0..256), at in 0usize..64, replacement in "[0-9a-f]") {
        let verifier = Verifier::new([secret(6)]).unwrap();
        let sig = Verifier::sign(&secret(6), &body);
        let mut chars: Vec<char> = sig.chars().collect();
        let new = replacement.chars().next().unwrap();
        prop_assume!(chars[at] != new);
        chars[at] = new;
        let changed: String = chars.into_iter().collect();
        prop_assert_eq!(verifier.verify(&body, Some(&changed)), Err(SignatureError::Mismatch));
    }
}
