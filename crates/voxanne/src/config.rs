//! Configuration: read once, from the environment (and flags), into one struct.

use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;
use voxanne_http::auth::JwksSource;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// PostgreSQL server to use (connects as an admin role to create roles and migrate).
    /// Unset: a private cluster in VOXANNE_DATA_DIR.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// How the application connects (as voxanne_app). Unset with DATABASE_URL: that URL with
    /// the user voxanne_app and VOXANNE_APP_DB_PASSWORD.
    #[arg(
        long,
        env = "VOXANNE_APP_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub app_database_url: Option<String>,
    /// Password to set for, and log in as, voxanne_app on an external server.
    #[arg(
        long,
        env = "VOXANNE_APP_DB_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub app_db_password: Option<SecretString>,
    /// Where the embedded cluster and the generated development secret live.
    #[arg(
        long,
        env = "VOXANNE_DATA_DIR",
        default_value = ".voxanne",
        global = true
    )]
    pub data_dir: PathBuf,
    /// HS256 secret for JWTs (a Supabase project's JWT secret). Unset: one is generated into
    /// the data dir (development only).
    #[arg(
        long,
        env = "VOXANNE_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<SecretString>,
    /// AES-256 key that encrypts secrets at rest: base64 of 32 bytes, or `keyid:base64`
    /// (default key id `k1`). Unset: one is generated into the data dir (development only).
    #[arg(
        long,
        env = "VOXANNE_ENCRYPTION_KEY",
        global = true,
        hide_env_values = true
    )]
    pub encryption_key: Option<SecretString>,
    /// Older keys (`keyid:base64`, comma-separated) that still decrypt values written before a
    /// rotation.
    #[arg(
        long,
        env = "VOXANNE_ENCRYPTION_KEYS_OLD",
        global = true,
        hide_env_values = true
    )]
    pub encryption_keys_old: Option<SecretString>,
    /// The `aud` every token must carry.
    #[arg(
        long,
        env = "VOXANNE_JWT_AUDIENCE",
        default_value = "authenticated",
        global = true
    )]
    pub jwt_audience: String,
    /// JWKS document URL for RS256/ES256 tokens (e.g. the identity provider's .well-known/jwks.json).
    #[arg(long, env = "VOXANNE_JWKS_URL", global = true)]
    pub jwks_url: Option<String>,
    /// JWKS document file, instead of a URL.
    #[arg(
        long,
        env = "VOXANNE_JWKS_FILE",
        global = true,
        conflicts_with = "jwks_url"
    )]
    pub jwks_file: Option<PathBuf>,
    /// Where recordings are stored (local filesystem). Default: `<data dir>/objects`.
    #[arg(long, env = "VOXANNE_STORAGE_DIR", global = true)]
    pub storage_dir: Option<PathBuf>,
    /// Recordings in S3-compatible storage instead: `s3://bucket[/prefix]` (credentials,
    /// region and endpoint from the AWS_* variables).
    #[arg(long, env = "VOXANNE_STORAGE_URL", global = true)]
    pub storage_url: Option<String>,
    /// Recording jobs claimed (and run concurrently) per batch, per worker.
    #[arg(
        long,
        env = "VOXANNE_WORKER_BATCH",
        default_value_t = 20,
        global = true
    )]
    pub worker_batch: u32,
    /// How long a claimed job is held before another worker may take it over (the worker
    /// died); must exceed the download timeout. E.g. 5m.
    #[arg(long, env = "VOXANNE_WORKER_LEASE", default_value = "5m", value_parser = humantime::parse_duration, global = true)]
    pub worker_lease: std::time::Duration,
    /// The attempt that fails with this number ends `failed`.
    #[arg(
        long,
        env = "VOXANNE_WORKER_MAX_ATTEMPTS",
        default_value_t = 5,
        global = true
    )]
    pub worker_max_attempts: i32,
    /// Timeout of one recording download, connect included. E.g. 60s.
    #[arg(long, env = "VOXANNE_WORKER_HTTP_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub worker_http_timeout: std::time::Duration,
    /// Let the worker download recordings from loopback and private addresses (development
    /// and tests only: in production a clinic could point it at internal services).
    #[arg(long, env = "VOXANNE_WORKER_ALLOW_PRIVATE_URLS", global = true)]
    pub worker_allow_private_urls: bool,
    /// The only hosts that get a clinic's Twilio credentials with a recording download,
    /// comma-separated, each `host` or `host:port`, matched exactly (https only unless private
    /// URLs are allowed). Any other host is downloaded from without credentials.
    #[arg(
        long,
        env = "VOXANNE_TWILIO_MEDIA_HOSTS",
        default_value = voxanne_jobs::media_hosts::TWILIO_MEDIA_HOSTS,
        global = true
    )]
    pub twilio_media_hosts: String,
    /// The SMS provider's REST API (Twilio's, or one that speaks it): confirmations are
    /// POSTed to `{url}/2010-04-01/Accounts/{AccountSid}/Messages.json`.
    #[arg(
        long,
        env = "VOXANNE_SMS_API_URL",
        default_value = voxanne_jobs::sms::DEFAULT_API_URL,
        global = true
    )]
    pub sms_api_url: String,
    /// Timeout of one request to the SMS provider, connect included. E.g. 15s.
    #[arg(long, env = "VOXANNE_SMS_HTTP_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration, global = true)]
    pub sms_http_timeout: std::time::Duration,
    /// How long a claimed SMS is held before another worker may take it over (the worker
    /// died); must exceed the SMS HTTP timeout. E.g. 5m.
    #[arg(long, env = "VOXANNE_SMS_LEASE", default_value = "5m", value_parser = humantime::parse_duration, global = true)]
    pub sms_lease: std::time::Duration,
    /// The SMS attempt that fails with this number leaves the confirmation `failed`.
    #[arg(
        long,
        env = "VOXANNE_SMS_MAX_ATTEMPTS",
        default_value_t = 5,
        global = true
    )]
    pub sms_max_attempts: i32,
    /// The wait after a first failed SMS attempt; doubled for each further one (with jitter,
    /// at most an hour). E.g. 30s.
    #[arg(long, env = "VOXANNE_SMS_BACKOFF_BASE", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub sms_backoff_base: std::time::Duration,
    /// How often each linked calendar's busy times are read again (push notifications
    /// bring a sync forward). E.g. 2m.
    #[arg(long, env = "VOXANNE_CALENDAR_SYNC_INTERVAL", default_value = "2m", value_parser = humantime::parse_duration, global = true)]
    pub calendar_sync_interval: std::time::Duration,
    /// How far ahead the busy times are read. E.g. 62d.
    #[arg(long, env = "VOXANNE_CALENDAR_LOOK_AHEAD", default_value = "62d", value_parser = humantime::parse_duration, global = true)]
    pub calendar_look_ahead: std::time::Duration,
    /// The SMTP server that sends the dashboard's mail (invitations, password resets):
    /// `smtp://user:password@host:587?tls=required` (STARTTLS), `smtps://…:465` (TLS), or
    /// `smtp://host:25` (no TLS: a local relay). Unset: mail is printed in the log (and, in demo mode, shown
    /// at /outbox), never sent.
    #[arg(long, env = "VOXANNE_SMTP_URL", global = true)]
    pub smtp_url: Option<String>,
    /// The sender of the dashboard's mail.
    #[arg(
        long,
        env = "VOXANNE_MAIL_FROM",
        default_value = "Voxanne <no-reply@voxanne.invalid>",
        global = true
    )]
    pub mail_from: String,
    /// How long a dashboard sign-in lasts. E.g. 12h.
    #[arg(long, env = "VOXANNE_SESSION_TTL", default_value = "12h", value_parser = humantime::parse_duration, global = true)]
    pub session_ttl: std::time::Duration,
    /// How long an invitation's link works. E.g. 7d.
    #[arg(long, env = "VOXANNE_INVITATION_TTL", default_value = "7d", value_parser = humantime::parse_duration, global = true)]
    pub invitation_ttl: std::time::Duration,
    /// Where the provider reaches this server (e.g. https://voxanne.example.com): SMS ask for
    /// delivery-status callbacks at `{url}/webhooks/sms/twilio/status`. Unset: none asked.
    #[arg(long, env = "VOXANNE_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Vapi's REST API, for `integrations/vapi/sync` (a test points it at a local fake).
    #[arg(
        long,
        env = "VOXANNE_VAPI_API_URL",
        default_value = voxanne_http::vapi::DEFAULT_API_URL,
        global = true
    )]
    pub vapi_api_url: String,
    /// Google's OAuth client (Google Cloud console, "Web application"), for linking clinics'
    /// calendars. Unset: Google calendars cannot be linked.
    #[arg(long, env = "VOXANNE_GOOGLE_CLIENT_ID", global = true)]
    pub google_client_id: Option<String>,
    #[arg(
        long,
        env = "VOXANNE_GOOGLE_CLIENT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub google_client_secret: Option<SecretString>,
    #[arg(long, env = "VOXANNE_GOOGLE_AUTH_URL", default_value = voxanne_http::calendar_oauth::GOOGLE_AUTH_URL, global = true)]
    pub google_auth_url: String,
    #[arg(long, env = "VOXANNE_GOOGLE_TOKEN_URL", default_value = voxanne_http::calendar_oauth::GOOGLE_TOKEN_URL, global = true)]
    pub google_token_url: String,
    #[arg(long, env = "VOXANNE_GOOGLE_REVOKE_URL", default_value = voxanne_http::calendar_oauth::GOOGLE_REVOKE_URL, global = true)]
    pub google_revoke_url: String,
    #[arg(long, env = "VOXANNE_GOOGLE_USERINFO_URL", default_value = voxanne_http::calendar_oauth::GOOGLE_USERINFO_URL, global = true)]
    pub google_userinfo_url: String,
    /// The Google Calendar API's base (`/calendar/v3/...` under it).
    #[arg(long, env = "VOXANNE_GOOGLE_API_URL", default_value = voxanne_http::calendar_oauth::GOOGLE_API_URL, global = true)]
    pub google_api_url: String,
    /// Microsoft's OAuth client (an app registration in Microsoft Entra ID). Unset: Microsoft
    /// calendars cannot be linked.
    #[arg(long, env = "VOXANNE_MICROSOFT_CLIENT_ID", global = true)]
    pub microsoft_client_id: Option<String>,
    #[arg(
        long,
        env = "VOXANNE_MICROSOFT_CLIENT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub microsoft_client_secret: Option<SecretString>,
    /// The Microsoft identity platform authority: `{authority}/oauth2/v2.0/authorize` and
    /// `{authority}/oauth2/v2.0/token`.
    #[arg(long, env = "VOXANNE_MICROSOFT_AUTHORITY", default_value = voxanne_http::calendar_oauth::MICROSOFT_AUTHORITY, global = true)]
    pub microsoft_authority: String,
    /// Microsoft Graph: the account's address (`/v1.0/me`) and its calendars (`/v1.0/...`).
    #[arg(long, env = "VOXANNE_MICROSOFT_GRAPH_URL", default_value = voxanne_http::calendar_oauth::MICROSOFT_GRAPH_URL, global = true)]
    pub microsoft_graph_url: String,
    /// Application connection pool size.
    #[arg(
        long,
        env = "VOXANNE_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub db_max_connections: u32,
    /// Tenant transactions one clinic may hold at once, so that its burst of slow requests
    /// leaves the rest of the pool to the others. Unset: half the pool.
    #[arg(long, env = "VOXANNE_ORG_MAX_IN_FLIGHT", global = true)]
    pub org_max_in_flight: Option<usize>,
    /// How long a clinic's request waits for one of its slots before it is answered 429
    /// `org_busy`.
    #[arg(long, env = "VOXANNE_ORG_WAIT", default_value = "2s", value_parser = humantime::parse_duration, global = true)]
    pub org_wait: std::time::Duration,
    /// Failed authentications one client address may make per minute; past it, 429.
    #[arg(
        long,
        env = "VOXANNE_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 30,
        global = true
    )]
    pub auth_failures_per_minute: u32,
    /// Webhook requests per called number per minute; past it, 429.
    #[arg(
        long,
        env = "VOXANNE_WEBHOOKS_PER_MINUTE",
        default_value_t = 1200,
        global = true
    )]
    pub webhooks_per_minute: u32,
    /// Behind a reverse proxy: the header it puts the client's address in (e.g.
    /// `X-Forwarded-For`; its last value counts). Unset: the connection's peer address.
    #[arg(long, env = "VOXANNE_CLIENT_IP_HEADER", global = true)]
    pub client_ip_header: Option<String>,
    /// Where `serve` answers `GET /metrics` (Prometheus; totals over all clinics, so not on
    /// the API's address): loopback by default, `off` for nowhere.
    #[arg(
        long,
        env = "VOXANNE_METRICS_ADDR",
        default_value = "127.0.0.1:9464",
        global = true
    )]
    pub metrics_addr: String,
    /// What the application's pool connects through: `none` (directly, or a pooler in
    /// session mode) or `transaction` (a pooler in transaction mode, e.g. pgbouncer with
    /// pool_mode=transaction or Supabase's pooler on port 6543: no named prepared statements,
    /// every statement inside a transaction). Migrations (DATABASE_URL) always need a direct
    /// connection.
    #[arg(
        long,
        env = "VOXANNE_DB_POOLER",
        default_value = "none",
        value_parser = parse_pooler,
        global = true
    )]
    pub db_pooler: voxanne_db::Pooler,
    /// A request head (request line and headers) must arrive within this (408).
    #[arg(long, env = "VOXANNE_HTTP_HEAD_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub http_head_timeout: std::time::Duration,
    /// A request body must arrive within this (408).
    #[arg(long, env = "VOXANNE_HTTP_BODY_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration, global = true)]
    pub http_body_timeout: std::time::Duration,
    /// A keep-alive connection with no request for this long is closed.
    #[arg(long, env = "VOXANNE_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub http_idle_timeout: std::time::Duration,
    /// A whole request must be answered within this (503 `timeout`).
    #[arg(long, env = "VOXANNE_HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub http_request_timeout: std::time::Duration,
    /// Open connections at most; one more is answered 503.
    #[arg(
        long,
        env = "VOXANNE_HTTP_MAX_CONNECTIONS",
        default_value_t = 1024,
        global = true
    )]
    pub http_max_connections: usize,
    /// On SIGTERM, how long in-flight requests and background batches get to finish.
    #[arg(long, env = "VOXANNE_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub shutdown_grace: std::time::Duration,
}

