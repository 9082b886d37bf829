//! Recordings in object storage, encrypted per object (`voxanne_db::envelope`): writing one
//! as it arrives (one PUT, or a multipart upload once it outgrows a part), reading one back
//! as audio, and encrypting again one stored before recordings were encrypted or under a key
//! since rotated. Each holds a chunk or two in memory whatever the size of the recording.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayloadMut, WriteMultipart};
use std::sync::Arc;
use voxanne_db::crypto::{CryptoError, Keyring};
use voxanne_db::envelope::{self, Header, Opener, Parsed, Sealer};
use voxanne_domain::OrgId;

/// Part size of a multipart upload: S3's minimum for every part but the last. An object that
/// ends within the first part is stored with a single PUT.
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once: one uploads while the next one fills, so an upload holds at most
/// about two parts in memory whatever its size.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Store(#[from] object_store::Error),
    #[error("the recording cannot be decrypted: {0}")]
    Crypto(#[from] CryptoError),
}

impl ObjectError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Store(object_store::Error::NotFound { .. }))
    }
}

/// An object being written: kept in memory until it outgrows one part, then a multipart
/// upload. Nothing appears at the path until [`Upload::finish`].
pub struct Upload<'a> {
    store: &'a dyn ObjectStore,
    path: &'a Path,
    first: PutPayloadMut,
    multipart: Option<WriteMultipart>,
}

impl<'a> Upload<'a> {
    pub fn new(store: &'a dyn ObjectStore, path: &'a Path) -> Self {
        Self {
            store,
            path,
            first: PutPayloadMut::new().with_block_size(64 * 1024),
            multipart: None,
        }
    }

    /// Appends `bytes`, waiting while the store is behind (back pressure).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), object_store::Error> {
        if let Some(upload) = &mut self.multipart {
            upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            // Copied, not pushed: a pushed buffer would pin the caller's whole read buffer.
            upload.write(bytes);
            return Ok(());
        }
        self.first.extend_from_slice(bytes);
        if self.first.content_length() >= PART_BYTES {
            let multipart = self.store.put_multipart(self.path).await?;
            let mut upload = WriteMultipart::new_with_chunk_size(multipart, PART_BYTES);
            for block in std::mem::take(&mut self.first).freeze().iter() {
                upload.put(block.clone());
            }
            self.multipart = Some(upload);
        }
        Ok(())
    }

    /// Stores the object.
    pub async fn finish(self) -> Result<(), object_store::Error> {
        match self.multipart {
            None => self
                .store
                .put(self.path, self.first.freeze())
                .await
                .map(|_| ()),
            // `finish` aborts the upload itself when a part or the completion fails.
            Some(upload) => upload.finish().await.map(|_| ()),
        }
    }

    /// Gives up: no object appears, and no part is left behind.
    pub async fn abort(self) {
        if let Some(upload) = self.multipart {
            if let Err(e) = upload.abort().await {
                tracing::warn!(path = %self.path, error = %e, "aborting a recording upload failed; the orphan sweep will not see its parts");
            }
        }
    }
}

/// A new object at `path`, `org`'s, encrypted as it is written.
pub struct SealedUpload<'a> {
    upload: Upload<'a>,
    sealer: Sealer,
    out: Vec<u8>,
}

impl<'a> SealedUpload<'a> {
    pub async fn new(
        store: &'a dyn ObjectStore,
        path: &'a Path,
        keyring: &Keyring,
        org: OrgId,
    ) -> Result<Self, ObjectError> {
        let (sealer, header) = Sealer::new(keyring, org, path.as_ref())?;
        let mut upload = Upload::new(store, path);
        upload.write(&header).await?;
        Ok(Self {
            upload,
            sealer,
            out: Vec::with_capacity(2 * envelope::CHUNK),
        })
    }

    /// Appends audio.
    pub async fn write(&mut self, audio: &[u8]) -> Result<(), ObjectError> {
        self.out.clear();
        self.sealer.write(audio, &mut self.out)?;
        if !self.out.is_empty() {
            self.upload.write(&self.out).await?;
        }
        Ok(())
    }

    /// Encrypts the last chunk and stores the object.
    pub async fn finish(mut self) -> Result<(), ObjectError> {
        self.out.clear();
        if let Err(e) = self.sealer.finish(&mut self.out) {
            self.upload.abort().await;
            return Err(e.into());
        }
        self.upload.write(&self.out).await?;
        self.upload.finish().await?;
        Ok(())
    }

    pub async fn abort(self) {
        self.upload.abort().await;
    }
}

/// An object's audio as it streams from storage.
pub struct Audio {
    /// Its length (what a `Content-Length` says).
    pub len: u64,
    /// Whether it was stored encrypted (else: before recordings were).
    pub encrypted: bool,
    pub chunks: BoxStream<'static, Result<Bytes, ObjectError>>,
}

type Chunks = BoxStream<'static, object_store::Result<Bytes>>;

