//! One file per view; each draws from [`crate::state::App`] only.

pub mod events;
pub mod help;
pub mod overview;
pub mod sessions;
pub mod trace;
