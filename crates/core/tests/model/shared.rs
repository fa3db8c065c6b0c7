//! Copy-on-write state parts with a cached hash.
//!
//! Most actions change one node. Sharing the others between a state and its
//! successors saves cloning them, and caching each part's hash saves hashing
//! them again for every state the checker fingerprints.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

#[derive(Clone)]
pub struct Shared<T> {
    value: Arc<T>,
    hash: u64,
}

/// A hash of `value` that is the same on every run.
pub fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut hasher = FxHasher(0);
    value.hash(&mut hasher);
    hasher.finish()
}

/// The Fx hash (rustc's): fast, and the same on every run. Its quality is
/// enough here because the checker hashes the result again.
#[derive(Default)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl<T: Clone + Hash> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared {
            hash: hash_of(&value),
            value: Arc::new(value),
        }
    }

    /// The cached hash of the value.
    pub fn hash_value(&self) -> u64 {
        self.hash
    }

    /// Change the value (cloning it first if another state shares it); the
    /// hash is brought up to date when the edit ends.
    pub fn edit(&mut self) -> Edit<'_, T> {
        Edit { shared: self }
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

pub struct Edit<'a, T: Clone + Hash> {
    shared: &'a mut Shared<T>,
}

impl<T: Clone + Hash> Deref for Edit<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.shared.value
    }
}

impl<T: Clone + Hash> DerefMut for Edit<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.shared.value)
    }
}

impl<T: Clone + Hash> Drop for Edit<'_, T> {
    fn drop(&mut self) {
        self.shared.hash = hash_of(&*self.shared.value);
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && (Arc::ptr_eq(&self.value, &other.value) || self.value == other.value)
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T> Hash for Shared<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}
