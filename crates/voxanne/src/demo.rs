//! `voxanne demo` and `serve --demo`: seed the two demo clinics and say how to try them.

use secrecy::SecretString;
use serde::Serialize;
use std::fmt;
use std::time::Duration;
use voxanne_db::calls::CallFilter;
use voxanne_db::crypto::Keyring;
use voxanne_db::integrations::Secrets;
use voxanne_db::{ActorKind, Db};
use voxanne_domain::{IntegrationProvider, OrgId, Role, UserId};
use voxanne_http::auth::{mint_hs256, DevToken};

const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Each demo clinic's Vapi webhook secret, by its phone number. Known on purpose: they sign
/// `voxanne call simulate`'s requests. A real clinic sets its own through
/// `PUT /api/v1/integrations/vapi`.
const WEBHOOK_SECRETS: [(&str, &str); 2] = [
    ("+14155550100", "demo-webhook-secret-clinic-a"),
    ("+442079460100", "demo-webhook-secret-clinic-b"),
];

/// The demo webhook secret of the demo clinic that owns `number`.
pub fn webhook_secret(number: &str) -> Option<&'static str> {
    WEBHOOK_SECRETS
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, s)| *s)
}

/// How each demo clinic's Vapi credential authenticates: Clinic A with Vapi's default
/// (`X-Vapi-Secret`), Clinic B with an HMAC credential on Vapi's defaults, so the demo shows
/// both.
pub fn server_auth(number: &str) -> serde_json::Value {
    if number == WEBHOOK_SECRETS[1].0 {
        serde_json::json!({"type": "hmac"})
    } else {
        serde_json::json!({"type": "x-vapi-secret"})
    }
}

#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub base_url: String,
    pub clinics: Vec<DemoClinic>,
    pub examples: Vec<Example>,
}

#[derive(Debug, Serialize)]
pub struct DemoClinic {
    pub name: String,
    pub org_id: OrgId,
    pub phone_number: String,
    /// Signs the voice platform's webhooks for `phone_number` (`voxanne call simulate`).
    pub webhook_secret: String,
    /// How the platform presents it (the clinic's `server_auth`).
    pub server_auth: serde_json::Value,
    pub users: Vec<DemoUser>,
}

#[derive(Debug, Serialize)]
pub struct DemoUser {
    pub role: Role,
    pub user_id: UserId,
    pub token: String,
}

/// A ready-to-paste curl line and the HTTP status it should answer with.
#[derive(Debug, Serialize)]
pub struct Example {
    pub description: String,
    pub expect_status: u16,
    pub curl: String,
}

