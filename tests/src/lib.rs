//! Test support shared by the end-to-end suites.
pub mod template;
pub mod runtime_api;
