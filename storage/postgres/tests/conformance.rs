//! The testkit's Store conformance suite on PostgreSQL: one test per case, each on a fresh
//! schema of its own (see `common`), so they run in parallel.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

tidings_testkit::store_conformance!(async { crate::common::fresh_store().await });
