//! The base URL join: property tests over bases with and without slashes,
//! prefixes, and arbitrary path segments.
#![allow(clippy::unwrap_used)]

use plane_core::{BaseUrl, Error};
use proptest::prelude::*;

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api.plane.so".to_owned()),
        Just("127.0.0.1:8080".to_owned()),
        "[a-z]{1,10}(\\.[a-z]{2,5}){1,2}(:[1-9][0-9]{1,3})?",
    ]
}

fn prefix() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-z0-9_-]{1,8}", 0..3)
}

proptest! {
    #[test]
    fn joined_urls_are_well_formed(
        https in any::<bool>(),
        host in host(),
        prefix in prefix(),
        trailing_slashes in 0usize..3,
        pasted_api_root in any::<bool>(),
        segments in prop::collection::vec("[^\\x00]{1,12}", 1..5),
    ) {
        prop_assume!(segments.iter().all(|s| s != "." && s != ".." && !s.chars().any(char::is_control)));
        let scheme = if https { "https" } else { "http" };
        let mut base = format!("{scheme}://{host}");
        for p in &prefix {
            base.push('/');
            base.push_str(p);
        }
        if pasted_api_root {
            base.push_str("/api/v1");
        }
        base.push_str(&"/".repeat(trailing_slashes));

        let url = BaseUrl::parse(&base).unwrap().endpoint(&segments).unwrap();
        let path = url.path();
        let expected_prefix: String = prefix.iter().map(|p| format!("/{p}")).collect::<String>() + "/api/v1/";
        prop_assert!(path.starts_with(&expected_prefix), "{path} does not start with {expected_prefix}");
        prop_assert!(path.ends_with('/'), "{path} has no trailing slash");
        prop_assert!(!path.contains("//"), "{path} has an empty segment");
        prop_assert!(url.query().is_none() && url.fragment().is_none(), "{url} grew a query or fragment");
        prop_assert_eq!(url.scheme(), scheme);
        // Every segment comes back exactly: '/', '?', '#', '%' and spaces are encoded.
        let got: Vec<String> = url
            .path_segments()
            .unwrap()
            .skip(prefix.len() + 2)
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        prop_assert_eq!(got, segments);
    }

    #[test]
    fn the_same_base_with_or_without_a_slash_gives_the_same_url(
        host in host(),
        segments in prop::collection::vec("[a-z0-9-]{1,12}", 1..5),
    ) {
        let a = BaseUrl::parse(&format!("https://{host}")).unwrap().endpoint(&segments).unwrap();
        let b = BaseUrl::parse(&format!("https://{host}/")).unwrap().endpoint(&segments).unwrap();
        let c = BaseUrl::parse(&format!("https://{host}/api/v1/")).unwrap().endpoint(&segments).unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
    }
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 && i + 3 <= bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn bad_bases_are_rejected_with_the_reason() {
    for (base, why) in [
        ("ftp://plane.example.com", "scheme"),
        ("plane.example.com", "relative URL"),
        ("https://user:pw@plane.example.com", "credentials"),
        ("https://plane.example.com/?x=1", "query"),
        ("https://plane.example.com/#top", "fragment"),
        ("", "relative URL"),
    ] {
        match BaseUrl::parse(base) {
            Err(Error::InvalidConfig {
                key: "base_url",
                message,
            }) => {
                assert!(
                    message.contains(why),
                    "{base:?}: {message:?} does not mention {why:?}"
                );
            }
            other => panic!("{base:?} was accepted: {other:?}"),
        }
    }
    for leaky in [
        "https://user:hunter2@plane.example.com",
        "https://plane.example.com/?api_key=hunter2",
        "ftp://me:hunter2@x/",
    ] {
        let err = BaseUrl::parse(leaky).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn dot_and_empty_segments_are_refused() {
    let base = BaseUrl::parse("https://api.plane.so").unwrap();
    for bad in [
        &["workspaces", ""][..],
        &["workspaces", ".."],
        &["."],
        &["a\tb"],
        &["\n"],
    ] {
        assert!(
            matches!(base.endpoint(bad), Err(Error::InvalidArgument { .. })),
            "{bad:?}"
        );
    }
}