fn parse_pooler(value: &str) -> Result<voxanne_db::Pooler, String> {
    value
        .parse()
        .map_err(|e: voxanne_db::UnknownPooler| e.to_string())
}

impl Config {
    /// How the application's pool is shared out between clinics.
    pub fn pool_settings(&self) -> voxanne_db::PoolSettings {
        voxanne_db::PoolSettings {
            org_max_in_flight: self.org_max_in_flight,
            org_wait: self.org_wait,
            pooler: self.db_pooler,
            ..voxanne_db::PoolSettings::new(self.db_max_connections)
        }
    }

    /// The operators' listener for `/metrics`, unless it is `off`.
    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.metrics_addr.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        self.metrics_addr.parse().map(Some).map_err(|_| {
            anyhow::anyhow!(
                "--metrics-addr must be an address (host:port) or `off`, not `{}`",
                self.metrics_addr
            )
        })
    }

    /// The rate limits (`voxanne_http::limits`).
    pub fn limits(&self) -> anyhow::Result<voxanne_http::limits::Limits> {
        anyhow::ensure!(
            self.auth_failures_per_minute >= 1 && self.webhooks_per_minute >= 1,
            "--auth-failures-per-minute and --webhooks-per-minute must be at least 1"
        );
        let mut limits = voxanne_http::limits::Limits::new(
            self.auth_failures_per_minute,
            self.webhooks_per_minute,
        );
        limits.client_ip_header = self
            .client_ip_header
            .as_deref()
            .map(|h| {
                h.parse::<axum::http::HeaderName>()
                    .map_err(|_| anyhow::anyhow!("--client-ip-header `{h}` is not a header name"))
            })
            .transpose()?;
        Ok(limits)
    }

    /// The application pool's pooler mode, checked: behind a transaction-mode pooler the
    /// application must log in through its own URL, because the migrations that run over
    /// DATABASE_URL hold a session (an advisory lock, `SET ROLE`) that such a pooler would
    /// split across server connections.
    pub fn db_pooler(&self) -> anyhow::Result<voxanne_db::Pooler> {
        if self.db_pooler == voxanne_db::Pooler::Transaction
            && self.database_url.is_some()
            && self.app_database_url.is_none()
        {
            anyhow::bail!(
                "VOXANNE_DB_POOLER=transaction needs VOXANNE_APP_DATABASE_URL (the pooler's \
                 address, as voxanne_app), with DATABASE_URL a direct connection for migrations"
            );
        }
        Ok(self.db_pooler)
    }

    /// The edge's limits (`voxanne_http::server`).
    pub fn server_config(&self) -> anyhow::Result<voxanne_http::ServerConfig> {
        anyhow::ensure!(
            self.http_max_connections >= 1,
            "--http-max-connections must be at least 1"
        );
        for (name, value) in [
            ("--http-head-timeout", self.http_head_timeout),
            ("--http-body-timeout", self.http_body_timeout),
            ("--http-idle-timeout", self.http_idle_timeout),
            ("--http-request-timeout", self.http_request_timeout),
        ] {
            anyhow::ensure!(!value.is_zero(), "{name} must be longer than zero");
        }
        Ok(voxanne_http::ServerConfig {
            head_timeout: self.http_head_timeout,
            body_timeout: self.http_body_timeout,
            idle_timeout: self.http_idle_timeout,
            request_timeout: self.http_request_timeout,
            max_connections: self.http_max_connections,
            shutdown_grace: self.shutdown_grace,
            ..voxanne_http::ServerConfig::default()
        })
    }

    /// The recording worker's settings, checked: a lease shorter than a download would let a
    /// second worker take over a job that is still running.
    pub fn worker_config(&self) -> anyhow::Result<voxanne_jobs::WorkerConfig> {
        anyhow::ensure!(self.worker_batch >= 1, "--worker-batch must be at least 1");
        anyhow::ensure!(
            self.worker_max_attempts >= 1,
            "--worker-max-attempts must be at least 1"
        );
        anyhow::ensure!(
            self.worker_lease > self.worker_http_timeout,
            "--worker-lease ({}) must be longer than --worker-http-timeout ({})",
            humantime::format_duration(self.worker_lease),
            humantime::format_duration(self.worker_http_timeout)
        );
        let defaults = voxanne_jobs::WorkerConfig::default();
        Ok(voxanne_jobs::WorkerConfig {
            schedule: voxanne_jobs::Schedule {
                batch: self.worker_batch,
                lease: self.worker_lease,
                max_attempts: self.worker_max_attempts,
                ..defaults.schedule
            },
            http_timeout: self.worker_http_timeout,
            allow_private_addresses: self.worker_allow_private_urls,
            twilio_media_hosts: voxanne_jobs::MediaHosts::parse(&self.twilio_media_hosts)
                .map_err(|e| anyhow::anyhow!("--twilio-media-hosts: {e}"))?,
            ..defaults
        })
    }

    /// The SMS sender's settings, checked: its batch is the recording worker's, and its lease
    /// must outlast a request to the provider.
    pub fn sms_config(&self) -> anyhow::Result<voxanne_jobs::SmsConfig> {
        anyhow::ensure!(self.worker_batch >= 1, "--worker-batch must be at least 1");
        anyhow::ensure!(
            self.sms_max_attempts >= 1,
            "--sms-max-attempts must be at least 1"
        );
        anyhow::ensure!(
            self.sms_lease > self.sms_http_timeout,
            "--sms-lease ({}) must be longer than --sms-http-timeout ({})",
            humantime::format_duration(self.sms_lease),
            humantime::format_duration(self.sms_http_timeout)
        );
        let http_url = |name: &str, value: &str| {
            url::Url::parse(value)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| anyhow::anyhow!("{name} must be an http(s) URL, not `{value}`"))
        };
        Ok(voxanne_jobs::SmsConfig {
            schedule: voxanne_jobs::Schedule {
                batch: self.worker_batch,
                lease: self.sms_lease,
                max_attempts: self.sms_max_attempts,
                backoff_base: self.sms_backoff_base,
                ..voxanne_jobs::SmsConfig::default().schedule
            },
            http_timeout: self.sms_http_timeout,
            api_url: http_url("--sms-api-url", &self.sms_api_url)?,
            public_url: self
                .public_url
                .as_deref()
                .map(|u| http_url("--public-url", u))
                .transpose()?,
        })
    }

    /// The calendar sync (`--calendar-*`): push notifications are asked for when
    /// `--public-url` is set.
    pub fn calendar_sync_config(&self) -> anyhow::Result<voxanne_jobs::CalendarSyncConfig> {
        let defaults = voxanne_jobs::CalendarSyncConfig::default();
        anyhow::ensure!(
            self.calendar_sync_interval >= std::time::Duration::from_secs(10),
            "--calendar-sync-interval must be at least 10s"
        );
        anyhow::ensure!(
            self.calendar_look_ahead >= std::time::Duration::from_secs(24 * 3600)
                && self.calendar_look_ahead <= std::time::Duration::from_secs(366 * 24 * 3600),
            "--calendar-look-ahead must be from 1 day to 366 days"
        );
        Ok(voxanne_jobs::CalendarSyncConfig {
            schedule: voxanne_jobs::Schedule {
                batch: self.worker_batch,
                ..defaults.schedule
            },
            interval: self.calendar_sync_interval,
            look_ahead: self.calendar_look_ahead,
            public_url: self
                .public_url
                .as_deref()
                .map(|u| {
                    url::Url::parse(u)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                        .ok_or_else(|| {
                            anyhow::anyhow!("--public-url must be an http(s) URL, not `{u}`")
                        })
                })
                .transpose()?,
            ..defaults
        })
    }

    /// Built-in accounts: mail by SMTP (`--smtp-url`) or the development outbox, links to
    /// `--public-url` (else `listening`), sessions and invitations of `--session-ttl` and
    /// `--invitation-ttl`; `demo_users` for demo mode's one-click sign-in.
    pub fn accounts(
        &self,
        listening: std::net::SocketAddr,
        demo_users: Vec<voxanne_http::accounts::DemoUser>,
    ) -> anyhow::Result<voxanne_http::accounts::AccountSettings> {
        let public_url = match self.public_url.as_deref() {
            Some(u) => url::Url::parse(u)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| anyhow::anyhow!("--public-url must be an http(s) URL, not `{u}`"))?,
            None => format!("http://{listening}").parse()?,
        };
        anyhow::ensure!(
            self.session_ttl >= std::time::Duration::from_secs(60),
            "--session-ttl must be at least 1m"
        );
        anyhow::ensure!(
            self.invitation_ttl >= std::time::Duration::from_secs(3600),
            "--invitation-ttl must be at least 1h"
        );
        let mut settings = voxanne_http::accounts::AccountSettings::development(public_url);
        settings.session_ttl = self.session_ttl;
        settings.invitation_ttl = self.invitation_ttl;
        settings.demo_users = demo_users;
        match self.smtp_url.as_deref() {
            Some(url) => {
                settings.mailer = voxanne_http::accounts::Mailer::smtp(url, &self.mail_from)
                    .map_err(|e| anyhow::anyhow!(e))?;
            }
            None => tracing::warn!(
                "VOXANNE_SMTP_URL is not set: the dashboard's mail (invitations, password \
                 resets) is printed in the log, not sent"
            ),
        }
        Ok(settings)
    }

    /// Where Vapi reaches this server (`--public-url`) and its REST API (`--vapi-api-url`).
    pub fn vapi(&self) -> anyhow::Result<voxanne_http::vapi::VapiSettings> {
        let http_url = |name: &str, value: &str| {
            url::Url::parse(value)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| anyhow::anyhow!("{name} must be an http(s) URL, not `{value}`"))
        };
        Ok(voxanne_http::vapi::VapiSettings::new(
            self.public_url
                .as_deref()
                .map(|u| http_url("--public-url", u))
                .transpose()?,
            http_url("--vapi-api-url", &self.vapi_api_url)?,
        ))
    }

    /// The calendar providers clinics link with OAuth 2.0 (`--google-*`, `--microsoft-*`).
    pub fn calendar(&self) -> anyhow::Result<voxanne_http::calendar_oauth::CalendarOAuth> {
        use voxanne_http::calendar_oauth::ProviderApp;
        let http_url = |name: &str, value: &str| {
            url::Url::parse(value)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| anyhow::anyhow!("{name} must be an http(s) URL, not `{value}`"))
        };
        let app = |provider: &str,
                   id: &Option<String>,
                   secret: &Option<SecretString>|
         -> anyhow::Result<Option<(String, SecretString)>> {
            match (
                id.as_deref().map(str::trim).filter(|s| !s.is_empty()),
                secret,
            ) {
                (None, _) => Ok(None),
                (Some(id), Some(secret)) => Ok(Some((id.to_owned(), secret.clone()))),
                (Some(_), None) => anyhow::bail!(
                    "VOXANNE_{provider}_CLIENT_ID is set without VOXANNE_{provider}_CLIENT_SECRET"
                ),
            }
        };
        let google = app("GOOGLE", &self.google_client_id, &self.google_client_secret)?
            .map(
                |(client_id, client_secret)| -> anyhow::Result<ProviderApp> {
                    Ok(ProviderApp {
                        client_id,
                        client_secret,
                        auth_url: http_url("--google-auth-url", &self.google_auth_url)?,
                        token_url: http_url("--google-token-url", &self.google_token_url)?,
                        account_url: http_url("--google-userinfo-url", &self.google_userinfo_url)?,
                        revoke_url: Some(http_url("--google-revoke-url", &self.google_revoke_url)?),
                        api_url: http_url("--google-api-url", &self.google_api_url)?,
                    })
                },
            )
            .transpose()?;
        let microsoft = app(
            "MICROSOFT",
            &self.microsoft_client_id,
            &self.microsoft_client_secret,
        )?
        .map(
            |(client_id, client_secret)| -> anyhow::Result<ProviderApp> {
                let authority = self.microsoft_authority.trim_end_matches('/');
                let graph = self.microsoft_graph_url.trim_end_matches('/');
                Ok(ProviderApp {
                    client_id,
                    client_secret,
                    auth_url: http_url(
                        "--microsoft-authority",
                        &format!("{authority}/oauth2/v2.0/authorize"),
                    )?,
                    token_url: http_url(
                        "--microsoft-authority",
                        &format!("{authority}/oauth2/v2.0/token"),
                    )?,
                    account_url: http_url("--microsoft-graph-url", &format!("{graph}/v1.0/me"))?,
                    // Microsoft has no endpoint that revokes a single token.
                    revoke_url: None,
                    api_url: http_url("--microsoft-graph-url", graph)?,
                })
            },
        )
        .transpose()?;
        Ok(voxanne_http::calendar_oauth::CalendarOAuth::new(
            self.public_url
                .as_deref()
                .map(|u| http_url("--public-url", u))
                .transpose()?,
            google,
            microsoft,
        ))
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.storage_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("objects"))
    }

    pub fn jwks(&self) -> Option<JwksSource> {
        self.jwks_url
            .clone()
            .map(JwksSource::Url)
            .or_else(|| self.jwks_file.clone().map(JwksSource::File))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "VOXANNE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Seed the two demo clinics (idempotent) and print their tokens and curl lines.
    #[arg(long)]
    pub demo: bool,
    /// Do not run the background jobs in this process (run `voxanne worker` instead).
    #[arg(long)]
    pub no_worker: bool,
}