/// The object's first bytes, until its header is complete or it is known to have none.
async fn header(chunks: &mut Chunks) -> Result<(Vec<u8>, Option<Header>), ObjectError> {
    let mut first = Vec::new();
    loop {
        match Header::parse(&first) {
            Parsed::Plain => return Ok((first, None)),
            Parsed::Sealed(header) => return Ok((first, Some(header))),
            Parsed::More => match chunks.next().await {
                Some(chunk) => first.extend_from_slice(&chunk?),
                None => {
                    let header = Header::of_object(&first)?;
                    return Ok((first, header));
                }
            },
        }
    }
}

/// Opens `org`'s object at `key` for reading its audio. The header is checked before this
/// returns (an object moved from elsewhere, or damaged at its start, fails here); a chunk
/// damaged further on ends the stream with an error.
pub async fn read(
    store: &dyn ObjectStore,
    keyring: Arc<Keyring>,
    org: OrgId,
    key: &str,
) -> Result<Audio, ObjectError> {
    let path = Path::parse(key).map_err(object_store::Error::from)?;
    let object = store.get(&path).await?;
    let size = object.meta.size;
    let mut chunks: Chunks = object.into_stream();
    let (first, header) = header(&mut chunks).await?;
    let Some(header) = header else {
        let first = futures_util::stream::iter((!first.is_empty()).then(|| Ok(first.into())));
        return Ok(Audio {
            len: size,
            encrypted: false,
            chunks: first.chain(chunks.map(|c| c.map_err(Into::into))).boxed(),
        });
    };
    let len = size
        .checked_sub(header.len() as u64)
        .and_then(envelope::plain_len)
        .ok_or(CryptoError::Undecryptable)?;
    let opener = header.open(&keyring, org, key)?;
    let state = Opening {
        chunks,
        opener: Some(opener),
        carry: Some(first[header.len()..].to_vec()),
    };
    Ok(Audio {
        len,
        encrypted: true,
        chunks: futures_util::stream::try_unfold(state, Opening::next).boxed(),
    })
}

struct Opening {
    chunks: Chunks,
    /// `None` once the last chunk is opened.
    opener: Option<Opener>,
    /// Bytes read with the header that belong to the chunks.
    carry: Option<Vec<u8>>,
}

impl Opening {
    async fn next(mut self) -> Result<Option<(Bytes, Self)>, ObjectError> {
        loop {
            let Some(opener) = self.opener.as_mut() else {
                return Ok(None);
            };
            let mut out = Vec::new();
            if let Some(carry) = self.carry.take() {
                opener.write(&carry, &mut out)?;
            } else {
                match self.chunks.next().await {
                    Some(chunk) => opener.write(&chunk?, &mut out)?,
                    None => {
                        if let Some(opener) = self.opener.take() {
                            opener.finish(&mut out)?;
                        }
                    }
                }
            }
            if !out.is_empty() {
                return Ok(Some((out.into(), self)));
            }
        }
    }
}

/// What [`reseal`] did to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resealed {
    /// Already encrypted with the current key: nothing written.
    Current,
    /// Stored before recordings were encrypted: now encrypted.
    Encrypted,
    /// Its data key is now encrypted with the current key (the chunks copied as they are).
    Rewrapped,
    /// No object at the key.
    Missing,
}

/// Writes `org`'s object at `key` again, encrypted with the keyring's current key, unless it
/// already is. The new object replaces the old one at once (a reader sees one or the other).
pub async fn reseal(
    store: &dyn ObjectStore,
    keyring: &Keyring,
    org: OrgId,
    key: &str,
) -> Result<Resealed, ObjectError> {
    let path = Path::parse(key).map_err(object_store::Error::from)?;
    let object = match store.get(&path).await {
        Ok(object) => object,
        Err(object_store::Error::NotFound { .. }) => return Ok(Resealed::Missing),
        Err(e) => return Err(e.into()),
    };
    let mut chunks: Chunks = object.into_stream();
    let (first, header) = header(&mut chunks).await?;
    match header {
        Some(header) if header.key_id() == Some(keyring.current_key_id()) => Ok(Resealed::Current),
        Some(header) => {
            let new_header = header.rewrap(keyring, org, key)?;
            let mut upload = Upload::new(store, &path);
            let copied = async {
                upload.write(&new_header).await?;
                upload.write(&first[header.len()..]).await?;
                while let Some(chunk) = chunks.next().await {
                    upload.write(&chunk?).await?;
                }
                Ok::<_, object_store::Error>(())
            }
            .await;
            match copied {
                Ok(()) => upload.finish().await?,
                Err(e) => {
                    upload.abort().await;
                    return Err(e.into());
                }
            }
            Ok(Resealed::Rewrapped)
        }
        None => {
            let mut upload = SealedUpload::new(store, &path, keyring, org).await?;
            let copied = async {
                upload.write(&first).await?;
                while let Some(chunk) = chunks.next().await {
                    upload.write(&chunk?).await?;
                }
                Ok::<_, ObjectError>(())
            }
            .await;
            match copied {
                Ok(()) => upload.finish().await?,
                Err(e) => {
                    upload.abort().await;
                    return Err(e);
                }
            }
            Ok(Resealed::Encrypted)
        }
    }
}
