//! Encryption at rest for the secrets that tenant rows hold (calendar tokens, provider
//! credentials): AES-256-GCM, a random 96-bit nonce per value, stored as `nonce || ciphertext`
//! next to the id of the key that sealed it, so keys can be rotated: new values are sealed
//! with the current key, old values stay readable while their key is in the old-keys list.
//!
//! Every value is sealed with associated data naming where it lives (table, column, org,
//! row), so a ciphertext copied into another row or another clinic does not decrypt.
//!
//! Keys are secret types: neither a key nor a plaintext reaches a `Debug` or a log.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use std::fmt;

const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
/// The first byte of a stored patient text (migrations/0033): plaintext written before
/// values were sealed (the encryption job seals it), or a sealed value.
const STORED_PLAIN: u8 = 0;
const STORED_SEALED: u8 = 1;
/// The key id of a `VOXANNE_ENCRYPTION_KEY` given without one.
pub const DEFAULT_KEY_ID: &str = "k1";

/// A sealed value: what goes into a `*_enc` column and its `key_id` column.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    /// `nonce || ciphertext` (the ciphertext ends with the 16-byte tag).
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Why a key could not be loaded. Never carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{source_name}: key id `{id}` must be 1 to 32 letters, digits, `-`, `_` or `.`")]
    BadId { source_name: String, id: String },
    #[error("{source_name}: the key is not base64")]
    NotBase64 { source_name: String },
    #[error("{source_name}: the key must be 32 bytes (base64 of 32 random bytes), got {len}")]
    WrongLength { source_name: String, len: usize },
    #[error("{source_name}: expected `keyid:base64`")]
    MissingId { source_name: String },
    #[error("key id `{0}` is given more than once")]
    DuplicateId(String),
}

/// Why a value could not be opened. Deliberately vague: a wrong key, a damaged value and a
/// value moved from another row all look the same.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("no encryption key with id `{0}` is configured")]
    UnknownKey(String),
    #[error("the value cannot be decrypted (damaged, or not sealed for this place)")]
    Undecryptable,
    #[error("encryption failed")]
    Seal,
    #[error("no keyring is configured to seal or open patient data")]
    NoKeyring,
}

struct DataKey {
    id: String,
    key: SecretBox<[u8; KEY_LEN]>,
    /// The key's expanded schedule, made once: a list page opens a value per row.
    cipher: Aes256Gcm,
}

impl DataKey {
    fn new(id: &str, key: [u8; KEY_LEN]) -> Self {
        Self {
            id: id.to_owned(),
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
            key: SecretBox::new(Box::new(key)),
        }
    }

    fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }
}

/// The current key (seals everything new) and older keys (still open what they sealed).
pub struct Keyring {
    current: DataKey,
    old: Vec<DataKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "old",
                &self.old.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `keyid:base64` or (when `default_id` is given) bare `base64`.
fn parse_key(text: &str, default_id: Option<&str>, source: &str) -> Result<DataKey, KeyError> {
    let source_name = source.to_owned();
    let text = text.trim();
    let (id, encoded) = match text.split_once(':') {
        Some((id, encoded)) => (id.trim(), encoded.trim()),
        None => match default_id {
            Some(id) => (id, text),
            None => return Err(KeyError::MissingId { source_name }),
        },
    };
    if !valid_id(id) {
        return Err(KeyError::BadId {
            source_name,
            id: id.to_owned(),
        });
    }
    let bytes = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| KeyError::NotBase64 {
        source_name: source_name.clone(),
    })?);
    let key: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::WrongLength {
            source_name,
            len: bytes.len(),
        })?;
    Ok(DataKey::new(id, key))
}

