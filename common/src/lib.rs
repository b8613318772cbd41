//! What the coordinator and the worker share beyond the gRPC schema: where files live on the
//! shared data folder and which paths a job may touch ([`data_dir`]), and how both binaries
//! set up their logs ([`telemetry`]), TLS files and bearer tokens on the client side
//! ([`security`]), the open-file limit both raise at start ([`limits`]), and which user they
//! run as when started as root ([`privileges`]), and, in the static musl build, the
//! `memcpy`, `memmove` and `memcmp` every binary links instead of musl's ([`memcpy`]).

pub mod app_interface;
pub mod data_dir;
pub mod limits;
#[cfg(all(target_env = "musl", target_arch = "x86_64"))]
pub mod memcpy;
pub mod privileges;
pub mod security;
pub mod shutdown;
pub mod telemetry;

pub use data_dir::{DataDir, PathError};
