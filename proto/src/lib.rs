//! The gRPC schema of mr, package `mapreduce.v1`, as Rust types, clients and servers.
//!
//! This is the only crate that knows protobuf: the rest of the workspace uses these generated
//! types at its gRPC edges and its own types inside.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

/// Generated from `proto/mapreduce/v1/mapreduce.proto`.
pub mod v1 {
    tonic::include_proto!("mapreduce.v1");

    /// The encoded `FileDescriptorSet` of the schema, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/mapreduce_descriptor.bin"));
}

pub use v1::*;
