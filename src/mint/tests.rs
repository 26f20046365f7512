use super::issued::quote_issuer;
use super::*;

#[test]
fn issuer_words_are_quoted_without_what_was_sent() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.claims.signature";
    assert_eq!(
        quote_issuer(&format!("bad token {jwt} here"), &[jwt]),
        "bad token [redacted] here"
    );
    // A secret cut off by the length limit is still redacted.
    let long = format!("{} {}", "x".repeat(180), jwt);
    let quoted = quote_issuer(&long, &[jwt]);
    assert!(quoted.ends_with("[redacted]"), "{quoted}");
    assert!(!quoted.contains("eyJhbGciOiJS"), "{quoted}");
    assert_eq!(quote_issuer("line\nbreak\u{7}", &[]), "line break");
    assert_eq!(quote_issuer(&"é".repeat(300), &[]).chars().count(), 200);
    // Redaction that lengthens the text does not break the bound (found by
    // the `issuer` fuzz target: 8-byte secrets of 2 characters each).
    let secret = "\u{10000}\u{10001}";
    let quoted = quote_issuer(&secret.repeat(100), &[secret]);
    assert_eq!(quoted.chars().count(), 200, "{quoted}");
    assert!(quoted.starts_with("[redacted][redacted]") && quoted.ends_with('…'));
    let quoted = quote_issuer(&"12345678 ".repeat(30), &["12345678"]);
    assert!(quoted.chars().count() <= 200, "{quoted}");
}

#[test]
fn a_token_is_minted_again_a_tenth_of_its_life_before_expiry_at_most_five_minutes() {
    let source = SecretSource::Env { name: "X".into() };
    let mint = |life: u64| {
        let expires_at = SystemTime::now() + Duration::from_secs(life);
        let minted = Minted::new(
            Fresh {
                value: SecretValue::new("v".into()),
                expires_at,
                lease: None,
            },
            source.clone(),
        );
        expires_at
            .duration_since(minted.refresh_at)
            .unwrap_or_default()
            .as_secs_f64()
    };
    assert!((mint(3600) - 300.0).abs() < 1.0);
    assert!((mint(600) - 60.0).abs() < 1.0);
    assert!((mint(10) - 1.0).abs() < 0.1);
}

mod quoting {
    use super::quote_issuer;
    use proptest::prelude::*;

    proptest! {
        /// Whatever an issuer answers, the quote is one bounded line that does
        /// not carry what tollgate sent (the JWT, a client secret).
        #[test]
        fn a_quote_never_carries_a_secret(
            before in "[a-z\\[\\] .]{0,220}",
            secret in "[a-z\\[\\]]{8,40}",
            after in "[a-z\\[\\] .]{0,40}",
            noise in "\\PC{0,50}",
        ) {
            for text in [format!("{before}{secret}{after}"), format!("{noise}{before}{secret}"), noise.clone()] {
                let quoted = quote_issuer(&text, &[&secret]);
                prop_assert!(!quoted.contains(&secret), "{quoted:?}");
                prop_assert!(!quoted.chars().any(char::is_control));
                prop_assert!(quoted.chars().count() <= super::super::issued::MAX_QUOTE);
            }
        }
    }
}
