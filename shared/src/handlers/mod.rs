//! One module per function: the handler logic, taking its dependencies as arguments.
//! The Lambda binary and the local runner call the same handlers.

pub mod health;
