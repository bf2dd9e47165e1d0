//! OpenAI API knowledge: endpoints, request fields, SSE parsing, response assembly, error bodies.
pub mod assemble;
pub mod endpoint;
pub mod error;
mod lenient;
pub mod request;
pub mod sse;
mod strict_json;
mod wire;
