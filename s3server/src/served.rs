//! The S3 service: s3s-fs's, with its object reads made fast. s3s-fs streams a GET in 4 KiB
//! reads of a `tokio::fs::File`, each one a hop to the blocking pool: about 35 MB/s here, so
//! a 16 MiB split took ~0.5 s to arrive and the server, not the client, was what `make bench`
//! figure 13 measured. [`Served`] lets s3s-fs answer every request, GETs included (it checks
//! the key, the range and the credentials, and makes the headers and the ETag), and only
//! replaces a GET's body with a stream of 1 MiB reads of the same bytes. And s3s-fs keeps
//! two sidecar files per object in the root (`.bucket-….object-….{internal,metadata}.json`)
//! that its deletes leave behind: every attempt's key promoted by copy and delete left two
//! files for good, so [`Served`] removes them after each delete s3s-fs made. And an object
//! that was copied into the folder as a file, not PUT, has no sidecar with its ETag, so
//! s3s-fs hashed the whole file (MD5) on every HEAD and GET: a split of 600 bytes of a
//! 700 KB input cost 700 KB of hashing, twice. [`Served`] hashes such a file once and keeps
//! its ETag in the sidecar s3s-fs reads, stamped with the file's size and modification time
//! so that a file replaced by hand is hashed again. Every other operation is s3s-fs's own,
//! unchanged.

use s3s::dto::{self, StreamingBlob};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use std::io::{Read, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Bytes per read of a GET's body.
const READ_BYTES: usize = 1 << 20;

/// The field of a sidecar written by [`Served::remember_etag`]: the file it describes.
const STAMP_FIELD: &str = "mr_file";

pub(crate) struct Served {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
}

impl Served {
    pub(crate) fn new(root: &Path) -> anyhow::Result<Self> {
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(Served {
            fs,
            root: root.to_path_buf(),
        })
    }

    /// The object's file, as s3s-fs lays it out (`ROOT/BUCKET/KEY`): s3s-fs has already
    /// refused a name that leaves the root; any `..` or root component is refused here too.
    fn object_path(&self, bucket: &str, key: &str) -> S3Result<PathBuf> {
        let relative = Path::new(bucket).join(key);
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(s3_error!(InvalidArgument, "object name outside the root"));
        }
        Ok(self.root.join(relative))
    }

    async fn fast_get(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let path = self.object_path(&req.input.bucket, &req.input.key)?;
        self.remember_etag(&req.input.bucket, &req.input.key).await;
        let range = req.input.range;
        let mut response = self.fs.get_object(req).await?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| s3_error!(e, NoSuchKey))?;
        let file_len = file
            .metadata()
            .await
            .map_err(|e| s3_error!(e, InternalError))?
            .len();
        let bytes = match range {
            None => 0..file_len,
            Some(range) => range.check(file_len).map_err(|_| s3_error!(InvalidRange))?,
        };
        file.seek(SeekFrom::Start(bytes.start))
            .await
            .map_err(|e| s3_error!(e, InternalError))?;
        let body = ReaderStream::with_capacity(file.take(bytes.end - bytes.start), READ_BYTES);
        response.output.body = Some(StreamingBlob::wrap(body));
        Ok(response)
    }

    /// One of s3s-fs's sidecar files of an object (`internal.json`: its ETag and
    /// checksums; `metadata.json`: its user metadata), named as s3s-fs names them.
    fn sidecar(&self, bucket: &str, key: &str, suffix: &str) -> PathBuf {
        let encode = |s: &str| base64_simd::URL_SAFE_NO_PAD.encode_to_string(s);
        self.root.join(format!(
            ".bucket-{}.object-{}.{suffix}",
            encode(bucket),
            encode(key)
        ))
    }

    /// Removes s3s-fs's sidecar files of a deleted object.
    async fn remove_sidecars(&self, bucket: &str, key: &str) {
        for suffix in ["internal.json", "metadata.json"] {
            let _ = tokio::fs::remove_file(self.sidecar(bucket, key, suffix)).await;
        }
    }

    /// Gives an object that has no ETag on file (a file copied into the bucket's folder)
    /// one, so that s3s-fs need not hash the file on each request: the MD5 it would compute,
    /// in the sidecar it reads, with the file's size and modification time. A sidecar of
    /// s3s-fs's own (the object was PUT) is left alone; one of ours for a file since
    /// replaced is written again. Any failure leaves things to s3s-fs (which then hashes).
    async fn remember_etag(&self, bucket: &str, key: &str) {
        let Ok(path) = self.object_path(bucket, key) else {
            return;
        };
        let sidecar = self.sidecar(bucket, key, "internal.json");
        let _ = tokio::task::spawn_blocking(move || remember_etag_of(&path, &sidecar)).await;
    }

    async fn head(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        self.remember_etag(&req.input.bucket, &req.input.key).await;
        self.fs.head_object(req).await
    }

    async fn delete(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let response = self.fs.delete_object(req).await?;
        self.remove_sidecars(&bucket, &key).await;
        Ok(response)
    }

    async fn delete_each(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let response = self.fs.delete_objects(req).await?;
        let deleted = response.output.deleted.iter().flatten();
        for key in deleted.filter_map(|d| d.key.as_deref()) {
            self.remove_sidecars(&bucket, key).await;
        }
        Ok(response)
    }
}

/// The size and modification time (ns since the epoch) of a file, as a sidecar keeps them.
fn stamp(path: &Path) -> Option<serde_json::Value> {
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(serde_json::json!({
        "len": meta.len(),
        "mtime_ns": modified.as_nanos().to_string(),
    }))
}

