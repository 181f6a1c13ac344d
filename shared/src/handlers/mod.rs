//! One module per function: the handler logic, taking its dependencies as arguments.
//! The Lambda binary and the local runner call the same handlers.

pub mod auth_callback;
pub mod auth_login;
pub mod auth_logout;
pub mod health;
pub mod me;
pub mod token_refresher;
