//! The mr worker: stateless, it polls the coordinator for tasks, runs them with the app in
//! a wasmtime sandbox ([`app_runtime`]), does the file work around the app ([`tasks`]), skips the records the app fails on
//! when the job allows it ([`skip`]) and
//! reports back ([`runner`]). [`sequential`] is the one-process reference runner.

pub mod app_runtime;
pub mod runner;
pub mod sequential;
pub mod skip;
pub mod tasks;
