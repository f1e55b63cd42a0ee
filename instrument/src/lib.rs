//! Osprey's instrumentation core.
