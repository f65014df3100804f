//! Request ids and the wait registry: a proposer registers its request id,
//! proposes, and waits; the applier triggers the id with the result once the
//! entry is applied (etcd: `pkg/wait/wait.go`, `pkg/idutil`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

/// Number of independently locked shards, to keep proposers on different
/// cores from contending on one lock.
const SHARDS: usize = 16;

/// Id → waiting proposer.
pub struct Wait<T> {
    shards: Vec<Mutex<HashMap<u64, oneshot::Sender<T>>>>,
}

impl<T> Default for Wait<T> {
    fn default() -> Self {
        Wait {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl<T> Wait<T> {
    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<T>>> {
        let m = &self.shards[(id as usize) % SHARDS];
        // A panic while holding the lock cannot leave the map inconsistent
        // (single insert/remove), so a poisoned lock is still usable.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `id`; the receiver yields the result `trigger` delivers.
    pub fn register(&self, id: u64) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.shard(id).insert(id, tx);
        rx
    }

    /// Delivers `value` to the waiter of `id`, if there is one. Entries
    /// proposed by another member or an earlier run of this one have no
    /// waiter here.
    pub fn trigger(&self, id: u64, value: T) {
        if let Some(tx) = self.shard(id).remove(&id) {
            let _ = tx.send(value);
        }
    }

    /// Forgets `id` (the proposer gave up).
    pub fn cancel(&self, id: u64) {
        self.shard(id).remove(&id);
    }

    pub fn is_registered(&self, id: u64) -> bool {
        self.shard(id).contains_key(&id)
    }
}

/// Generates request ids unique across members and across restarts: the low
/// 16 bits of the member id, then a 48-bit counter that starts at the
/// current time in milliseconds shifted left by 8 (etcd: `pkg/idutil`).
pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

const SUFFIX_BITS: u32 = 48;
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;

impl IdGenerator {
    pub fn new(member_id: u64) -> IdGenerator {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        IdGenerator {
            prefix: (member_id & 0xFFFF) << SUFFIX_BITS,
            suffix: AtomicU64::new((ms << 8) & SUFFIX_MASK),
        }
    }

    pub fn next(&self) -> u64 {
        let s = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (s & SUFFIX_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_reaches_only_the_registered_waiter() {
        let w = Wait::default();
        let rx1 = w.register(1);
        let rx2 = w.register(2);
        w.trigger(2, "two");
        w.trigger(3, "nobody");
        assert_eq!(rx2.await.unwrap(), "two");
        assert!(w.is_registered(1));
        w.cancel(1);
        assert!(rx1.await.is_err(), "canceled waiter's sender is dropped");
    }

    #[test]
    fn ids_are_unique_and_carry_the_member_prefix() {
        let g = IdGenerator::new(0xABCD_1234);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x1234);
        assert_eq!(b & SUFFIX_MASK, (a & SUFFIX_MASK) + 1);
    }
}