pub async fn seed(
    db: &Db,
    keyring: &Keyring,
    secret: &SecretString,
    audience: &str,
    base_url: &str,
) -> anyhow::Result<DemoReport> {
    let seeded = voxanne_db::demo::seed(db).await?;
    let token = |user: UserId, org: OrgId, role: Role| {
        mint_hs256(
            secret,
            audience,
            &DevToken {
                user,
                org: Some(org),
                role: Some(role),
                ttl: TOKEN_TTL,
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let mut clinics = Vec::new();
    for c in &seeded {
        let webhook_secret = webhook_secret(c.number)
            .ok_or_else(|| anyhow::anyhow!("no demo webhook secret for {}", c.number))?;
        let mut tx = db.tenant(c.org, c.owner).await?;
        tx.set_actor(ActorKind::Cli);
        tx.set_origin("voxanne demo", None, None);
        if tx
            .get_integration(IntegrationProvider::Vapi)
            .await?
            .is_none()
        {
            let secrets: Secrets = [(
                "webhook_secret".to_owned(),
                SecretString::from(webhook_secret),
            )]
            .into();
            let config = [(
                voxanne_webhooks::vapi_auth::CONFIG_KEY.to_owned(),
                server_auth(c.number),
            )]
            .into_iter()
            .collect();
            tx.put_integration(keyring, IntegrationProvider::Vapi, &config, Some(&secrets))
                .await?;
        }
        tx.commit().await?;
        clinics.push(DemoClinic {
            name: c.name.to_owned(),
            org_id: c.org,
            phone_number: c.number.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
            server_auth: server_auth(c.number),
            users: vec![
                DemoUser {
                    role: Role::Owner,
                    user_id: c.owner,
                    token: token(c.owner, c.org, Role::Owner)?,
                },
                DemoUser {
                    role: Role::Staff,
                    user_id: c.staff,
                    token: token(c.staff, c.org, Role::Staff)?,
                },
            ],
        });
    }
    let [a, _] = &seeded;
    let mut tx = db.tenant(a.org, a.owner).await?;
    tx.set_actor(ActorKind::Cli);
    tx.set_origin("voxanne demo", None, None);
    let newest_a_call = tx
        .list_calls(&CallFilter::default(), None, 1)
        .await?
        .first()
        .map(|c| c.id)
        .ok_or_else(|| anyhow::anyhow!("the demo clinic has no calls"))?;
    tx.commit().await?;

    let a_owner = &clinics[0].users[0].token;
    let b_owner = &clinics[1].users[0].token;
    let b_staff = &clinics[1].users[1].token;
    let auth = |t: &str| format!("-H 'Authorization: Bearer {t}'");
    let example = |description: &str, expect_status: u16, curl: String| Example {
        description: description.to_owned(),
        expect_status,
        curl,
    };
    let examples = vec![
        example("Liveness", 200, format!("curl -s {base_url}/healthz")),
        example(
            "Who am I: Clinic A's owner, with the orgs they belong to",
            200,
            format!("curl -s {base_url}/api/v1/me {}", auth(a_owner)),
        ),
        example(
            "Clinic A's three newest calls (note next_cursor)",
            200,
            format!(
                "curl -s '{base_url}/api/v1/calls?limit=3' {}",
                auth(a_owner)
            ),
        ),
        example(
            "Clinic B's completed inbound calls, as B's staff user",
            200,
            format!(
                "curl -s '{base_url}/api/v1/calls?direction=inbound&status=completed' {}",
                auth(b_staff)
            ),
        ),
        example(
            "One of Clinic A's calls, as Clinic A",
            200,
            format!(
                "curl -s {base_url}/api/v1/calls/{newest_a_call} {}",
                auth(a_owner)
            ),
        ),
        example(
            "The same call as Clinic B: exactly like a call that does not exist",
            404,
            format!(
                "curl -s {base_url}/api/v1/calls/{newest_a_call} {}",
                auth(b_owner)
            ),
        ),
        example(
            "Clinic B's owner asking to act in Clinic A: not a member",
            403,
            format!(
                "curl -s {base_url}/api/v1/calls {} -H 'X-Org-Id: {}'",
                auth(b_owner),
                a.org
            ),
        ),
        example(
            "An org_id in the query selects nothing: still Clinic B's calls",
            200,
            format!(
                "curl -s '{base_url}/api/v1/calls?org_id={}' {}",
                a.org,
                auth(b_owner)
            ),
        ),
    ];
    Ok(DemoReport {
        base_url: base_url.to_owned(),
        clinics,
        examples,
    })
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Demo clinics (tokens valid for {}h):",
            TOKEN_TTL.as_secs() / 3600
        )?;
        for c in &self.clinics {
            writeln!(
                f,
                "\n  {} — org {} — phone {} — webhook secret {} ({})",
                c.name,
                c.org_id,
                c.phone_number,
                c.webhook_secret,
                c.server_auth["type"].as_str().unwrap_or("x-vapi-secret")
            )?;
            for u in &c.users {
                writeln!(
                    f,
                    "    {:<5} user {}\n          token {}",
                    u.role.as_str(),
                    u.user_id,
                    u.token
                )?;
            }
        }
        writeln!(f, "\nTry these:")?;
        if let Some(a) = self.clinics.first() {
            writeln!(
                f,
                "\n# A whole phone call to {}: the agent finds a free time and books it (signed as the voice platform)\nvoxanne call simulate --to {} --book --server {}",
                a.name, a.phone_number, self.base_url
            )?;
        }
        for e in &self.examples {
            writeln!(
                f,
                "\n# {} (HTTP {})\n{}",
                e.description, e.expect_status, e.curl
            )?;
        }
        writeln!(f)
    }
}
