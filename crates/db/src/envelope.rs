//! Recordings encrypted per object (envelope encryption). Each object gets a random data key
//! of its own; the keyring encrypts that key for the place the object lives (its clinic and
//! its key in the store) into the object's header, and the audio follows in chunks encrypted
//! with the data key (the STREAM construction of the `aead` crate: AES-256-GCM, a counter and
//! a last-chunk flag in each nonce, so chunks cannot be reordered, dropped or cut off at the
//! end without the object failing to open).
//!
//! An object is
//!
//! ```text
//! "VXR1" | n: u8 | the data key encrypted by the keyring (n bytes, crypto::Keyring::seal_stored)
//!        | nonce prefix (7 bytes) | chunk | chunk | … | last chunk
//! ```
//!
//! where every chunk but the last holds [`CHUNK`] bytes of audio and its 16-byte tag, and the
//! last holds fewer (possibly none) and its tag. The audio's length therefore follows from the
//! object's size ([`plain_len`]), and encrypting or opening holds one chunk in memory whatever
//! the size of the recording.
//!
//! A key rotation only encrypts the data key again ([`Header::rewrap`]): the chunks are copied
//! as they are. An object without the header was stored before recordings were encrypted and
//! reads as it is, until the encryption job encrypts it.

use crate::crypto::{stored_key_id, CryptoError, Keyring};
use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{rand_core::RngCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key};
use secrecy::zeroize::Zeroizing;
use voxanne_domain::OrgId;

/// The first bytes of an encrypted object.
pub const MAGIC: [u8; 4] = *b"VXR1";
/// Audio bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const SEALED_CHUNK: usize = CHUNK + TAG;
/// The STREAM nonce prefix: AES-GCM's 12-byte nonce less the 4-byte counter and the flag.
const PREFIX: usize = 7;
const KEY_LEN: usize = 32;

/// The associated data of an object's data key: where the object lives.
pub fn aad(org: OrgId, key: &str) -> String {
    format!("recording|{org}|{key}")
}

/// The audio's length in an object whose chunks (everything after the header) take
/// `sealed` bytes; `None` when no object of this layout has that length.
pub fn plain_len(sealed: u64) -> Option<u64> {
    let (full, rest) = (sealed / SEALED_CHUNK as u64, sealed % SEALED_CHUNK as u64);
    (rest >= TAG as u64).then(|| full * CHUNK as u64 + rest - TAG as u64)
}

/// The size of the chunks of `plain` bytes of audio (the object less its header).
pub fn sealed_len(plain: u64) -> u64 {
    (plain / CHUNK as u64 + 1) * TAG as u64 + plain
}

/// Encrypts one object's audio, a chunk at a time.
pub struct Sealer {
    stream: EncryptorBE32<Aes256Gcm>,
    pending: Vec<u8>,
}

