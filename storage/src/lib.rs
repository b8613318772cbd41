//! Where a job's data lives: inputs, intermediates and outputs.
//!
//! [`Storage::Local`] is the shared folder every process sees (`file://`, the default):
//! the coordinator and the workers keep their own, tuned file code for it (splits read
//! with `pread`, temp files renamed into place). [`Storage::S3`] is S3-compatible object
//! storage (`s3://BUCKET[/PREFIX]`) through the `object_store` crate, with the same
//! layout under the prefix: `input/…`, `jobs/<id>/mr-X-Y`, `jobs/<id>/mr-out-Y`.
//!
//! Object stores have no rename, so the exactly-once commit works on keys (ARCHITECTURE.md,
//! "Storage"): an attempt writes under its own key (the temp name it would have in the
//! folder), the coordinator journals which attempt it accepts, then copies that attempt's
//! objects to their final keys and deletes the attempt's ([`S3Store::promote`]). Readers only
//! ever read final keys.
//!
//! Every call here blocks: the store runs its requests on a small runtime of its own, so
//! it can be called from the worker's task threads and from `spawn_blocking`. Transient
//! failures (5xx, timeouts, connection errors) are retried with backoff by `object_store`,
//! bounded by [`RETRIES`] and [`RETRY_TIMEOUT`].

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Retries of one request that failed transiently, at most.
pub const RETRIES: usize = 8;
/// Time after a request's first try past which it is not retried.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(60);
/// Objects larger than this are uploaded in parts (and each part this size).
pub const PART_BYTES: usize = 8 << 20;
/// Requests one call of the `*_each` methods keeps in flight, at most.
pub const CONCURRENT_REQUESTS: usize = 8;

/// Where a job's data lives.
#[derive(Clone, Debug)]
pub enum Storage {
    /// The shared data folder (`--data-dir`).
    Local,
    /// S3-compatible object storage.
    S3(S3Store),
}

impl Storage {
    /// Parses `--storage`: empty or `file://` (the data folder), or `s3://BUCKET[/PREFIX]`.
    /// Credentials, region and endpoint come from the standard `AWS_*` variables.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, &[])
    }

    /// [`Storage::open`], with `object_store` settings that take precedence over the
    /// environment's (e.g. `("aws_endpoint", "http://127.0.0.1:9000")`): for tools and
    /// tests that must not change their process's environment.
    pub fn open_with(url: &str, settings: &[(&str, &str)]) -> Result<Self, StoreError> {
        if url.is_empty() || url == "file://" || url == "file:" {
            return Ok(Storage::Local);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return S3Store::open(rest, settings).map(Storage::S3);
        }
        Err(StoreError::Config {
            url: url.to_string(),
            message: "the storage must be file:// (the data folder) or s3://BUCKET[/PREFIX]".into(),
        })
    }

    /// The S3 store, if that is where the data lives.
    pub fn s3(&self) -> Option<&S3Store> {
        match self {
            Storage::Local => None,
            Storage::S3(s3) => Some(s3),
        }
    }

    /// What to show in logs: `file://` or `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        match self {
            Storage::Local => "file://".into(),
            Storage::S3(s3) => s3.url(),
        }
    }
}

/// A plain-HTTP S3-compatible server and the keys to sign with (the tests' and the
/// bench's local servers): as the `AWS_*` variables a child process reads, or as a client.
pub struct Endpoint<'a> {
    /// `http://host:port`.
    pub url: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
}

impl Endpoint<'_> {
    /// `AWS_ENDPOINT_URL`, the keys, a region and `AWS_ALLOW_HTTP`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url),
            ("AWS_ACCESS_KEY_ID", self.access_key),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// A client of `storage` (`s3://bucket[/prefix]`) on this server, configured without
    /// touching this process's environment.
    pub fn client(&self, storage: &str) -> Result<S3Store, StoreError> {
        let settings = [
            ("aws_endpoint", self.url),
            ("aws_access_key_id", self.access_key),
            ("aws_secret_access_key", self.secret_key),
            ("aws_region", "us-east-1"),
            ("aws_allow_http", "true"),
        ];
        match Storage::open_with(storage, &settings)? {
            Storage::S3(s3) => Ok(s3),
            Storage::Local => Err(StoreError::Config {
                url: storage.to_string(),
                message: "not an s3:// URL".into(),
            }),
        }
    }
}

