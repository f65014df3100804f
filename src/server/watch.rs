//! The watch domain: streams of events from the watch hub, and the older
//! versions watch events carry as `prev_kv` (etcd: `server/storage/mvcc`'s
//! watchable store as `v3rpc/watch.go` uses it).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::core::Core;
use crate::mvcc::watch::{WatchHub, WatchMsg, WatchStream};
use crate::mvcc::{KeyRange, KvRead, RangeOptions, Store};
use crate::proto::mvccpb::KeyValue;

/// The watch facade.
pub struct Watch {
    core: Arc<Core>,
    store: Arc<Store>,
    hub: Arc<WatchHub>,
}

impl Watch {
    pub fn new(core: Arc<Core>, store: Arc<Store>, hub: Arc<WatchHub>) -> Watch {
        Watch { core, store, hub }
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// A new watch stream and the receiver of its messages.
    pub fn open_stream(&self) -> (WatchStream, mpsc::Receiver<WatchMsg>) {
        self.hub.open_stream()
    }

    /// The version of `key` at revision `rev`, if readable (for watch
    /// events' `prev_kv`). `rev` may be newer than what readers see yet:
    /// watchers get events before readers get the revision.
    pub fn kv_at(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        let opts = RangeOptions::default();
        let view = self.store.read_written(rev);
        view.range(KeyRange::Key(key), &opts)
            .ok()?
            .kvs
            .into_iter()
            .next()
    }
}
