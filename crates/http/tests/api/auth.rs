//! Who is asking and for which clinic (docs/TENANCY.md sections 1 and 2), over real HTTP.

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use voxanne_domain::{OrgId, UserId};
use voxanne_http::auth::JwksSource;

async fn assert_denied(
    app: &TestApp,
    token: Option<&str>,
    headers: &[(&str, &str)],
    status: u16,
    code: &str,
) {
    for path in ["/api/v1/calls", "/api/v1/me"] {
        let r = app.get(path, token, headers).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {:?}", r.body);
        assert_eq!(r.code(), code, "{path}: {:?}", r.body);
        assert!(r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn no_token_is_401() {
    let app = TestApp::spawn().await;
    assert_denied(&app, None, &[], 401, "unauthenticated").await;
    assert_denied(
        &app,
        None,
        &[("authorization", "Basic Zm9vOmJhcg==")],
        401,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn alg_none_is_401() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(a.owner, Some(a.org)).to_string());
    for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
        assert_denied(&app, Some(&token), &[], 401, "invalid_token").await;
    }
}

#[tokio::test]
async fn a_bad_signature_is_401() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"not-the-server-secret"),
        &claims(a.owner, Some(a.org)),
    );
    assert_denied(&app, Some(&forged), &[], 401, "invalid_token").await;
    // A valid token with its payload swapped for another user's.
    let good = app.token(a.owner, Some(a.org));
    let mut parts: Vec<&str> = good.split('.').collect();
    let other = URL_SAFE_NO_PAD.encode(claims(UserId::new_random(), Some(a.org)).to_string());
    parts[1] = &other;
    assert_denied(&app, Some(&parts.join(".")), &[], 401, "invalid_token").await;
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_token_is_401() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let mut expired = claims(a.owner, Some(a.org));
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    assert_denied(&app, Some(&hs256(&expired)), &[], 401, "token_expired").await;

    let mut early = claims(a.owner, Some(a.org));
    early["nbf"] = json!(chrono::Utc::now().timestamp() + 3600);
    assert_denied(&app, Some(&hs256(&early)), &[], 401, "invalid_token").await;
}

#[tokio::test]
async fn a_wrong_or_missing_audience_or_subject_is_401() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let mut wrong_aud = claims(a.owner, Some(a.org));
    wrong_aud["aud"] = json!("some-other-service");
    assert_denied(&app, Some(&hs256(&wrong_aud)), &[], 401, "invalid_token").await;

    for missing in ["aud", "sub", "exp"] {
        let mut c = claims(a.owner, Some(a.org));
        c.as_object_mut().map(|o| o.remove(missing));
        assert_denied(&app, Some(&hs256(&c)), &[], 401, "invalid_token").await;
    }
    let mut not_uuid = claims(a.owner, Some(a.org));
    not_uuid["sub"] = json!("admin");
    assert_denied(&app, Some(&hs256(&not_uuid)), &[], 401, "invalid_token").await;
}

#[tokio::test]
async fn an_unknown_org_is_403() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let unknown = OrgId::new_random().to_string();
    let token = app.token(a.owner, Some(a.org));
    assert_denied(
        &app,
        Some(&token),
        &[("x-org-id", &unknown)],
        403,
        "not_a_member",
    )
    .await;
    let token_for_unknown = app.token(a.owner, unknown.parse().ok());
    assert_denied(&app, Some(&token_for_unknown), &[], 403, "not_a_member").await;
}

#[tokio::test]
async fn another_clinic_in_x_org_id_is_403_for_a_non_member() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let b_token = app.token(b.owner, Some(b.org));
    let a_org = a.org.to_string();
    assert_denied(
        &app,
        Some(&b_token),
        &[("x-org-id", &a_org)],
        403,
        "not_a_member",
    )
    .await;
    let r = app
        .get(
            "/api/v1/calls",
            Some(&b_token),
            &[("x-org-id", "not-a-uuid")],
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (400, "invalid_org_header"));
}