/// [`Served::remember_etag`]'s work, blocking.
fn remember_etag_of(path: &Path, sidecar: &Path) -> Option<()> {
    let before = stamp(path)?;
    match std::fs::read(sidecar) {
        Ok(bytes) => {
            let info: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            match info.get(STAMP_FIELD) {
                // s3s-fs's own, or ours and still true.
                None => return None,
                Some(stamped) if *stamped == before => return None,
                Some(_) => {}
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    let mut file = std::fs::File::open(path).ok()?;
    let mut md5 = <s3s::crypto::Md5 as s3s::crypto::Checksum>::new();
    let mut buf = vec![0; READ_BYTES];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        s3s::crypto::Checksum::update(&mut md5, &buf[..n]);
    }
    let digest = s3s::crypto::Checksum::finalize(md5);
    let e_tag: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // Changed while it was read: the next request tries again.
    if stamp(path)? != before {
        return None;
    }
    let info = serde_json::json!({ "e_tag": e_tag, STAMP_FIELD: before });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = sidecar.with_extension(format!("mr-{}-{n}.part", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&info).ok()?).ok()?;
    if std::fs::rename(&tmp, sidecar).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Some(())
}

/// `impl S3 for Served`: each listed operation handed to s3s-fs as it is (every one s3s-fs
/// implements; the others keep the trait's NotImplemented), `get_object` through
/// [`Served::fast_get`], `head_object` through [`Served::head`], and the deletes through
/// [`Served::delete`] and [`Served::delete_each`].
macro_rules! served_by_s3s_fs {
    ($($op:ident: $input:ident -> $output:ident;)*) => {
        #[async_trait::async_trait]
        impl S3 for Served {
            $(
                async fn $op(
                    &self,
                    req: S3Request<dto::$input>,
                ) -> S3Result<S3Response<dto::$output>> {
                    self.fs.$op(req).await
                }
            )*

            async fn get_object(
                &self,
                req: S3Request<dto::GetObjectInput>,
            ) -> S3Result<S3Response<dto::GetObjectOutput>> {
                self.fast_get(req).await
            }

            async fn head_object(
                &self,
                req: S3Request<dto::HeadObjectInput>,
            ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
                self.head(req).await
            }

            async fn delete_object(
                &self,
                req: S3Request<dto::DeleteObjectInput>,
            ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
                self.delete(req).await
            }

            async fn delete_objects(
                &self,
                req: S3Request<dto::DeleteObjectsInput>,
            ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
                self.delete_each(req).await
            }
        }
    };
}

served_by_s3s_fs! {
    create_bucket: CreateBucketInput -> CreateBucketOutput;
    copy_object: CopyObjectInput -> CopyObjectOutput;
    delete_bucket: DeleteBucketInput -> DeleteBucketOutput;
    get_bucket_location: GetBucketLocationInput -> GetBucketLocationOutput;
    head_bucket: HeadBucketInput -> HeadBucketOutput;
    list_buckets: ListBucketsInput -> ListBucketsOutput;
    list_objects: ListObjectsInput -> ListObjectsOutput;
    list_objects_v2: ListObjectsV2Input -> ListObjectsV2Output;
    put_object: PutObjectInput -> PutObjectOutput;
    create_multipart_upload: CreateMultipartUploadInput -> CreateMultipartUploadOutput;
    upload_part: UploadPartInput -> UploadPartOutput;
    upload_part_copy: UploadPartCopyInput -> UploadPartCopyOutput;
    list_parts: ListPartsInput -> ListPartsOutput;
    complete_multipart_upload: CompleteMultipartUploadInput -> CompleteMultipartUploadOutput;
    abort_multipart_upload: AbortMultipartUploadInput -> AbortMultipartUploadOutput;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e_tag(sidecar: &Path) -> Option<String> {
        let info: serde_json::Value = serde_json::from_slice(&std::fs::read(sidecar).ok()?).ok()?;
        info["e_tag"].as_str().map(str::to_string)
    }

    /// A file copied in gets the ETag s3s-fs would compute (MD5, checked against known
    /// digests), kept until the file changes; a sidecar of s3s-fs's own is never touched.
    #[test]
    fn a_copied_in_file_gets_its_md5_once_and_again_when_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, sidecar) = (dir.path().join("f"), dir.path().join("f.internal.json"));
        std::fs::write(&file, "hello").expect("write");
        assert_eq!(remember_etag_of(&file, &sidecar), Some(()));
        assert_eq!(
            e_tag(&sidecar).as_deref(),
            Some("5d41402abc4b2a76b9719d911017c592")
        );
        // Unchanged: nothing to do.
        assert_eq!(remember_etag_of(&file, &sidecar), None);

        // Replaced (another size, so whatever the clock's resolution): hashed again.
        std::fs::write(&file, "hello, world").expect("rewrite");
        assert_eq!(remember_etag_of(&file, &sidecar), Some(()));
        assert_eq!(
            e_tag(&sidecar).as_deref(),
            Some("e4d7f1b4ed2e42d15898f4b27b019da4")
        );

        // s3s-fs's own sidecar (the object was PUT) stays as it is.
        std::fs::write(&sidecar, r#"{"e_tag":"theirs"}"#).expect("theirs");
        assert_eq!(remember_etag_of(&file, &sidecar), None);
        assert_eq!(e_tag(&sidecar).as_deref(), Some("theirs"));

        // No file, no sidecar; and no temp file is left anywhere.
        let missing = dir.path().join("missing");
        assert_eq!(remember_etag_of(&missing, &dir.path().join("m.json")), None);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["f", "f.internal.json"]);
    }
}
