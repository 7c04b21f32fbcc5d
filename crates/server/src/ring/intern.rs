//! Reference-counted interning: each distinct string, trace, label set or address set is kept
//! once and named by a `u32`, so keys and windows are a few words wide and equal values compare
//! by id. Values are freed when the last window or key that names them expires.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use foldhash::fast::FixedState;
use hashbrown::HashTable;

/// A value's approximate heap footprint, for memory accounting.
pub trait HeapSize {
    fn heap_size(&self) -> usize;
}

impl HeapSize for Box<str> {
    fn heap_size(&self) -> usize {
        self.len()
    }
}

struct Slot<T> {
    value: Option<T>,
    hash: u64,
    references: u32,
}

pub struct Interner<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    table: HashTable<u32>,
    hasher: FixedState,
    heap_bytes: usize,
}

impl<T: Hash + Eq + HeapSize> Interner<T> {
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            table: HashTable::new(),
            hasher: FixedState::with_seed(0x5eed),
            heap_bytes: 0,
        }
    }

    /// The id of an equal value, without taking a reference.
    #[cfg(test)]
    pub fn find<Q>(&self, value: &Q) -> Option<u32>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(value);
        self.table
            .find(hash, |&id| {
                self.slots[id as usize]
                    .value
                    .as_ref()
                    .is_some_and(|held| held.borrow() == value)
            })
            .copied()
    }

    /// The id of `value`, interning it if new; takes one reference.
    pub fn intern<Q>(&mut self, value: &Q, to_owned: impl FnOnce(&Q) -> T) -> u32
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(value);
        let slots = &self.slots;
        if let Some(&id) = self.table.find(hash, |&id| {
            slots[id as usize]
                .value
                .as_ref()
                .is_some_and(|held| held.borrow() == value)
        }) {
            self.slots[id as usize].references += 1;
            return id;
        }
        let owned = to_owned(value);
        self.heap_bytes += owned.heap_size();
        let slot = Slot {
            value: Some(owned),
            hash,
            references: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 interned values")
            }
        };
        let slots = &self.slots;
        self.table
            .insert_unique(hash, id, |&other| slots[other as usize].hash);
        id
    }

    /// Takes another reference to a live `id`.
    pub fn retain(&mut self, id: u32) {
        self.slots[id as usize].references += 1;
    }

    /// Drops one reference; the value is freed with the last.
    pub fn release(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        debug_assert!(
            slot.references > 0,
            "released an interned value more often than retained"
        );
        slot.references -= 1;
        if slot.references > 0 {
            return;
        }
        let hash = slot.hash;
        if let Some(value) = slot.value.take() {
            self.heap_bytes -= value.heap_size();
        }
        if let Ok(entry) = self.table.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        self.free.push(id);
    }

    pub fn get(&self, id: u32) -> &T {
        self.slots[id as usize]
            .value
            .as_ref()
            .expect("interned id is live")
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Bytes held: slots, table and the values' heap.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<T>>()
            + self.free.capacity() * 4
            + self.table.capacity() * 5
            + self.heap_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shared_and_freed_with_the_last_reference() {
        let mut interner: Interner<Box<str>> = Interner::new();
        let a = interner.intern("shop", |text: &str| Box::from(text));
        let b = interner.intern("shop", |text: &str| Box::from(text));
        assert_eq!(a, b);
        assert_eq!(interner.len(), 1);
        interner.release(a);
        assert_eq!(interner.find("shop"), Some(a));
        interner.release(b);
        assert_eq!(interner.find("shop"), None);
        assert_eq!(interner.len(), 0);
        let c = interner.intern("cart", |text: &str| Box::from(text));
        assert_eq!(c, a, "freed slots are reused");
        assert_eq!(&**interner.get(c), "cart");
    }
}
