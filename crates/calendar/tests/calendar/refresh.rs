use crate::*;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use voxanne_calendar::CalendarError;

#[tokio::test]
async fn google_refresh_gives_a_working_access_token_and_keeps_the_refresh_token() {
    let (fake, client) = setup().await;
    let account = fake.account(Google, "desk@clinic.example");
    fake.expire_access_tokens(&account);
    let tokens = client
        .refresh(Google, &account.refresh())
        .await
        .expect("refresh");
    assert!(tokens.refresh_token.is_none(), "Google does not rotate");
    assert_eq!(tokens.expires_in, Some(Duration::from_secs(3920)));
    assert_ne!(tokens.access_token.expose_secret(), account.access_token);
    let busy = client
        .free_busy(
            &primary(&account),
            &tokens.access_token,
            at("09:00"),
            at("17:00"),
        )
        .await
        .expect("the new token works");
    assert!(busy.is_empty());
    let form = fake.token_requests().pop().expect("a token request");
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], account.refresh_token);
}

#[tokio::test]
async fn microsoft_refresh_rotates_the_refresh_token() {
    let (fake, client) = setup().await;
    let account = fake.account(Microsoft, "front@clinic.example");
    let tokens = client
        .refresh(Microsoft, &account.refresh())
        .await
        .expect("refresh");
    let rotated = tokens.refresh_token.expect("a rotated refresh token");
    assert_ne!(rotated.expose_secret(), account.refresh_token);
    assert_eq!(tokens.expires_in, Some(Duration::from_secs(3599)));
    let again = client
        .refresh(Microsoft, &rotated)
        .await
        .expect("the rotated one works");
    assert!(again.refresh_token.is_some());
}

#[tokio::test]
async fn a_revoked_grant_is_invalid_grant_for_both_providers() {
    let (fake, client) = setup().await;
    for provider in [Google, Microsoft] {
        let account = fake.account(provider, "gone@clinic.example");
        fake.revoke_grant(&account);
        let e = client
            .refresh(provider, &account.refresh())
            .await
            .expect_err("refused");
        match &e {
            CalendarError::InvalidGrant { error, .. } => assert_eq!(error, "invalid_grant"),
            other => panic!("{provider}: {other:?}"),
        }
        assert!(e.permanent());
    }
}

#[tokio::test]
async fn an_unknown_microsoft_refresh_token_says_why() {
    let (_fake, client) = setup().await;
    let e = client
        .refresh(Microsoft, &SecretString::from("M.C507_BAY.never-issued"))
        .await
        .expect_err("refused");
    let CalendarError::InvalidGrant { description, .. } = &e else {
        panic!("{e:?}");
    };
    assert!(
        description
            .as_deref()
            .is_some_and(|d| d.starts_with("AADSTS70008")),
        "{description:?}"
    );
    assert!(!e.to_string().contains("never-issued"), "{e}");
}

#[tokio::test]
async fn a_wrong_client_secret_is_rejected_not_a_broken_link() {
    let (fake, _) = setup().await;
    let mut app = fake.google_app();
    app.client_secret = SecretString::from("wrong");
    let client = voxanne_calendar::CalendarOAuth::new(None, Some(app), None);
    let account = fake.account(Google, "desk@clinic.example");
    let e = client
        .refresh(Google, &account.refresh())
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, CalendarError::Rejected { message, .. } if message.starts_with("invalid_client")),
        "{e:?}"
    );
    assert!(e.permanent());
}

#[tokio::test]
async fn a_provider_without_an_application_is_not_configured() {
    let (fake, _) = setup().await;
    let client = voxanne_calendar::CalendarOAuth::new(None, Some(fake.google_app()), None);
    let account = fake.account(Microsoft, "front@clinic.example");
    let e = client
        .refresh(Microsoft, &account.refresh())
        .await
        .expect_err("not configured");
    assert!(
        matches!(
            e,
            CalendarError::NotConfigured {
                provider: Microsoft
            }
        ),
        "{e:?}"
    );
    let e = client
        .free_busy(
            &primary(&account),
            &account.access(),
            at("09:00"),
            at("10:00"),
        )
        .await
        .expect_err("not configured");
    assert!(matches!(e, CalendarError::NotConfigured { .. }), "{e:?}");
    assert!(fake.requests().is_empty());
}
