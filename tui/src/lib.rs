//! `osprey top`, the live terminal dashboard (issue 8).
//!
//! # Layout
//!
//! Nothing yet: the dashboard is built on the admin API's snapshot and live
//! stream, which come with the instrumentation spine.
