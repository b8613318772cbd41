//! The end-to-end suite: real coordinator and worker processes, real gRPC, real Wasm apps,
//! real containers. One test binary with a module per area rather than a binary per file:
//! each binary links the whole stack statically, and a dozen of them cost CI minutes.
//!
//! Run one area with `cargo test --release -p mr-e2e --test e2e lab::`.

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
