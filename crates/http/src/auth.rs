//! Who is asking (docs/TENANCY.md section 1): Supabase-style JWTs. HS256 with a shared secret, and
//! RS256/ES256 through a JWKS document (from a URL or a file). `aud`, `exp`, `nbf` and `sub`
//! are checked; `user_metadata` is never read (it is user-editable), only `app_metadata`.

use crate::error::ApiError;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;
use uuid::Uuid;
use voxanne_domain::{OrgId, Role, UserId};

/// Where the JWKS document comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The HS256 shared secret (a Supabase project's JWT secret works as is).
    pub hs256_secret: Option<SecretString>,
    pub jwks: Option<JwksSource>,
    /// The `aud` every token must carry.
    pub audience: String,
}

/// What a verified token says about the caller.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedToken {
    pub user: UserId,
    /// `app_metadata.org_id`: the default active org, set server-side by the identity provider.
    pub default_org: Option<OrgId>,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching the JWKS from {0}: {1}")]
    Fetch(String, String),
    #[error("reading the JWKS file {0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("the JWKS document is not valid: {0}")]
    Parse(String),
}

#[derive(Debug)]
pub struct JwtVerifier {
    config: AuthConfig,
    jwks: RwLock<Jwks>,
    http: reqwest::Client,
}

#[derive(Debug)]
struct Jwks {
    set: JwkSet,
    fetched: Option<Instant>,
}

/// An unknown `kid` refetches a URL-sourced JWKS (keys rotate), at most this often.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    app_metadata: Option<AppMetadata>,
}

#[derive(Debug, Default, Deserialize)]
struct AppMetadata {
    #[serde(default)]
    org_id: Option<String>,
}

impl JwtVerifier {
    /// Builds the verifier, loading the JWKS once if one is configured.
    pub async fn new(config: AuthConfig) -> Result<Self, JwksError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| JwksError::Fetch(String::new(), e.to_string()))?;
        let verifier = Self {
            config,
            jwks: RwLock::new(Jwks {
                set: JwkSet { keys: Vec::new() },
                fetched: None,
            }),
            http,
        };
        if let Some(source) = &verifier.config.jwks {
            let set = verifier.load_jwks(source).await?;
            *verifier.jwks.write().await = Jwks {
                set,
                fetched: Some(Instant::now()),
            };
        }
        Ok(verifier)
    }

    async fn load_jwks(&self, source: &JwksSource) -> Result<JwkSet, JwksError> {
        let text = match source {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| JwksError::File(path.clone(), e))?,
            JwksSource::Url(url) => {
                let fetch = |e: reqwest::Error| JwksError::Fetch(url.clone(), e.to_string());
                self.http
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(fetch)?
                    .text()
                    .await
                    .map_err(fetch)?
            }
        };
        serde_json::from_str(&text).map_err(|e| JwksError::Parse(e.to_string()))
    }

    /// Verifies a bearer token: signature with the key its algorithm calls for, `exp`, `nbf`
    /// and `aud`; then reads `sub` and `app_metadata.org_id`.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| ApiError::InvalidToken(format!("malformed header ({e})")))?;
        let key = match header.alg {
            Algorithm::HS256 => match &self.config.hs256_secret {
                Some(secret) => DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                None => {
                    return Err(ApiError::InvalidToken(
                        "HS256 tokens are not accepted".into(),
                    ))
                }
            },
            Algorithm::RS256 | Algorithm::ES256 => {
                self.jwks_key(header.alg, header.kid.as_deref()).await?
            }
            other => {
                return Err(ApiError::InvalidToken(format!(
                    "algorithm {other:?} is not accepted"
                )))
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenExpired,
                ErrorKind::ImmatureSignature => {
                    ApiError::InvalidToken("not valid yet (nbf)".into())
                }
                ErrorKind::InvalidAudience => ApiError::InvalidToken("wrong audience".into()),
                ErrorKind::InvalidSignature => ApiError::InvalidToken("bad signature".into()),
                ErrorKind::MissingRequiredClaim(c) => {
                    ApiError::InvalidToken(format!("missing claim `{c}`"))
                }
                _ => ApiError::InvalidToken(e.to_string()),
            }
        })?;
        let user = Uuid::parse_str(&data.claims.sub)
            .map(UserId::from_uuid)
            .map_err(|_| ApiError::InvalidToken("`sub` is not a user uuid".into()))?;
        let default_org = match data.claims.app_metadata.unwrap_or_default().org_id {
            None => None,
            Some(text) => Some(Uuid::parse_str(&text).map(OrgId::from_uuid).map_err(|_| {
                ApiError::InvalidToken("`app_metadata.org_id` is not a uuid".into())
            })?),
        };
        Ok(VerifiedToken { user, default_org })
    }

    async fn jwks_key(&self, alg: Algorithm, kid: Option<&str>) -> Result<DecodingKey, ApiError> {
        let Some(source) = &self.config.jwks else {
            return Err(ApiError::InvalidToken(format!(
                "{alg:?} tokens are not accepted (no JWKS configured)"
            )));
        };
        let kid = kid.ok_or_else(|| ApiError::InvalidToken("missing `kid`".into()))?;
        if let Some(key) = find_key(&self.jwks.read().await.set, alg, kid)? {
            return Ok(key);
        }
        // Perhaps the provider rotated its keys: refetch, but not more than once in a while.
        if let JwksSource::Url(_) = source {
            let mut jwks = self.jwks.write().await;
            let stale = jwks
                .fetched
                .is_none_or(|t| t.elapsed() >= JWKS_REFRESH_INTERVAL);
            if stale {
                match self.load_jwks(source).await {
                    Ok(set) => {
                        *jwks = Jwks {
                            set,
                            fetched: Some(Instant::now()),
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "refreshing the JWKS failed"),
                }
                if let Some(key) = find_key(&jwks.set, alg, kid)? {
                    return Ok(key);
                }
            }
        }
        Err(ApiError::InvalidToken("unknown `kid`".into()))
    }
}

