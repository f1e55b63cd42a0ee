//! One file per view; each draws from [`crate::state::App`] only.

pub mod events;
pub mod help;
pub mod overview;
pub mod sessions;
pub mod trace;

/// A table's filter as its title shows it: `filter: text▏` while typing,
/// `filter: text` when set, nothing when empty.
pub fn filter_label(text: &str, editing: bool) -> Option<String> {
    if editing {
        Some(format!("filter: {text}▏"))
    } else if text.is_empty() {
        None
    } else {
        Some(format!("filter: {text}"))
    }
}
