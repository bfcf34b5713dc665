//! Per-activation serialization: every change to one activation (verification, block, remove, …) holds
//! that activation's lock, so two requests never read the same counter and both write.
//!
//! The locks are striped: an activation id hashes to one of a fixed number of async mutexes. Memory stays
//! bounded whatever the number of activations, nothing needs cleaning up, and two activations that share
//! a stripe merely wait for each other for the length of one verification.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;

use tokio::sync::{Mutex, MutexGuard};

/// Number of stripes: far more than the requests that can be in flight at once.
const STRIPES: usize = 4096;

/// The lock table.
pub struct ActivationLocks {
    hasher: RandomState,
    stripes: Box<[Mutex<()>]>,
}

impl ActivationLocks {
    /// A table of [`STRIPES`] unlocked stripes.
    pub fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Waits for and takes the lock of `activation_id`.
    pub async fn lock(&self, activation_id: &str) -> MutexGuard<'_, ()> {
        let index = (self.hasher.hash_one(activation_id) % STRIPES as u64) as usize;
        self.stripes[index].lock().await
    }
}

impl Default for ActivationLocks {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ActivationLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActivationLocks({} stripes)", self.stripes.len())
    }
}
