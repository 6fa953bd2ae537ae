//! Test peers for the steps crate: a local HTTP(S) server and a real Chroma server.
//!
//! Each test binary uses only part of this module: what it leaves unused is not dead code.
#![allow(dead_code)]

pub mod chroma_server;
pub mod http_server;
