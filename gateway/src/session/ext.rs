//! A type-keyed map: each module keeps its per-session state under its
//! own type, without the session knowing the module.

use std::any::{Any, TypeId};

/// Per-session module state. A handful of entries at most, so a vector
/// scanned by `TypeId` beats a hash map (and costs nothing when empty).
#[derive(Default)]
pub struct Extensions {
    items: Vec<(TypeId, Box<dyn Any + Send>)>,
}

impl Extensions {
    pub fn get<T: Any + Send>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.items
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref())
    }

    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.items
            .iter_mut()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_mut())
    }

    /// The entry of this type, created with `Default` if absent.
    pub fn entry<T: Any + Send + Default>(&mut self) -> &mut T {
        let id = TypeId::of::<T>();
        let i = match self.items.iter().position(|(t, _)| *t == id) {
            Some(i) => i,
            None => {
                self.items.push((id, Box::new(T::default())));
                self.items.len() - 1
            }
        };
        // The entry at `i` has type T: it was stored under T's TypeId.
        self.items[i]
            .1
            .downcast_mut()
            .expect("extension stored under its own TypeId")
    }

    pub fn insert<T: Any + Send>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        self.items.retain(|(t, _)| *t != id);
        self.items.push((id, Box::new(value)));
    }

    pub fn remove<T: Any + Send>(&mut self) -> Option<T> {
        let id = TypeId::of::<T>();
        let i = self.items.iter().position(|(t, _)| *t == id)?;
        self.items.swap_remove(i).1.downcast().ok().map(|b| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct A(u32);
    #[derive(Default, Debug, PartialEq)]
    struct B(&'static str);

    #[test]
    fn keyed_by_type() {
        let mut e = Extensions::default();
        assert!(e.get::<A>().is_none());
        e.entry::<A>().0 += 2;
        e.insert(B("x"));
        e.entry::<A>().0 += 1;
        assert_eq!(e.get::<A>(), Some(&A(3)));
        assert_eq!(e.remove::<B>(), Some(B("x")));
        assert!(e.get::<B>().is_none());
    }
}
