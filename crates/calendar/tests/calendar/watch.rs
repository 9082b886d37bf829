use crate::*;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;
use uuid::Uuid;
use voxanne_calendar::CalendarError;

/// What a notification endpoint received: headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A notification endpoint on loopback; it answers Graph's validation request if `echo`.
async fn receiver(echo: bool) -> (Url, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                move |State(received): State<Received>,
                      Query(q): Query<HashMap<String, String>>,
                      headers: HeaderMap,
                      body: String| async move {
                    if let Some(token) = q.get("validationToken") {
                        return if echo {
                            (
                                StatusCode::OK,
                                [(header::CONTENT_TYPE, "text/plain")],
                                token.clone(),
                            )
                                .into_response()
                        } else {
                            StatusCode::NOT_FOUND.into_response()
                        };
                    }
                    received.lock().expect("lock").push((headers, body));
                    StatusCode::ACCEPTED.into_response()
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"))
        .parse()
        .expect("url");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Waits (up to 5 s) until `received` holds `n` notifications.
async fn notifications(received: &Received, n: usize) -> Vec<(HeaderMap, String)> {
    for _ in 0..100 {
        let got = received.lock().expect("lock").clone();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} notifications: {:?}",
        received.lock().expect("lock")
    );
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_google_channel_notifies_changes_until_it_is_stopped() {
    let (fake, client) = setup().await;
    let account = fake.account(Google, "desk@clinic.example");
    let (address, received) = receiver(true).await;
    let channel = Uuid::new_v4();
    let expires = at("10:00") + chrono::Duration::days(400);
    let watch = client
        .watch(
            &primary(&account),
            &account.access(),
            &address,
            channel,
            "clinic-a-token",
            expires,
        )
        .await
        .expect("watch");
    assert_eq!(watch.id, channel.to_string());
    assert!(watch.resource_id.as_deref().is_some_and(|r| !r.is_empty()));
    assert_eq!(watch.expires_at, expires);
    let sync = notifications(&received, 1).await;
    assert_eq!(header(&sync[0].0, "x-goog-resource-state"), "sync");
    assert_eq!(header(&sync[0].0, "x-goog-channel-id"), watch.id);
    assert_eq!(header(&sync[0].0, "x-goog-channel-token"), "clinic-a-token");
    let id = fake.seed_busy(&account, at("10:00"), at("11:00"));
    fake.staff_move(&account, &id, at("12:00"), at("13:00"));
    let all = notifications(&received, 2).await;
    assert_eq!(header(&all[1].0, "x-goog-resource-state"), "exists");
    assert_eq!(
        header(&all[1].0, "x-goog-resource-id"),
        watch.resource_id.as_deref().unwrap_or_default()
    );
    client
        .stop_watch(&primary(&account), &account.access(), &watch)
        .await
        .expect("stop");
    assert!(fake.watches().is_empty());
    client
        .stop_watch(&primary(&account), &account.access(), &watch)
        .await
        .expect("stopping again is fine");
}

#[tokio::test]
async fn a_graph_subscription_is_validated_then_notifies_changes() {
    let (fake, client) = setup().await;
    let account = fake.account(Microsoft, "front@clinic.example");
    let (address, received) = receiver(true).await;
    let expires = chrono::Utc::now() + chrono::Duration::days(2);
    let watch = client
        .watch(
            &primary(&account),
            &account.access(),
            &address,
            Uuid::new_v4(),
            "clinic-a-state",
            expires,
        )
        .await
        .expect("subscribe");
    assert_eq!(watch.resource_id, None);
    assert!((watch.expires_at - expires).num_milliseconds().abs() < 2);
    assert_eq!(fake.watches()[0].id, watch.id);
    let id = client
        .upsert_event(
            &primary(&account),
            &account.access(),
            &appointment("10:00", "10:30"),
        )
        .await
        .expect("create");
    let got = notifications(&received, 1).await;
    let body: serde_json::Value = serde_json::from_str(&got[0].1).expect("json");
    let item = &body["value"][0];
    assert_eq!(item["subscriptionId"], watch.id.as_str());
    assert_eq!(item["clientState"], "clinic-a-state");
    assert_eq!(item["changeType"], "created");
    assert_eq!(item["resourceData"]["id"], id.as_str());
    client
        .stop_watch(&primary(&account), &account.access(), &watch)
        .await
        .expect("delete");
    assert!(fake.watches().is_empty());
}

#[tokio::test]
async fn a_graph_subscription_whose_endpoint_does_not_validate_is_rejected() {
    let (fake, client) = setup().await;
    let account = fake.account(Microsoft, "front@clinic.example");
    let (address, _) = receiver(false).await;
    let e = client
        .watch(
            &primary(&account),
            &account.access(),
            &address,
            Uuid::new_v4(),
            "state",
            chrono::Utc::now() + chrono::Duration::days(1),
        )
        .await
        .expect_err("validation failed");
    assert!(
        matches!(&e, CalendarError::Rejected { status: 400, message, .. } if message.starts_with("ValidationError")),
        "{e:?}"
    );
    assert!(fake.watches().is_empty());
}