impl Keyring {
    /// From `VOXANNE_ENCRYPTION_KEY` (`base64` or `keyid:base64`) and, optionally,
    /// `VOXANNE_ENCRYPTION_KEYS_OLD` (comma-separated `keyid:base64`).
    pub fn from_config(
        current: &SecretString,
        old: Option<&SecretString>,
    ) -> Result<Self, KeyError> {
        let current = parse_key(
            current.expose_secret(),
            Some(DEFAULT_KEY_ID),
            "VOXANNE_ENCRYPTION_KEY",
        )?;
        let mut ring = Keyring {
            current,
            old: Vec::new(),
        };
        for text in old
            .map(|o| o.expose_secret().split(',').collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if text.trim().is_empty() {
                continue;
            }
            let key = parse_key(text, None, "VOXANNE_ENCRYPTION_KEYS_OLD")?;
            if key.id == ring.current.id || ring.old.iter().any(|k| k.id == key.id) {
                return Err(KeyError::DuplicateId(key.id));
            }
            ring.old.push(key);
        }
        Ok(ring)
    }

    /// A fresh random key as `keyid:base64` (for a development key file).
    pub fn generate_key_text(id: &str) -> SecretString {
        let key = Aes256Gcm::generate_key(OsRng);
        SecretString::from(format!("{id}:{}", STANDARD.encode(key.as_slice())))
    }

    /// The id of the key that seals new values.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext` with the current key; `aad` names where the value will live.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Result<Sealed, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .current
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_id: self.current.id.clone(),
            bytes,
        })
    }

    /// Opens a value sealed under `key_id` for `aad`. A damaged value, a wrong key or a value
    /// moved from another place is an error, never a panic.
    pub fn open(
        &self,
        key_id: &str,
        bytes: &[u8],
        aad: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Undecryptable);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        key.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Undecryptable)
    }

    /// `plaintext` sealed for `aad` as one self-describing value, for a column that holds
    /// patient text: the byte 1, the key id's length and the key id, then `nonce ||
    /// ciphertext`. Each value names its own key, so a row's columns may be sealed at
    /// different times and a rotation finds the old ones ([`stored_key_id`]).
    pub fn seal_stored(&self, plaintext: &[u8], aad: &str) -> Result<Vec<u8>, CryptoError> {
        let sealed = self.seal(plaintext, aad)?;
        let id = sealed.key_id.as_bytes();
        let id_len = u8::try_from(id.len()).map_err(|_| CryptoError::Seal)?;
        let mut stored = Vec::with_capacity(2 + id.len() + sealed.bytes.len());
        stored.push(STORED_SEALED);
        stored.push(id_len);
        stored.extend_from_slice(id);
        stored.extend_from_slice(&sealed.bytes);
        Ok(stored)
    }

    /// Opens a value of [`Keyring::seal_stored`]'s form, or returns the plaintext of one
    /// written before values were sealed. Anything else is [`CryptoError::Undecryptable`].
    pub fn open_stored(&self, stored: &[u8], aad: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match stored.split_first() {
            Some((&STORED_PLAIN, plain)) => Ok(Zeroizing::new(plain.to_vec())),
            Some((&STORED_SEALED, _)) => {
                let (id, bytes) = split_stored(stored).ok_or(CryptoError::Undecryptable)?;
                self.open(id, bytes, aad)
            }
            _ => Err(CryptoError::Undecryptable),
        }
    }

    /// Whether a stored value needs sealing again: plaintext of an older version (not the
    /// empty text a purge leaves), or a value sealed with a key other than the current one.
    pub fn needs_resealing(&self, stored: &[u8]) -> bool {
        match stored {
            [] | [STORED_PLAIN] => false,
            [STORED_PLAIN, ..] => true,
            _ => stored_key_id(stored) != Some(self.current_key_id()),
        }
    }

    /// A key for `purpose` (e.g. signing OAuth states), derived from the current key:
    /// HMAC-SHA256 keyed with it over the purpose, so it is never the data key itself and each
    /// purpose gets its own. Changes when the current key is rotated.
    pub fn derive_key(&self, purpose: &str) -> SecretBox<[u8; KEY_LEN]> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.current.key.expose_secret())
            .expect("HMAC takes a key of any length");
        mac.update(b"voxanne derived key|");
        mac.update(purpose.as_bytes());
        SecretBox::new(Box::new(mac.finalize().into_bytes().into()))
    }
}