impl Sealer {
    /// A sealer for a new object at `key` of `org`, and the object's header, which goes
    /// first.
    pub fn new(keyring: &Keyring, org: OrgId, key: &str) -> Result<(Self, Vec<u8>), CryptoError> {
        let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(data_key.as_mut());
        let mut prefix = [0u8; PREFIX];
        OsRng.fill_bytes(&mut prefix);
        let header = header(
            keyring.seal_stored(data_key.as_ref(), &aad(org, key))?,
            prefix,
        )?;
        let stream = EncryptorBE32::from_aead(
            Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(data_key.as_ref())),
            (&prefix).into(),
        );
        Ok((
            Self {
                stream,
                pending: Vec::with_capacity(SEALED_CHUNK),
            },
            header,
        ))
    }

    /// Encrypts `input`, appending every chunk it completes to `out`.
    pub fn write(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        while !input.is_empty() {
            let take = (CHUNK - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() == CHUNK {
                self.stream
                    .encrypt_next_in_place(b"", &mut self.pending)
                    .map_err(|_| CryptoError::Seal)?;
                out.extend_from_slice(&self.pending);
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Encrypts the last chunk (shorter than [`CHUNK`], possibly empty) into `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.stream
            .encrypt_last_in_place(b"", &mut self.pending)
            .map_err(|_| CryptoError::Seal)?;
        out.extend_from_slice(&self.pending);
        Ok(())
    }
}

fn header(wrapped: Vec<u8>, prefix: [u8; PREFIX]) -> Result<Vec<u8>, CryptoError> {
    let len = u8::try_from(wrapped.len()).map_err(|_| CryptoError::Seal)?;
    let mut header = Vec::with_capacity(MAGIC.len() + 1 + wrapped.len() + PREFIX);
    header.extend_from_slice(&MAGIC);
    header.push(len);
    header.extend_from_slice(&wrapped);
    header.extend_from_slice(&prefix);
    Ok(header)
}

/// What an object's first bytes say it is.
#[derive(Debug)]
pub enum Parsed {
    /// Too few bytes to tell: read more (at the end of the object, it is [`Parsed::Plain`]).
    More,
    /// Stored before recordings were encrypted: the bytes are the audio.
    Plain,
    /// Encrypted, with this header.
    Sealed(Header),
}

/// The header of an encrypted object.
#[derive(Debug, Clone)]
pub struct Header {
    wrapped: Vec<u8>,
    prefix: [u8; PREFIX],
}

impl Header {
    /// Parses the header from an object's first bytes (any number of them).
    pub fn parse(first: &[u8]) -> Parsed {
        let shown = first.len().min(MAGIC.len());
        if first[..shown] != MAGIC[..shown] {
            return Parsed::Plain;
        }
        let Some(&len) = first.get(MAGIC.len()) else {
            return Parsed::More;
        };
        let start = MAGIC.len() + 1;
        let end = start + usize::from(len);
        let Some(prefix) = first.get(end..end + PREFIX) else {
            return Parsed::More;
        };
        Parsed::Sealed(Header {
            wrapped: first[start..end].to_vec(),
            prefix: prefix.try_into().unwrap_or_default(),
        })
    }

    /// The header of a whole object, or `None` when it was stored before recordings were
    /// encrypted. An object that starts like an encrypted one but ends inside its header is
    /// damaged.
    pub fn of_object(object: &[u8]) -> Result<Option<Header>, CryptoError> {
        match Header::parse(object) {
            Parsed::Plain => Ok(None),
            Parsed::More if object.len() < MAGIC.len() => Ok(None),
            Parsed::More => Err(CryptoError::Undecryptable),
            Parsed::Sealed(header) => Ok(Some(header)),
        }
    }

    /// Its length in bytes: the chunks start there.
    pub fn len(&self) -> usize {
        MAGIC.len() + 1 + self.wrapped.len() + PREFIX
    }

    /// Never: a header holds at least the magic bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The id of the keyring's key that encrypted the data key (`None`: damaged).
    pub fn key_id(&self) -> Option<&str> {
        stored_key_id(&self.wrapped)
    }

    /// An opener of the chunks, when the object is `org`'s at `key`. A header moved from
    /// another object, another clinic or damaged is [`CryptoError::Undecryptable`].
    pub fn open(&self, keyring: &Keyring, org: OrgId, key: &str) -> Result<Opener, CryptoError> {
        let data_key = keyring.open_stored(&self.wrapped, &aad(org, key))?;
        if data_key.len() != KEY_LEN || self.wrapped.first() != Some(&1) {
            return Err(CryptoError::Undecryptable);
        }
        Ok(Opener {
            stream: Some(DecryptorBE32::from_aead(
                Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key)),
                (&self.prefix).into(),
            )),
            pending: Vec::with_capacity(SEALED_CHUNK),
        })
    }

    /// The same header with the data key encrypted by the keyring's current key (after a
    /// rotation); the chunks stay as they are.
    pub fn rewrap(&self, keyring: &Keyring, org: OrgId, key: &str) -> Result<Vec<u8>, CryptoError> {
        let aad = aad(org, key);
        let data_key = keyring.open_stored(&self.wrapped, &aad)?;
        if data_key.len() != KEY_LEN || self.wrapped.first() != Some(&1) {
            return Err(CryptoError::Undecryptable);
        }
        header(keyring.seal_stored(&data_key, &aad)?, self.prefix)
    }
}

/// Opens one object's chunks, a chunk at a time.
pub struct Opener {
    /// `None` once a chunk failed: nothing more is opened.
    stream: Option<DecryptorBE32<Aes256Gcm>>,
    pending: Vec<u8>,
}

impl Opener {
    /// Opens `input` (the bytes after the header, in order), appending the audio of every
    /// chunk it completes to `out`.
    pub fn write(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        while !input.is_empty() {
            let take = (SEALED_CHUNK - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            // A full chunk is never the last one (the last is shorter).
            if self.pending.len() == SEALED_CHUNK {
                let stream = self.stream.as_mut().ok_or(CryptoError::Undecryptable)?;
                if stream
                    .decrypt_next_in_place(b"", &mut self.pending)
                    .is_err()
                {
                    self.stream = None;
                    return Err(CryptoError::Undecryptable);
                }
                out.extend_from_slice(&self.pending);
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Opens the last chunk into `out`: an object cut short or extended fails here.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let stream = self.stream.take().ok_or(CryptoError::Undecryptable)?;
        stream
            .decrypt_last_in_place(b"", &mut self.pending)
            .map_err(|_| CryptoError::Undecryptable)?;
        out.extend_from_slice(&self.pending);
        Ok(())
    }
}

/// `audio` encrypted as a whole object for `org`'s `key` (tests, small objects).
pub fn seal_object(
    keyring: &Keyring,
    org: OrgId,
    key: &str,
    audio: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (mut sealer, mut out) = Sealer::new(keyring, org, key)?;
    sealer.write(audio, &mut out)?;
    sealer.finish(&mut out)?;
    Ok(out)
}

/// A whole object's audio: opened when it is encrypted, as it is when it was stored before
/// recordings were (tests, small objects).
pub fn open_object(
    keyring: &Keyring,
    org: OrgId,
    key: &str,
    object: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    match Header::of_object(object)? {
        None => Ok(object.to_vec()),
        Some(header) => {
            let mut opener = header.open(keyring, org, key)?;
            let mut out = Vec::with_capacity(object.len());
            opener.write(&object[header.len()..], &mut out)?;
            opener.finish(&mut out)?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use secrecy::SecretString;

    fn ring(current: (&str, u8), old: Option<(&str, u8)>) -> Keyring {
        let text = |(id, byte): (&str, u8)| {
            format!(
                "{id}:{}",
                base64::engine::general_purpose::STANDARD.encode([byte; 32])
            )
        };
        Keyring::from_config(
            &SecretString::from(text(current)),
            old.map(|o| SecretString::from(text(o))).as_ref(),
        )
        .expect("keyring")
    }

    fn org(n: u128) -> OrgId {
        OrgId::from_uuid(uuid::Uuid::from_u128(n))
    }

    const KEY: &str = "org/recordings/call.wav";

    #[test]
    fn every_length_opens_back_and_its_size_says_its_length() {
        let r = ring(("k1", 1), None);
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 77] {
            let audio: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let object = seal_object(&r, org(1), KEY, &audio).expect("seal");
            let Parsed::Sealed(header) = Header::parse(&object) else {
                panic!("no header")
            };
            let sealed = (object.len() - header.len()) as u64;
            assert_eq!(sealed, sealed_len(len as u64), "{len}");
            assert_eq!(plain_len(sealed), Some(len as u64), "{len}");
            assert_eq!(header.key_id(), Some("k1"));
            assert_eq!(open_object(&r, org(1), KEY, &object).expect("open"), audio);
            if len >= 8 {
                assert!(!object.windows(8).any(|w| w == &audio[..8]), "{len}");
            }
        }
    }

    #[test]
    fn written_in_any_pieces_it_is_the_same_stream() {
        let r = ring(("k1", 1), None);
        let audio: Vec<u8> = (0..2 * CHUNK + 5).map(|i| (i % 7) as u8).collect();
        let (mut sealer, mut object) = Sealer::new(&r, org(1), KEY).expect("sealer");
        for piece in audio.chunks(1000) {
            sealer.write(piece, &mut object).expect("write");
        }
        sealer.finish(&mut object).expect("finish");
        let Parsed::Sealed(header) = Header::parse(&object[..header_probe(&object)]) else {
            panic!("no header")
        };
        let mut opener = header.open(&r, org(1), KEY).expect("opener");
        let mut out = Vec::new();
        for piece in object[header.len()..].chunks(777) {
            opener.write(piece, &mut out).expect("write");
        }
        opener.finish(&mut out).expect("finish");
        assert_eq!(out, audio);
    }

    /// The header's length, read byte by byte as a stream would deliver it.
    fn header_probe(object: &[u8]) -> usize {
        (0..object.len())
            .find(|&n| matches!(Header::parse(&object[..n]), Parsed::Sealed(_)))
            .expect("a header")
    }

    #[test]
    fn moved_damaged_reordered_or_cut_objects_do_not_open() {
        let r = ring(("k1", 1), None);
        let audio: Vec<u8> = (0..3 * CHUNK + 10).map(|i| (i % 13) as u8).collect();
        let object = seal_object(&r, org(1), KEY, &audio).expect("seal");
        // Another clinic, another key in the store, another keyring.
        assert!(open_object(&r, org(2), KEY, &object).is_err());
        assert!(open_object(&r, org(1), "org/recordings/other.wav", &object).is_err());
        assert!(open_object(&ring(("k1", 9), None), org(1), KEY, &object).is_err());
        let Parsed::Sealed(header) = Header::parse(&object) else {
            panic!("no header")
        };
        let body = header.len();
        // A flipped bit anywhere in the chunks.
        for at in [body, body + SEALED_CHUNK + 3, object.len() - 1] {
            let mut bad = object.clone();
            bad[at] ^= 1;
            assert!(open_object(&r, org(1), KEY, &bad).is_err(), "{at}");
        }
        // Cut at a chunk boundary, cut inside a chunk, a chunk dropped, two chunks swapped.
        for bad in [
            object[..body + SEALED_CHUNK].to_vec(),
            object[..object.len() - 5].to_vec(),
            [&object[..body], &object[body + SEALED_CHUNK..]].concat(),
            [
                &object[..body],
                &object[body + SEALED_CHUNK..body + 2 * SEALED_CHUNK],
                &object[body..body + SEALED_CHUNK],
                &object[body + 2 * SEALED_CHUNK..],
            ]
            .concat(),
        ] {
            assert!(open_object(&r, org(1), KEY, &bad).is_err(), "{}", bad.len());
        }
        // A second object's header over this one's chunks.
        let other = seal_object(&r, org(1), KEY, &audio).expect("seal");
        let spliced = [&other[..body], &object[body..]].concat();
        assert!(open_object(&r, org(1), KEY, &spliced).is_err());
    }

    #[test]
    fn a_rotation_rewraps_the_key_and_keeps_the_chunks() {
        let before = ring(("k1", 1), None);
        let audio = vec![42u8; CHUNK + 9];
        let object = seal_object(&before, org(1), KEY, &audio).expect("seal");
        let after = ring(("k2", 2), Some(("k1", 1)));
        let Parsed::Sealed(header) = Header::parse(&object) else {
            panic!("no header")
        };
        let rewrapped = [
            header.rewrap(&after, org(1), KEY).expect("rewrap"),
            object[header.len()..].to_vec(),
        ]
        .concat();
        let only_new = ring(("k2", 2), None);
        assert_eq!(
            open_object(&only_new, org(1), KEY, &rewrapped).expect("open"),
            audio
        );
        let Parsed::Sealed(new_header) = Header::parse(&rewrapped) else {
            panic!("no header")
        };
        assert_eq!(new_header.key_id(), Some("k2"));
        assert!(header.rewrap(&after, org(2), KEY).is_err());
    }

    #[test]
    fn objects_without_the_header_read_as_they_are() {
        let r = ring(("k1", 1), None);
        for plain in [&b""[..], b"VX", b"RIFF....WAVEfmt ", b"ID3\x03"] {
            assert_eq!(open_object(&r, org(1), KEY, plain).expect("plain"), plain);
        }
        assert!(matches!(Header::parse(b"VXR"), Parsed::More));
        assert!(matches!(Header::parse(b"VXR1\x50"), Parsed::More));
        // A damaged header is refused, never a panic.
        assert!(open_object(&r, org(1), KEY, b"VXR1\x50abc").is_err());
        assert!(open_object(&r, org(1), KEY, b"VXR1\x00abcdefg").is_err());
        assert!(open_object(&r, org(1), KEY, b"VXR1\x03\x00abcdefghij").is_err());
    }
}