#[tokio::test]
async fn a_header_that_chooses_the_user_or_the_org_twice_is_400_not_the_first_wins() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_token = app.token(a.owner, Some(a.org));
    let b_token = app.token(b.owner, Some(b.org));
    let (a_org, b_org) = (a.org.to_string(), b.org.to_string());
    for (headers, named) in [
        (
            vec![("x-org-id", a_org.as_str()), ("x-org-id", b_org.as_str())],
            "X-Org-Id",
        ),
        (
            vec![("x-org-id", a_org.as_str()), ("x-org-id", a_org.as_str())],
            "X-Org-Id",
        ),
        (
            vec![("authorization", &*format!("Bearer {b_token}"))],
            "Authorization",
        ),
    ] {
        let r = app.get("/api/v1/calls", Some(&a_token), &headers).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (400, "duplicate_header"),
            "{named}: {}",
            r.body
        );
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(named));
    }
}

#[tokio::test]
async fn x_org_id_selects_among_the_users_own_orgs() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    // A's owner also joins B as staff.
    let mut tx = app.t.db.tenant(b.org, b.owner).await.expect("tx");
    sqlx::query(
        "INSERT INTO organization_members (org_id, user_id, role) VALUES ($1, $2, 'staff')",
    )
    .bind(b.org.as_uuid())
    .bind(a.owner.as_uuid())
    .execute(tx.conn())
    .await
    .expect("join");
    tx.commit().await.expect("commit");

    let token = app.token(a.owner, Some(a.org));
    let b_org = b.org.to_string();
    let me = app
        .get("/api/v1/me", Some(&token), &[("x-org-id", &b_org)])
        .await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["active_org"]["id"], json!(b.org));
    assert_eq!(me.body["role"], "staff");
    assert_eq!(me.body["orgs"].as_array().map(Vec::len), Some(2));
    let calls = app
        .get("/api/v1/calls", Some(&token), &[("x-org-id", &b_org)])
        .await;
    let orgs: Vec<_> = calls.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["org_id"].clone())
        .collect();
    assert!(!orgs.is_empty() && orgs.iter().all(|o| *o == json!(b.org)));
}

#[tokio::test]
async fn removing_a_member_takes_effect_on_the_next_request_not_at_token_expiry() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.staff, Some(a.org));
    assert_eq!(app.get_as("/api/v1/calls", &token).await.status, 200);

    let mut tx = app.t.db.tenant(a.org, a.owner).await.expect("tx");
    sqlx::query("DELETE FROM organization_members WHERE org_id = $1 AND user_id = $2")
        .bind(a.org.as_uuid())
        .bind(a.staff.as_uuid())
        .execute(tx.conn())
        .await
        .expect("remove");
    tx.commit().await.expect("commit");

    assert_denied(&app, Some(&token), &[], 403, "not_a_member").await;
}