/// The key id and `nonce || ciphertext` of a sealed stored value.
fn split_stored(stored: &[u8]) -> Option<(&str, &[u8])> {
    let (&tag, rest) = stored.split_first()?;
    let (&id_len, rest) = rest.split_first()?;
    if tag != STORED_SEALED || rest.len() < usize::from(id_len) {
        return None;
    }
    let (id, bytes) = rest.split_at(usize::from(id_len));
    Some((std::str::from_utf8(id).ok()?, bytes))
}

/// The id of the key that sealed a stored value; `None` for plaintext (or a damaged value).
pub fn stored_key_id(stored: &[u8]) -> Option<&str> {
    split_stored(stored).map(|(id, _)| id)
}

/// How a text written before values were sealed is stored (and the empty text a purge
/// leaves): the byte 0, then the UTF-8 text.
pub fn stored_plain(text: &str) -> Vec<u8> {
    let mut stored = Vec::with_capacity(1 + text.len());
    stored.push(STORED_PLAIN);
    stored.extend_from_slice(text.as_bytes());
    stored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> String {
        format!("{id}:{}", STANDARD.encode([byte; 32]))
    }

    fn ring(current: &str, old: Option<&str>) -> Keyring {
        Keyring::from_config(
            &SecretString::from(current),
            old.map(SecretString::from).as_ref(),
        )
        .expect("keyring")
    }

    #[test]
    fn a_sealed_value_opens_back_and_holds_no_plaintext() {
        let r = ring(&key("k1", 7), None);
        let sealed = r
            .seal(b"ya29.a-google-access-token", "t.c|org|row")
            .expect("seal");
        assert_eq!(sealed.key_id, "k1");
        assert_eq!(sealed.bytes.len(), 12 + 26 + 16);
        assert!(!sealed
            .bytes
            .windows(5)
            .any(|w| w == b"ya29." || w == b"googl"));
        let opened = r.open("k1", &sealed.bytes, "t.c|org|row").expect("open");
        assert_eq!(opened.as_slice(), b"ya29.a-google-access-token");
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let r = ring(&key("k1", 7), None);
        let a = r.seal(b"same", "aad").expect("seal");
        let b = r.seal(b"same", "aad").expect("seal");
        assert_ne!(a.bytes, b.bytes);
        assert_ne!(a.bytes[..12], b.bytes[..12]);
    }

    #[test]
    fn a_bare_key_gets_the_default_id_and_old_keys_need_one() {
        let bare = STANDARD.encode([1u8; 32]);
        assert_eq!(ring(&bare, None).current_key_id(), DEFAULT_KEY_ID);
        assert_eq!(
            Keyring::from_config(
                &SecretString::from(key("k2", 2)),
                Some(&SecretString::from(bare))
            )
            .map(|_| ()),
            Err(KeyError::MissingId {
                source_name: "VOXANNE_ENCRYPTION_KEYS_OLD".into()
            })
        );
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        for bad in [
            "k1:not base64!".to_owned(),
            format!("k1:{}", STANDARD.encode([1u8; 16])),
            format!("bad id:{}", STANDARD.encode([1u8; 32])),
            String::new(),
        ] {
            let err = Keyring::from_config(&SecretString::from(bad.clone()), None)
                .map(|_| ())
                .expect_err(&bad);
            let shown = err.to_string();
            if let Some((_, material)) = bad.split_once(':') {
                assert!(!shown.contains(material), "{shown}");
            }
        }
        let dup = Keyring::from_config(
            &SecretString::from(key("k1", 1)),
            Some(&SecretString::from(key("k1", 2))),
        );
        assert_eq!(dup.map(|_| ()), Err(KeyError::DuplicateId("k1".into())));
    }

    #[test]
    fn after_rotation_old_values_open_with_the_old_key_and_new_ones_use_the_new_key() {
        let before = ring(&key("k1", 1), None);
        let sealed_before = before.seal(b"secret", "aad").expect("seal");

        let after = ring(&key("k2", 2), Some(&key("k1", 1)));
        assert_eq!(
            after
                .open("k1", &sealed_before.bytes, "aad")
                .expect("old key")
                .as_slice(),
            b"secret"
        );
        assert_eq!(after.seal(b"secret", "aad").expect("seal").key_id, "k2");

        let forgot_old = ring(&key("k2", 2), None);
        assert_eq!(
            forgot_old.open("k1", &sealed_before.bytes, "aad"),
            Err(CryptoError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn tampering_a_wrong_key_or_another_place_fails_cleanly() {
        let r = ring(&key("k1", 1), None);
        let sealed = r.seal(b"secret", "here").expect("seal");
        for i in [0, 12, sealed.bytes.len() - 1] {
            let mut bytes = sealed.bytes.clone();
            bytes[i] ^= 0x01;
            assert_eq!(
                r.open("k1", &bytes, "here"),
                Err(CryptoError::Undecryptable),
                "{i}"
            );
        }
        assert_eq!(
            r.open("k1", &sealed.bytes[..5], "here"),
            Err(CryptoError::Undecryptable)
        );
        assert_eq!(r.open("k1", &[], "here"), Err(CryptoError::Undecryptable));
        assert_eq!(
            r.open("k1", &sealed.bytes, "elsewhere"),
            Err(CryptoError::Undecryptable)
        );
        let other = ring(&key("k1", 9), None);
        assert_eq!(
            other.open("k1", &sealed.bytes, "here"),
            Err(CryptoError::Undecryptable)
        );
    }

    #[test]
    fn a_stored_value_names_its_key_and_opens_back_only_where_it_was_sealed() {
        let r = ring(&key("k1", 1), None);
        let stored = r
            .seal_stored(b"knee pain since May", "calls.transcript|o|r")
            .expect("seal");
        assert_eq!(&stored[..4], b"\x01\x02k1");
        assert_eq!(stored_key_id(&stored), Some("k1"));
        assert!(!stored.windows(4).any(|w| w == b"knee" || w == b"pain"));
        assert_eq!(
            r.open_stored(&stored, "calls.transcript|o|r")
                .expect("open")
                .as_slice(),
            b"knee pain since May"
        );
        assert_eq!(
            r.open_stored(&stored, "calls.transcript|other|r"),
            Err(CryptoError::Undecryptable)
        );
        assert!(!r.needs_resealing(&stored));

        // Plaintext of an older version opens as it is and needs sealing; the purged empty
        // text does not.
        let plain = stored_plain("knee pain");
        assert_eq!(
            r.open_stored(&plain, "any").expect("plain").as_slice(),
            b"knee pain"
        );
        assert!(r.needs_resealing(&plain));
        assert!(!r.needs_resealing(&stored_plain("")));

        // After a rotation the value opens with the old key and needs sealing again.
        let rotated = ring(&key("k2", 2), Some(&key("k1", 1)));
        assert!(rotated.needs_resealing(&stored));
        assert_eq!(
            rotated
                .open_stored(&stored, "calls.transcript|o|r")
                .expect("old key")
                .as_slice(),
            b"knee pain since May"
        );

        // Damaged or foreign values are refused, never a panic.
        for bad in [
            &b""[..],
            b"\x02abc",
            b"\x01",
            b"\x01\x09k1",
            b"\x01\x02k1short",
        ] {
            assert!(
                r.open_stored(bad, "calls.transcript|o|r").is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let r = ring(&key("k2", 2), Some(&key("k1", 1)));
        let shown = format!("{r:?}");
        assert!(shown.contains("k2") && shown.contains("k1"));
        assert!(!shown.contains(&STANDARD.encode([2u8; 32])));
    }
}
