//! `trellis sign`: embeds claims a secrets backend accepts (wascap reads them back, with the
//! code's hash) and prints the component's key; signing a rebuilt component again keeps that
//! key (it is kept, as wash keeps its own), so the secrets mapped to it stay mapped.

use std::path::Path;
use std::process::Command;

fn sign(component: &Path, output: &Path, keys: &Path) -> String {
    let signed = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .arg("sign")
        .arg(component)
        .arg("--output")
        .arg(output)
        .env("TRELLIS_KEYS_DIR", keys)
        .output()
        .expect("running trellis sign");
    assert!(signed.status.success(), "{signed:?}");
    String::from_utf8(signed.stdout).unwrap().trim().to_string()
}

#[test]
fn signed_claims_carry_a_kept_key() {
    let component = trellis_tests::component_path("secret_reader");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let output = dir.path().join("signed.wasm");
    let key = sign(&component, &output, &keys);
    assert!(key.starts_with('M') && key.len() == 56, "{key}");

    let bytes = std::fs::read(&output).unwrap();
    let jwt = trellis_host::secrets::component_jwt(&bytes)
        .expect("claims matching the code")
        .expect("claims");
    let claims = wascap::jwt::Claims::<wascap::jwt::Component>::decode(&jwt).unwrap();
    assert_eq!(claims.subject, key);
    assert_eq!(claims.name(), "secret_reader");
    assert!(claims.issuer.starts_with('A'));
    let validation = wascap::jwt::validate_token::<wascap::jwt::Component>(&jwt).unwrap();
    assert!(validation.signature_valid && !validation.expired);

    // Signing it again (after a rebuild) keeps the key; the code still verifies.
    let again = dir.path().join("again.wasm");
    assert_eq!(sign(&component, &again, &keys), key);
    let bytes = std::fs::read(&again).unwrap();
    assert!(
        trellis_host::secrets::component_jwt(&bytes)
            .unwrap()
            .is_some()
    );

    // Changed code under old claims is refused: the hash no longer matches.
    let mut tampered = std::fs::read(&output).unwrap();
    let at = tampered.len() / 2;
    tampered[at] ^= 0xff;
    assert!(trellis_host::secrets::component_jwt(&tampered).is_err());
}
