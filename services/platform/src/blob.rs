//! The blob store for attachments and rendered documents: content-addressed by SHA-256, on a
//! local directory by default (any `object_store` backend in a cluster).

use std::{path::Path, sync::Arc};

use bytes::Bytes;
use object_store::{
    ObjectStore, ObjectStoreExt as _, PutPayload, local::LocalFileSystem, path::Path as StorePath,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Settings of the blob store (`[blob]`).
#[derive(Clone, Debug, Deserialize)]
pub struct BlobSettings {
    /// Directory that holds the blobs; created when missing.
    pub root: std::path::PathBuf,
}

/// Failures of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is not a SHA-256 hex digest.
    #[error("blob key {0:?} is not a sha-256 hex digest")]
    BadKey(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// The local directory could not be created.
    #[error("cannot create blob directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A content-addressed store: the key of a blob is the hex SHA-256 of its bytes, so storing the
/// same file twice keeps one copy.
#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
}

impl BlobStore {
    /// A store on a local directory.
    pub fn local(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root)?;
        Ok(Self::new(Arc::new(LocalFileSystem::new_with_prefix(root)?)))
    }

    /// A store on any `object_store` backend (S3, GCS, Azure, memory).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Stores `bytes` and returns their key.
    pub async fn put(&self, bytes: Bytes) -> Result<String, BlobError> {
        let key = hex::encode(Sha256::digest(&bytes));
        self.store
            .put(&Self::path(&key)?, PutPayload::from_bytes(bytes))
            .await?;
        Ok(key)
    }

    /// Reads the blob stored under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        Ok(self.store.get(&Self::path(key)?).await?.bytes().await?)
    }

    /// Streams the blob stored under `key`, in the store's own chunks, without reading it whole.
    pub async fn open(
        &self,
        key: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        use futures::StreamExt as _;
        let result = self.store.get(&Self::path(key)?).await?;
        Ok(result.into_stream().map(|chunk| Ok(chunk?)).boxed())
    }

    /// Whether a blob is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.store.head(&Self::path(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes the blob stored under `key` (nothing when there is none).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&Self::path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    fn path(key: &str) -> Result<StorePath, BlobError> {
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::BadKey(key.to_owned()));
        }
        // Two levels of fan-out keep directories small on a local disk.
        Ok(StorePath::from(format!(
            "{}/{}/{}",
            &key[..2],
            &key[2..4],
            key
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_bytes_get_the_same_key_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let key = store.put(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(
            key,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(store.put(Bytes::from_static(b"hello")).await.unwrap(), key);
        assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"hello"));
        assert!(store.exists(&key).await.unwrap());
        let streamed: Vec<Bytes> =
            futures::TryStreamExt::try_collect(store.open(&key).await.unwrap())
                .await
                .unwrap();
        assert_eq!(streamed.concat(), b"hello");
        store.delete(&key).await.unwrap();
        assert!(!store.exists(&key).await.unwrap());
        store.delete(&key).await.unwrap();
        assert!(matches!(
            store.get("../etc").await,
            Err(BlobError::BadKey(_))
        ));
    }
}