#[cfg(test)]
mod tests {
    use super::Config;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn config(args: &[&str]) -> Config {
        Cli::try_parse_from(std::iter::once("voxanne").chain(args.iter().copied()))
            .expect("arguments")
            .config
    }

    #[test]
    fn the_sms_sender_defaults_to_twilio_without_status_callbacks() {
        let sms = config(&[]).sms_config().expect("defaults are valid");
        assert_eq!(sms.api_url.as_str(), "https://api.twilio.com/");
        assert_eq!(sms.status_callback(), None);
        assert_eq!(
            (
                sms.schedule.max_attempts,
                sms.http_timeout.as_secs(),
                sms.schedule.backoff_base.as_secs()
            ),
            (5, 15, 30)
        );
    }

    #[test]
    fn a_public_url_asks_for_status_callbacks_at_the_webhook() {
        let sms = config(&["--public-url", "https://voxanne.example.com/"])
            .sms_config()
            .expect("valid");
        assert_eq!(
            sms.status_callback().as_deref(),
            Some("https://voxanne.example.com/webhooks/sms/twilio/status")
        );
    }

    #[test]
    fn twilio_credentials_go_to_twilios_media_host_only_unless_configured() {
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        let hosts = config(&[])
            .worker_config()
            .expect("valid")
            .twilio_media_hosts;
        assert!(hosts.allows(&url("https://api.twilio.com/2010-04-01/x"), false));
        assert!(!hosts.allows(&url("https://storage.vapi.ai/x.wav"), false));
        let hosts = config(&[
            "--twilio-media-hosts",
            "api.twilio.com, api.dublin.ie1.twilio.com",
        ])
        .worker_config()
        .expect("valid")
        .twilio_media_hosts;
        assert!(hosts.allows(&url("https://api.dublin.ie1.twilio.com/x"), false));
        let error = config(&["--twilio-media-hosts", "https://api.twilio.com/"])
            .worker_config()
            .expect_err("refused")
            .to_string();
        assert!(error.contains("--twilio-media-hosts"), "{error}");
    }

