//! The S3 service: s3s-fs's, with its object reads made fast. s3s-fs streams a GET in 4 KiB
//! reads of a `tokio::fs::File`, each one a hop to the blocking pool: about 35 MB/s here, so
//! a 16 MiB split took ~0.5 s to arrive and the server, not the client, was what `make bench`
//! figure 13 measured. [`Served`] lets s3s-fs answer every request, GETs included (it checks
//! the key, the range and the credentials, and makes the headers and the ETag), and only
//! replaces a GET's body with a stream of 1 MiB reads of the same bytes. And s3s-fs keeps
//! two sidecar files per object in the root (`.bucket-….object-….{internal,metadata}.json`)
//! that its deletes leave behind: every attempt's key promoted by copy and delete left two
//! files for good, so [`Served`] removes them after each delete s3s-fs made. Every other
//! operation is s3s-fs's own, unchanged.

use s3s::dto::{self, StreamingBlob};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Bytes per read of a GET's body.
const READ_BYTES: usize = 1 << 20;

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

    /// Removes s3s-fs's sidecar files of a deleted object (named as s3s-fs names them).
    async fn remove_sidecars(&self, bucket: &str, key: &str) {
        let encode = |s: &str| base64_simd::URL_SAFE_NO_PAD.encode_to_string(s);
        let stem = format!(".bucket-{}.object-{}", encode(bucket), encode(key));
        for suffix in ["internal.json", "metadata.json"] {
            let _ = tokio::fs::remove_file(self.root.join(format!("{stem}.{suffix}"))).await;
        }
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

/// `impl S3 for Served`: each listed operation handed to s3s-fs as it is (every one s3s-fs
/// implements; the others keep the trait's NotImplemented), `get_object` through
/// [`Served::fast_get`] and the deletes through [`Served::delete`] and
/// [`Served::delete_each`].
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
    head_object: HeadObjectInput -> HeadObjectOutput;
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
