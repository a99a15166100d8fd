//! Integration tests: real HTTP on 127.0.0.1 (port 0) against a tempdir registry.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod dashboard;
mod distribution;
mod endpoints;
mod forecast;
mod fuzz;
mod hardening;
mod hotswap;
mod input;
mod liveset;
mod metrics;
mod monitoring;
mod pooled;
mod scores;
mod shutdown;
mod signal;
mod support;
mod symbols;
