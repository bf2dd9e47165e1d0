//! OpenAI API knowledge: error bodies.
pub mod error;
