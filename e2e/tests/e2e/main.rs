//! The end-to-end suite: real coordinator and worker processes, real gRPC, real Wasm apps,
//! real containers. One test binary with a module per area rather than a binary per file:
//! each binary links the whole stack statically, and a dozen of them cost CI minutes.
//!
//! Run one area with `cargo test --release -p mr-e2e --test e2e lab::`.
//!
//! Every test whose outcome depends on where the data lives runs on both storages:
//! `AREA::folder::NAME` on the data folder (`file://`) and `AREA::s3::NAME` on S3 (see
//! [`mr_e2e::TestStorage`]), from one `async fn NAME(storage: TestStorage)` listed in the
//! area's [`on_both_storages!`]. `cargo test ... ::s3::` runs the S3 half.

/// `folder::NAME` and `s3::NAME`: each listed test of an area on each storage. Each `NAME`
/// is an `async fn(mr_e2e::TestStorage)` of the area's module.
macro_rules! on_both_storages {
    ($($name:ident),* $(,)?) => {
        mod folder {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(mr_e2e::TestStorage::Folder).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(mr_e2e::TestStorage::S3).await
                }
            )*
        }
    };
}

mod api;
mod cli;
mod compose;
mod edge;
mod hostile;
mod http;
mod lab;
mod languages;
mod operate;
mod protocol;
mod reliability;
mod s3;
mod security;
