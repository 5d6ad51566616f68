//! Typed, zero-copy decoding of the message bodies the proxy acts on.

pub mod startup;

pub use startup::Startup;
