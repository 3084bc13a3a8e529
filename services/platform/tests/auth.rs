//! Production token verification: RS256 with a public key file, and JWKS with keys chosen by
//! `kid`, using the test-only key pair in `tests/fixtures`.

use std::{path::PathBuf, time::SystemTime};

use crm_platform::auth::{AuthSettings, Claims, TokenVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn production_settings() -> AuthSettings {
    AuthSettings {
        hs256_secret: None,
        rs256_public_key_file: None,
        jwks_file: None,
        issuer: "https://login.example.com".into(),
        audience: "crm".into(),
        service_secret: "service-secret-0123456789".into(),
    }
}

fn rs256_token(kid: Option<&str>, sub: &str, issuer: &str) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims {
        sub: sub.into(),
        roles: vec!["manager".into()],
        iss: issuer.into(),
        aud: "crm".into(),
        exp: now + 600,
        iat: now,
        obo: None,
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rs256-private.pem")).unwrap()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[test]
fn rs256_tokens_verify_with_the_configured_public_key() {
    let settings = AuthSettings {
        rs256_public_key_file: Some(fixture("rs256-public.pem")),
        ..production_settings()
    };
    let verifier = TokenVerifier::from_settings(&settings).unwrap();
    let caller = verifier
        .verify(&rs256_token(None, "ana", "https://login.example.com"))
        .unwrap();
    assert_eq!(caller.subject, "ana");
    assert!(caller.has_role("manager"));
    // Another issuer is refused; HS256 user tokens are refused when no secret is configured.
    assert!(
        verifier
            .verify(&rs256_token(None, "ana", "https://evil.example.com"))
            .is_err()
    );
    let hs256 = crm_platform::auth::TokenIssuer::for_services(&settings).issue(
        "ana",
        &["admin"],
        std::time::Duration::from_secs(60),
    );
    assert!(verifier.verify(&hs256).is_err());
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let settings = AuthSettings {
        jwks_file: Some(fixture("jwks.json")),
        ..production_settings()
    };
    let verifier = TokenVerifier::from_settings(&settings).unwrap();
    let caller = verifier
        .verify(&rs256_token(
            Some("test-key-1"),
            "bob",
            "https://login.example.com",
        ))
        .unwrap();
    assert_eq!(caller.subject, "bob");
    assert!(
        verifier
            .verify(&rs256_token(
                Some("unknown-key"),
                "bob",
                "https://login.example.com"
            ))
            .is_err()
    );
}

#[test]
fn a_missing_key_file_is_reported_with_its_path() {
    let settings = AuthSettings {
        rs256_public_key_file: Some(fixture("nope.pem")),
        ..production_settings()
    };
    let err = TokenVerifier::from_settings(&settings).unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
}