/// The key `kid` of the set, if it exists and is of the family `alg` needs (so that an RSA
/// key is never used as, say, an HMAC secret).
fn find_key(set: &JwkSet, alg: Algorithm, kid: &str) -> Result<Option<DecodingKey>, ApiError> {
    let Some(jwk) = set.find(kid) else {
        return Ok(None);
    };
    let family_matches = matches!(
        (alg, &jwk.algorithm),
        (Algorithm::RS256, AlgorithmParameters::RSA(_))
            | (Algorithm::ES256, AlgorithmParameters::EllipticCurve(_))
    );
    if !family_matches {
        return Err(ApiError::InvalidToken(format!(
            "key `{kid}` is not a {alg:?} key"
        )));
    }
    DecodingKey::from_jwk(jwk)
        .map(Some)
        .map_err(|e| ApiError::InvalidToken(format!("key `{kid}` is unusable: {e}")))
}

/// What `voxanne token` and the demo mint: a Supabase-shaped HS256 token.
#[derive(Debug, Clone)]
pub struct DevToken {
    pub user: UserId,
    pub org: Option<OrgId>,
    pub role: Option<Role>,
    pub ttl: Duration,
}

#[derive(Serialize)]
struct DevClaims<'a> {
    sub: String,
    aud: &'a str,
    exp: i64,
    iat: i64,
    role: &'static str,
    app_metadata: serde_json::Value,
}

/// Signs a development token with the HS256 secret. The `role` in app_metadata is
/// informational: the server decides with the membership row, never with the token.
pub fn mint_hs256(
    secret: &SecretString,
    audience: &str,
    token: &DevToken,
) -> Result<String, ApiError> {
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(token.ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let mut app_metadata = serde_json::json!({ "provider": "voxanne-dev" });
    if let Some(org) = token.org {
        app_metadata["org_id"] = serde_json::json!(org);
    }
    if let Some(role) = token.role {
        app_metadata["role"] = serde_json::json!(role);
    }
    let claims = DevClaims {
        sub: token.user.to_string(),
        aud: audience,
        exp: now.saturating_add(ttl),
        iat: now,
        role: "authenticated",
        app_metadata,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
    .map_err(ApiError::internal)
}
