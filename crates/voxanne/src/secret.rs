//! The HS256 secret: `VOXANNE_JWT_SECRET`, or in development a random one kept in the data dir
//! (so that `voxanne token` and `voxanne serve` agree); likewise the encryption key.

use crate::config::Config;
use anyhow::Context;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use voxanne_db::crypto::Keyring;

const SECRET_FILE: &str = "jwt-secret";

pub fn jwt_secret(config: &Config) -> anyhow::Result<SecretString> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.clone());
    }
    let path = config.data_dir.join(SECRET_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim();
        if !text.is_empty() {
            return Ok(SecretString::from(text.to_owned()));
        }
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    tracing::warn!(
        file = %path.display(),
        "VOXANNE_JWT_SECRET is not set: generated a development secret. Set VOXANNE_JWT_SECRET in production."
    );
    Ok(SecretString::from(secret))
}

const ENCRYPTION_KEY_FILE: &str = "encryption-key";

/// The key id of a generated development encryption key.
const DEV_KEY_ID: &str = "dev";

/// The keys that seal secrets at rest: `VOXANNE_ENCRYPTION_KEY` (and
/// `VOXANNE_ENCRYPTION_KEYS_OLD`), or in development a random key kept in the data dir.
pub fn encryption_keyring(config: &Config) -> anyhow::Result<Keyring> {
    let current = match &config.encryption_key {
        Some(key) => key.clone(),
        None => dev_encryption_key(config)?,
    };
    Keyring::from_config(&current, config.encryption_keys_old.as_ref())
        .context("loading the encryption keys")
}

fn dev_encryption_key(config: &Config) -> anyhow::Result<SecretString> {
    let path = config.data_dir.join(ENCRYPTION_KEY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim();
        if !text.is_empty() {
            return Ok(SecretString::from(text.to_owned()));
        }
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let key = Keyring::generate_key_text(DEV_KEY_ID);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(key.expose_secret().as_bytes())?;
    tracing::warn!(
        file = %path.display(),
        "VOXANNE_ENCRYPTION_KEY is not set: generated a development key. Set VOXANNE_ENCRYPTION_KEY in production, and keep it: without it the stored secrets cannot be read."
    );
    Ok(key)
}
