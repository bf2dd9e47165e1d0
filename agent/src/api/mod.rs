//! HTTPS API and web console.
pub mod console;