#[tokio::test]
async fn a_suspended_org_is_403() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let mut admin = app.t.admin().await;
    sqlx::query("UPDATE organizations SET status = 'suspended' WHERE id = $1")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("suspend");
    assert_denied(
        &app,
        Some(&app.token(a.owner, Some(a.org))),
        &[],
        403,
        "org_suspended",
    )
    .await;
    assert_eq!(
        app.get_as("/api/v1/calls", &app.token(b.owner, Some(b.org)))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn user_metadata_never_selects_an_org() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    // B's owner writes Clinic A's id into their (user-editable) metadata.
    let mut c = claims(b.owner, None);
    c["user_metadata"] = json!({ "org_id": a.org, "organization_id": a.org, "role": "owner" });
    let token = hs256(&c);
    let r = app.get_as("/api/v1/calls", &token).await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (403, "org_required"),
        "{:?}",
        r.body
    );
    let me = app.get_as("/api/v1/me", &token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["active_org"], json!(null));
    assert_eq!(
        me.body["orgs"],
        json!([{ "org_id": b.org, "name": "Clinic B", "status": "active", "role": "owner" }])
    );
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_through_a_jwks_url() {
    let url = jwks_server().await;
    let app = TestApp::spawn_with(Some(JwksSource::Url(url))).await;
    let [a, _] = app.clinics().await;
    let c = claims(a.owner, Some(a.org));

    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("rsa key");
    let ec = EncodingKey::from_ec_pem(&fixture("ec_private.pem")).expect("ec key");
    for token in [
        sign(Algorithm::RS256, Some("test-rsa"), &rsa, &c),
        sign(Algorithm::ES256, Some("test-ec"), &ec, &c),
    ] {
        let r = app.get_as("/api/v1/calls", &token).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    // Wrong algorithm for the key, unknown key, and the classic confusion: an HS256 token
    // whose HMAC secret is the RSA public key.
    let wrong_family = sign(Algorithm::RS256, Some("test-ec"), &rsa, &c);
    let unknown_kid = sign(Algorithm::RS256, Some("rotated-away"), &rsa, &c);
    let no_kid = sign(Algorithm::RS256, None, &rsa, &c);
    let confused = sign(
        Algorithm::HS256,
        Some("test-rsa"),
        &EncodingKey::from_secret(&fixture("rsa_public.pem")),
        &c,
    );
    for token in [wrong_family, unknown_kid, no_kid, confused] {
        assert_denied(&app, Some(&token), &[], 401, "invalid_token").await;
    }
}

#[tokio::test]
async fn a_jwks_file_works_too_and_without_jwks_asymmetric_tokens_are_refused() {
    let app = TestApp::spawn_with(Some(JwksSource::File(
        format!("{FIXTURES}/jwks.json").into(),
    )))
    .await;
    let [a, _] = app.clinics().await;
    let c = claims(a.owner, Some(a.org));
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("rsa key");
    let token = sign(Algorithm::RS256, Some("test-rsa"), &rsa, &c);
    assert_eq!(app.get_as("/api/v1/calls", &token).await.status, 200);

    let plain = TestApp::spawn().await;
    plain.clinics().await;
    assert_denied(&plain, Some(&token), &[], 401, "invalid_token").await;
}

#[tokio::test]
async fn health_readiness_and_unknown_routes_answer_json() {
    let app = TestApp::spawn().await;
    let r = app.get("/healthz", None, &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.body["status"].as_str()),
        (200, Some("ok"))
    );
    let r = app.get("/readyz", None, &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.body["status"].as_str()),
        (200, Some("ready"))
    );
    let r = app.get("/api/v1/nothing-here", None, &[]).await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "no_route"));
}

/// `n - s` for P-256's group order `n`, both 32 bytes big-endian.
fn p256_negate(s: &[u8]) -> Vec<u8> {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

#[tokio::test]
async fn an_es256_tokens_high_s_twin_says_the_same_and_grants_the_same() {
    // Documented in the README: JWS defines no canonical ECDSA form and the library has no
    // check, so the twin verifies; it carries the same claims, so it can only be the same
    // user in the same org. If the library starts refusing it, this test says so.
    let url = jwks_server().await;
    let app = TestApp::spawn_with(Some(JwksSource::Url(url))).await;
    let [a, _] = app.clinics().await;
    let ec = EncodingKey::from_ec_pem(&fixture("ec_private.pem")).expect("ec key");
    let token = sign(
        Algorithm::ES256,
        Some("test-ec"),
        &ec,
        &claims(a.owner, Some(a.org)),
    );
    let (signed, signature) = token.rsplit_once('.').expect("a JWS");
    let raw = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    assert_eq!(raw.len(), 64, "r || s");
    let mut twin = raw[..32].to_vec();
    twin.extend(p256_negate(&raw[32..]));
    let twin = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(twin));
    assert_ne!(twin, token);
    let original = app.get_as("/api/v1/me", &token).await;
    let mirrored = app.get_as("/api/v1/me", &twin).await;
    assert_eq!(original.status, 200);
    assert_eq!(
        (mirrored.status, &mirrored.body),
        (original.status, &original.body)
    );
}