    #[test]
    fn the_pool_connects_directly_unless_told_it_is_behind_a_transaction_pooler() {
        use voxanne_db::Pooler;
        assert_eq!(config(&[]).db_pooler().expect("valid"), Pooler::None);
        let behind = config(&[
            "--database-url",
            "postgres://postgres@db.example:5432/postgres",
            "--app-database-url",
            "postgres://voxanne_app@pooler.example:6543/postgres",
            "--db-pooler",
            "transaction",
        ]);
        assert_eq!(behind.db_pooler().expect("valid"), Pooler::Transaction);
        // The application's URL derived from DATABASE_URL would send migrations through
        // the pooler too.
        let error = config(&[
            "--database-url",
            "postgres://postgres@pooler.example:6543/postgres",
            "--db-pooler",
            "transaction",
        ])
        .db_pooler()
        .expect_err("refused")
        .to_string();
        assert!(error.contains("VOXANNE_APP_DATABASE_URL"), "{error}");
        let error = Cli::try_parse_from(["voxanne", "--db-pooler", "session"])
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("expected `none` or `transaction`"),
            "{error}"
        );
    }

    #[test]
    fn bad_sms_settings_are_refused_with_the_flag_named() {
        for (args, flag) in [
            (
                &["--sms-lease", "10s", "--sms-http-timeout", "10s"][..],
                "--sms-lease",
            ),
            (&["--sms-max-attempts", "0"][..], "--sms-max-attempts"),
            (&["--sms-api-url", "ftp://api.example"][..], "--sms-api-url"),
            (&["--public-url", "not a url"][..], "--public-url"),
        ] {
            let error = config(args).sms_config().expect_err("refused").to_string();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
    }
}