/// Why a storage call failed. Each names the object (`s3://bucket/key`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object is not there.
    #[error("{url}: no such object")]
    NotFound { url: String },
    /// The `--storage` URL or the `AWS_*` settings are unusable.
    #[error("storage {url}: {message}")]
    Config { url: String, message: String },
    /// The request failed (after its retries): a refused credential, a missing bucket, a
    /// server that stays down, ….
    #[error("{op} {url}: {message}")]
    Request {
        op: &'static str,
        url: String,
        message: String,
    },
    /// Reading or writing the local side of a transfer failed.
    #[error("{op} {url} ({local}): {source}")]
    Local {
        op: &'static str,
        url: String,
        local: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the object was missing (rather than unreachable).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// An object's key (relative to the storage root) and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// An S3 bucket (and key prefix) through `object_store`.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    bucket: String,
    /// Without slashes at either end; empty for the bucket's root.
    prefix: String,
    store: AmazonS3,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A runtime dropped in an async context would panic; this one needs no waiting.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

impl S3Store {
    /// `rest` is `BUCKET[/PREFIX]` (what follows `s3://`).
    fn open(rest: &str, settings: &[(&str, &str)]) -> Result<Self, StoreError> {
        let url = format!("s3://{rest}");
        let config = |message: String| StoreError::Config {
            url: url.clone(),
            message,
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(config("no bucket: use s3://BUCKET[/PREFIX]".into()));
        }
        let prefix = prefix.trim_matches('/').to_string();
        // reqwest is built without a default TLS provider (see Cargo.toml): ring, as tonic.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env();
        for (key, value) in settings {
            let key = key.parse().map_err(|e| config(format!("{e}")))?;
            builder = builder.with_config(key, *value);
        }
        let store = builder
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            })
            .build()
            .map_err(|e| config(format!("{e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mr-s3")
            .enable_all()
            .build()
            .map_err(|e| config(format!("cannot start its I/O threads: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                bucket: bucket.to_string(),
                prefix,
                store,
                runtime: Some(runtime),
            }),
        })
    }

    /// `s3://bucket[/prefix]`.
    pub fn url(&self) -> String {
        self.object_url("")
    }

    /// `s3://bucket/prefix/key`, for messages.
    pub fn object_url(&self, key: &str) -> String {
        let mut url = format!("s3://{}", self.inner.bucket);
        for part in [self.inner.prefix.as_str(), key] {
            if !part.is_empty() {
                url.push('/');
                url.push_str(part);
            }
        }
        url
    }

    fn key(&self, key: &str) -> Key {
        if self.inner.prefix.is_empty() {
            Key::from(key)
        } else {
            Key::from(format!("{}/{key}", self.inner.prefix))
        }
    }

    /// `key` relative to the prefix (None if it is outside it).
    fn relative(&self, key: &Key) -> Option<String> {
        let full = key.as_ref();
        if self.inner.prefix.is_empty() {
            return Some(full.to_string());
        }
        full.strip_prefix(self.inner.prefix.as_str())?
            .strip_prefix('/')
            .map(str::to_string)
    }

    /// Runs `future` on the store's runtime and waits for it (from any thread, async or not).
    fn block<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> T {
        let runtime = self.inner.runtime.as_ref().expect("runtime until dropped");
        let task = runtime.spawn(future);
        // From a thread that runs async code, block_in_place keeps its other tasks going;
        // elsewhere (a worker's task thread, spawn_blocking) it is a plain wait.
        let wait = || futures::executor::block_on(task);
        let joined = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        match joined {
            Ok(value) => value,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// A failure of the local side of a transfer of `key`.
    fn local_error(
        &self,
        op: &'static str,
        key: &str,
        local: &Path,
        source: std::io::Error,
    ) -> StoreError {
        StoreError::Local {
            op,
            url: self.object_url(key),
            local: local.display().to_string(),
            source,
        }
    }

    fn error(&self, op: &'static str, key: &str, e: object_store::Error) -> StoreError {
        let url = self.object_url(key);
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound { url },
            other => StoreError::Request {
                op,
                url,
                message: one_line(&other),
            },
        }
    }

    /// Checks that the bucket answers with these credentials (one LIST of at most one key).
    pub fn check(&self) -> Result<(), StoreError> {
        let store = self.clone();
        self.block(async move {
            let prefix = store.key("");
            let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
            let mut list = store.inner.store.list(prefix.as_ref());
            match list.next().await {
                Some(Err(object_store::Error::NotFound { .. })) => Err(StoreError::Request {
                    op: "list",
                    url: store.url(),
                    message: "no such bucket (or none these credentials can see)".into(),
                }),
                Some(Err(e)) => Err(store.error("list", "", e)),
                _ => Ok(()),
            }
        })
    }

    /// Every object whose key starts with `prefix` (relative keys, sorted).
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let store = self.clone();
        let prefix = prefix.to_string();
        self.block(async move {
            // object_store lists by whole path segments: list the folder part of the
            // prefix, then keep the keys that start with all of it.
            let folder = match prefix.rfind('/') {
                Some(at) => &prefix[..at],
                None => "",
            };
            let full = store.key(folder);
            let full = (!full.as_ref().is_empty()).then_some(full);
            let metas: Vec<_> = store
                .inner
                .store
                .list(full.as_ref())
                .try_collect()
                .await
                .map_err(|e| store.error("list", &prefix, e))?;
            let mut out: Vec<ObjectInfo> = metas
                .into_iter()
                .filter_map(|meta| {
                    let key = store.relative(&meta.location)?;
                    key.starts_with(prefix.as_str()).then_some(ObjectInfo {
                        key,
                        size: meta.size,
                    })
                })
                .collect();
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    /// Runs `op` on each item, at most [`CONCURRENT_REQUESTS`] at a time, on the store's
    /// runtime, and waits for all of them; the results are in the items' order.
    fn block_each<I, T, F, Fut>(&self, items: Vec<I>, op: F) -> Vec<T>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(S3Store, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let store = self.clone();
        self.block(async move {
            futures::stream::iter(items)
                .map(|item| op(store.clone(), item))
                .buffered(CONCURRENT_REQUESTS)
                .collect()
                .await
        })
    }

    /// The object's size.
    pub fn size(&self, key: &str) -> Result<u64, StoreError> {
        let (store, key) = (self.clone(), key.to_string());
        self.block(async move { store.size_async(&key).await })
    }

    async fn size_async(&self, key: &str) -> Result<u64, StoreError> {
        let meta = self.inner.store.head(&self.key(key)).await;
        meta.map(|m| m.size).map_err(|e| self.error("head", key, e))
    }

    /// Whether the object is there.
    pub fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.exists_each(vec![key.to_string()]).remove(0)
    }

    /// [`exists`](Self::exists) for each key, the requests concurrent.
    pub fn exists_each(&self, keys: Vec<String>) -> Vec<Result<bool, StoreError>> {
        self.block_each(
            keys,
            |store, key| async move { store.exists_async(&key).await },
        )
    }

    async fn exists_async(&self, key: &str) -> Result<bool, StoreError> {
        match self.size_async(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Bytes `range` of the object (a ranged GET); `range` must lie within it.
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.clone();
        let key = key.to_string();
        self.block(async move {
            let bytes = store.inner.store.get_range(&store.key(&key), range).await;
            // Without a copy when the body is one buffer (the usual case).
            bytes
                .map(Vec::from)
                .map_err(|e| store.error("get", &key, e))
        })
    }

    /// The object's bytes from `range.start` (which must lie within it) up to `range.end`
    /// or its end, whichever comes first, and its size: one ranged GET, no HEAD.
    pub fn get_range_and_size(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<(Vec<u8>, u64), StoreError> {
        let store = self.clone();
        let key = key.to_string();
        self.block(async move {
            let fail = |e| store.error("get", &key, e);
            let options = object_store::GetOptions {
                range: Some(range.into()),
                ..Default::default()
            };
            let result = store
                .inner
                .store
                .get_opts(&store.key(&key), options)
                .await
                .map_err(fail)?;
            let size = result.meta.size;
            let bytes = result.bytes().await.map_err(fail)?;
            Ok((Vec::from(bytes), size))
        })
    }

    /// The whole object.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let store = self.clone();
        let key = key.to_string();
        self.block(async move {
            let fail = |e| store.error("get", &key, e);
            let result = store
                .inner
                .store
                .get(&store.key(&key))
                .await
                .map_err(fail)?;
            let bytes = result.bytes().await.map_err(fail)?;
            Ok(Vec::from(bytes))
        })
    }

    /// Downloads the object into the local file `local` (created or truncated), streaming.
    pub fn download(&self, key: &str, local: &Path) -> Result<(), StoreError> {
        self.download_each(vec![(key.to_string(), local.to_path_buf())])
            .remove(0)
    }

    /// [`download`](Self::download) of each (key, local file), the transfers concurrent.
    pub fn download_each(&self, pairs: Vec<(String, PathBuf)>) -> Vec<Result<(), StoreError>> {
        self.block_each(pairs, |store, (key, local)| async move {
            let local_error = |source| store.local_error("get", &key, &local, source);
            let result = store.inner.store.get(&store.key(&key)).await;
            let mut stream = result
                .map_err(|e| store.error("get", &key, e))?
                .into_stream();
            let mut file = tokio::fs::File::create(&local).await.map_err(local_error)?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| store.error("get", &key, e))?;
                file.write_all(&chunk).await.map_err(local_error)?;
            }
            file.flush().await.map_err(local_error)
        })
    }

    /// Writes `bytes` as the object: whole, or not at all.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.put_each(vec![(key.to_string(), bytes)]).remove(0)
    }

    /// [`put`](Self::put) of each (key, bytes), the requests concurrent.
    pub fn put_each(&self, objects: Vec<(String, Vec<u8>)>) -> Vec<Result<(), StoreError>> {
        self.block_each(objects, |store, (key, bytes)| async move {
            // One PUT: S3 makes the object visible whole or not at all.
            let done = store
                .inner
                .store
                .put(&store.key(&key), PutPayload::from(bytes))
                .await;
            done.map(|_| ()).map_err(|e| store.error("put", &key, e))
        })
    }

    /// Uploads the local file `local` as the object: one PUT up to [`PART_BYTES`], a
    /// multipart upload (parts of that size, two in flight; aborted on failure) above.
    pub fn upload_file(&self, key: &str, local: &Path) -> Result<(), StoreError> {
        let store = self.clone();
        let key = key.to_string();
        let local = local.to_path_buf();
        self.block(async move {
            let local_error = |source| store.local_error("put", &key, &local, source);
            let mut file = tokio::fs::File::open(&local).await.map_err(local_error)?;
            let mut chunk = Vec::with_capacity(PART_BYTES);
            (&mut file)
                .take(PART_BYTES as u64 + 1)
                .read_to_end(&mut chunk)
                .await
                .map_err(local_error)?;
            let location = store.key(&key);
            let fail = |e| store.error("put", &key, e);
            if chunk.len() <= PART_BYTES {
                let done = store.inner.store.put(&location, PutPayload::from(chunk));
                return done.await.map(|_| ()).map_err(fail);
            }
            let upload = store
                .inner
                .store
                .put_multipart(&location)
                .await
                .map_err(fail)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            loop {
                writer.write(&chunk);
                chunk.clear();
                let step = async {
                    writer.wait_for_capacity(2).await.map_err(fail)?;
                    (&mut file)
                        .take(PART_BYTES as u64)
                        .read_to_end(&mut chunk)
                        .await
                        .map_err(local_error)
                };
                match step.await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(e);
                    }
                }
            }
            writer.finish().await.map(|_| ()).map_err(fail)
        })
    }

    /// Makes `from` visible as `to`: a server-side copy, then `from` is deleted. Idempotent:
    /// when `from` is gone but `to` is there (an earlier call finished), it succeeds.
    pub fn promote(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.promote_each(vec![(from.to_string(), to.to_string())])
            .remove(0)
    }

    /// [`promote`](Self::promote) of each (from, to), the pairs concurrent.
    pub fn promote_each(&self, pairs: Vec<(String, String)>) -> Vec<Result<(), StoreError>> {
        self.block_each(pairs, |store, (from, to)| async move {
            let copied = store
                .inner
                .store
                .copy(&store.key(&from), &store.key(&to))
                .await;
            match copied.map_err(|e| store.error("copy", &from, e)) {
                Ok(()) => store.delete_async(&from).await,
                Err(e) if e.is_not_found() && store.exists_async(&to).await? => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// Deletes the object (a missing one is no error).
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (store, key) = (self.clone(), key.to_string());
        self.block(async move { store.delete_async(&key).await })
    }

    async fn delete_async(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.store.delete(&self.key(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    /// Deletes these objects, in bulk requests (missing ones are no error).
    pub fn delete_all(&self, keys: &[String]) -> Result<(), StoreError> {
        let store = self.clone();
        let full: Vec<Key> = keys.iter().map(|k| self.key(k)).collect();
        let first = keys.first().cloned().unwrap_or_default();
        self.block(async move {
            let stream = futures::stream::iter(full.into_iter().map(Ok)).boxed();
            let results: Vec<_> = store.inner.store.delete_stream(stream).collect().await;
            for result in results {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store.error("delete", &first, e)),
                }
            }
            Ok(())
        })
    }
}

/// `error` and its causes on one line.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out.replace('\n', " ")
}
