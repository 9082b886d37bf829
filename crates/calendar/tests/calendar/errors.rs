use crate::*;
use std::time::Duration;
use voxanne_calendar::CalendarError;

#[tokio::test]
async fn an_expired_access_token_is_unauthorized_until_refreshed() {
    let (fake, client) = setup().await;
    for provider in [Google, Microsoft] {
        let account = fake.account(provider, "desk@clinic.example");
        fake.expire_access_tokens(&account);
        let e = client
            .free_busy(
                &primary(&account),
                &account.access(),
                at("09:00"),
                at("10:00"),
            )
            .await
            .expect_err("expired");
        assert!(
            matches!(e, CalendarError::Unauthorized { .. }),
            "{provider}: {e:?}"
        );
        assert!(!e.permanent());
        let text = format!("{e} {e:?}");
        assert!(!text.contains(&account.access_token), "{text}");
        let tokens = client
            .refresh(provider, &account.refresh())
            .await
            .expect("refresh");
        client
            .free_busy(
                &primary(&account),
                &tokens.access_token,
                at("09:00"),
                at("10:00"),
            )
            .await
            .expect("works again");
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_rate_limited_for_that_long() {
    let (fake, client) = setup().await;
    for provider in [Google, Microsoft] {
        let account = fake.account(provider, "desk@clinic.example");
        fake.fail_next(1, 429, Some("30"));
        let e = client
            .upsert_event(
                &primary(&account),
                &account.access(),
                &appointment("10:00", "10:30"),
            )
            .await
            .expect_err("throttled");
        assert!(
            matches!(e, CalendarError::RateLimited { .. }),
            "{provider}: {e:?}"
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        assert!(!e.permanent());
        assert!(fake.events(&account).is_empty());
    }
}

#[tokio::test]
async fn googles_403_rate_limit_exceeded_is_rate_limited() {
    let (fake, client) = setup().await;
    let account = fake.account(Google, "desk@clinic.example");
    fake.fail_next(1, 403, None);
    let e = client
        .free_busy(
            &primary(&account),
            &account.access(),
            at("09:00"),
            at("10:00"),
        )
        .await
        .expect_err("throttled");
    assert!(
        matches!(
            e,
            CalendarError::RateLimited {
                retry_after: None,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_503_with_an_http_date_retry_after_is_rate_limited() {
    let (fake, client) = setup().await;
    let account = fake.account(Microsoft, "front@clinic.example");
    let later = (chrono::Utc::now() + chrono::Duration::seconds(120))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    fake.fail_next(1, 503, Some(&later));
    let e = client
        .get_event(&primary(&account), &account.access(), "AAMk=")
        .await
        .expect_err("unavailable");
    let wait = e.retry_after().expect("a wait");
    assert!(
        (Duration::from_secs(100)..=Duration::from_secs(120)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_503_or_a_provider_that_is_down_is_unavailable() {
    let (fake, client) = setup().await;
    for provider in [Google, Microsoft] {
        let account = fake.account(provider, "desk@clinic.example");
        fake.fail_next(1, 503, None);
        let e = client
            .free_busy(
                &primary(&account),
                &account.access(),
                at("09:00"),
                at("10:00"),
            )
            .await
            .expect_err("unavailable");
        assert!(
            matches!(e, CalendarError::Unavailable { .. }),
            "{provider}: {e:?}"
        );
        assert!(!e.permanent());
        fake.set_down(true);
        let e = client
            .delete_event(&primary(&account), &account.access(), "someid")
            .await
            .expect_err("down");
        assert!(
            matches!(e, CalendarError::Unavailable { .. }),
            "{provider}: {e:?}"
        );
        fake.set_down(false);
        client
            .free_busy(
                &primary(&account),
                &account.access(),
                at("09:00"),
                at("10:00"),
            )
            .await
            .expect("back up");
    }
}

#[tokio::test]
async fn a_slow_provider_times_out_as_unavailable() {
    let (fake, _) = setup().await;
    let mut client = fake.client();
    client.http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let account = fake.account(Google, "desk@clinic.example");
    fake.set_delay(Duration::from_secs(2));
    let e = client
        .free_busy(
            &primary(&account),
            &account.access(),
            at("09:00"),
            at("10:00"),
        )
        .await
        .expect_err("timed out");
    assert!(
        matches!(&e, CalendarError::Unavailable { message, .. } if message.starts_with("timed out")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_is_unavailable() {
    let (fake, _) = setup().await;
    let account = fake.account(Microsoft, "front@clinic.example");
    let mut app = fake.microsoft_app();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    app.api_url = format!("http://{}", closed.local_addr().expect("addr"))
        .parse()
        .expect("url");
    drop(closed);
    let client = voxanne_calendar::CalendarOAuth::new(None, None, Some(app));
    let e = client
        .free_busy(
            &primary(&account),
            &account.access(),
            at("09:00"),
            at("10:00"),
        )
        .await
        .expect_err("unreachable");
    assert!(
        matches!(&e, CalendarError::Unavailable { message, .. } if message.starts_with("could not connect")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_bad_request_is_rejected_with_the_providers_short_message() {
    let (fake, client) = setup().await;
    let account = fake.account(Google, "desk@clinic.example");
    // An empty window: Google's documented 400.
    let e = client
        .free_busy(
            &primary(&account),
            &account.access(),
            at("10:00"),
            at("09:00"),
        )
        .await
        .expect_err("empty range");
    assert!(
        matches!(&e, CalendarError::Rejected { status: 400, message, .. } if message == "invalid: The specified time range is empty."),
        "{e:?}"
    );
    assert!(e.permanent());
}

#[tokio::test]
async fn a_base_url_with_a_trailing_slash_works_the_same() {
    let (fake, _) = setup().await;
    let mut google = fake.google_app();
    google.api_url = format!("{}/", fake.google_api()).parse().expect("url");
    let mut microsoft = fake.microsoft_app();
    microsoft.api_url = format!("{}/", fake.graph()).parse().expect("url");
    let client = voxanne_calendar::CalendarOAuth::new(None, Some(google), Some(microsoft));
    for provider in [Google, Microsoft] {
        let account = fake.account(provider, "desk@clinic.example");
        fake.seed_busy(&account, at("10:00"), at("11:00"));
        let busy = client
            .free_busy(
                &primary(&account),
                &account.access(),
                at("09:00"),
                at("12:00"),
            )
            .await
            .expect("free/busy");
        assert_eq!(busy.len(), 1, "{provider}");
    }
}
