//! Test support shared by the end-to-end suites.
pub mod counting;
pub mod emulator;
pub mod local_runner;
pub mod moto;
pub mod runtime_api;
pub mod sandbox_login;
pub mod sse;
pub mod template;
pub mod upstash_shim;
pub mod whatsapp;
