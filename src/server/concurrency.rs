//! The lock and election recipes that etcd runs server-side for its
//! `v3lockpb.Lock` and `v3electionpb.Election` services (etcd:
//! `client/v3/concurrency/{mutex,election,key}.go`, used by
//! `server/etcdserver/api/v3lock` and `v3election`), built on the same
//! Range, Txn, DeleteRange and watch operations a client would use.
//!
//! Like etcd's, these sessions are "orphaned": the server never keeps the
//! given lease alive; the client does. A lock or campaign with lease 0 gets
//! a fresh 60-second lease (etcd's default session TTL).

use bytes::Bytes;

use std::sync::{Arc, Weak};

use super::kv::Kv;
use super::lease::Leases;
use super::watch::Watch;
use crate::error::{Error, Result};
use crate::mvcc::watch::Created;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::response_op::Response as OpResp;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, PutRequest, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest,
};
use crate::proto::mvccpb::KeyValue;
use crate::proto::mvccpb::event::EventType;

/// etcd's default session TTL, for a lock or campaign without a lease.
const DEFAULT_SESSION_TTL: i64 = 60;

/// The end of the key range `prefix*`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn op(r: Op) -> RequestOp {
    RequestOp { request: Some(r) }
}

fn get(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: Bytes::copy_from_slice(key),
        ..Default::default()
    }
}

/// The oldest (or newest) key under `prefix`, optionally created no later
/// than `max_create`.
fn by_create(prefix: &[u8], order: SortOrder, max_create: i64) -> RangeRequest {
    RangeRequest {
        key: Bytes::copy_from_slice(prefix),
        range_end: prefix_end(prefix).into(),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create,
        ..Default::default()
    }
}

fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: Bytes::copy_from_slice(key),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        range_end: Bytes::new(),
    }
}

fn range_resp(t: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    match t.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(OpResp::ResponseRange(r)) => Some(r),
        _ => None,
    }
}

/// A held lock or a won election.
pub struct Held {
    pub header: Option<ResponseHeader>,
    pub key: Vec<u8>,
    pub rev: i64,
    pub lease: i64,
}

/// The lock and election recipes, on the KV, lease and watch facades.
pub struct Recipes {
    kv: Arc<Kv>,
    leases: Arc<Leases>,
    watch: Arc<Watch>,
}

impl Recipes {
    pub fn new(kv: Arc<Kv>, leases: Arc<Leases>, watch: Arc<Watch>) -> Recipes {
        Recipes { kv, leases, watch }
    }

    pub fn core(&self) -> &Arc<super::Core> {
        self.kv.core()
    }

    async fn session_lease(&self, lease: i64) -> Result<i64> {
        if lease != 0 {
            return Ok(lease);
        }
        let g = self
            .leases
            .lease_grant(LeaseGrantRequest {
                ttl: DEFAULT_SESSION_TTL,
                id: 0,
            })
            .await?;
        Ok(g.id)
    }

    /// Waits until the key `key` is deleted at a revision after `rev`.
    async fn wait_delete(&self, key: &[u8], rev: i64) -> Result<()> {
        let (stream, mut rx) = self.watch.open_stream();
        let req = WatchCreateRequest {
            key: Bytes::copy_from_slice(key),
            start_revision: rev + 1,
            ..Default::default()
        };
        if let Created::Refused(reason) = stream.create(&req).await {
            return Err(Error::Internal(reason));
        }
        while let Some(msg) = rx.recv().await {
            if msg.resp.canceled {
                return Err(Error::Compacted);
            }
            if msg
                .resp
                .events
                .iter()
                .any(|e| e.r#type == EventType::Delete as i32)
            {
                return Ok(());
            }
        }
        Err(Error::Stopped)
    }

    /// Waits until no key under `prefix` created at or before `max_rev`
    /// remains (etcd: `waitDeletes`); returns the last header seen.
    async fn wait_deletes(&self, prefix: &[u8], max_rev: i64) -> Result<Option<ResponseHeader>> {
        loop {
            let r = self
                .kv
                .range(&by_create(prefix, SortOrder::Descend, max_rev))
                .await?;
            let Some(last) = r.kvs.first() else {
                return Ok(r.header);
            };
            let rev = r.header.as_ref().map_or(0, |h| h.revision);
            self.wait_delete(&last.key, rev).await?;
        }
    }

    /// Acquires `name` for `lease` (etcd: `Mutex.Lock`); blocks until held.
    pub async fn lock(&self, name: &[u8], lease: i64) -> Result<Held> {
        let lease = self.session_lease(lease).await?;
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let mut key = prefix.clone();
        key.extend_from_slice(format!("{lease:x}").as_bytes());
        let put = PutRequest {
            key: Bytes::from(key.clone()),
            lease,
            ..Default::default()
        };
        let owner = by_create(&prefix, SortOrder::Ascend, 0);
        let t = self
            .kv
            .txn(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![op(Op::RequestPut(put)), op(Op::RequestRange(owner.clone()))],
                failure: vec![op(Op::RequestRange(get(&key))), op(Op::RequestRange(owner))],
            })
            .await?;
        let mut rev = t.header.as_ref().map_or(0, |h| h.revision);
        if !t.succeeded {
            rev = range_resp(&t, 0)
                .and_then(|r| r.kvs.first())
                .map_or(rev, |kv| kv.create_revision);
        }
        let first = range_resp(&t, 1).and_then(|r| r.kvs.first());
        // Release the key if we give up (error, or the client goes away).
        let guard = ReleaseOnDrop {
            kv: Arc::downgrade(&self.kv),
            key: Some(key.clone()),
        };
        let header = if first.is_none_or(|kv| kv.create_revision == rev) {
            t.header
        } else {
            let header = self.wait_deletes(&prefix, rev - 1).await?;
            if self.kv.range(&get(&key)).await?.kvs.is_empty() {
                return Err(Error::SessionExpired);
            }
            header
        };
        guard.disarm();
        Ok(Held {
            header,
            key,
            rev,
            lease,
        })
    }

    /// Releases a lock by deleting its key (etcd: `Unlock`).
    pub async fn unlock(&self, key: Bytes) -> Result<DeleteRangeResponse> {
        self.kv
            .delete_range(DeleteRangeRequest {
                key,
                ..Default::default()
            })
            .await
    }

    /// Campaigns for leadership of `name` (etcd: `Election.Campaign`);
    /// blocks until elected.
    pub async fn campaign(&self, name: &[u8], lease: i64, value: &Bytes) -> Result<Held> {
        let lease = self.session_lease(lease).await?;
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let mut key = prefix.clone();
        key.extend_from_slice(format!("{lease:x}").as_bytes());
        let put = PutRequest {
            key: Bytes::from(key.clone()),
            value: value.clone(),
            lease,
            ..Default::default()
        };
        let t = self
            .kv
            .txn(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![op(Op::RequestPut(put))],
                failure: vec![op(Op::RequestRange(get(&key)))],
            })
            .await?;
        let mut rev = t.header.as_ref().map_or(0, |h| h.revision);
        let guard = ReleaseOnDrop {
            kv: Arc::downgrade(&self.kv),
            key: Some(key.clone()),
        };
        if !t.succeeded {
            let kv = range_resp(&t, 0).and_then(|r| r.kvs.first()).cloned();
            if let Some(kv) = kv {
                rev = kv.create_revision;
                if kv.value != *value {
                    self.proclaim(&key, rev, lease, value).await?;
                }
            }
        }
        let header = self.wait_deletes(&prefix, rev - 1).await?;
        guard.disarm();
        Ok(Held {
            header,
            key,
            rev,
            lease,
        })
    }

    /// Updates the leader's value if `key` still leads (etcd: `Proclaim`).
    pub async fn proclaim(
        &self,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: &Bytes,
    ) -> Result<Option<ResponseHeader>> {
        let put = PutRequest {
            key: Bytes::copy_from_slice(key),
            value: value.clone(),
            lease,
            ..Default::default()
        };
        let t = self
            .kv
            .txn(TxnRequest {
                compare: vec![created_at(key, rev)],
                success: vec![op(Op::RequestPut(put))],
                failure: vec![],
            })
            .await?;
        if !t.succeeded {
            return Err(Error::ElectionNotLeader);
        }
        Ok(t.header)
    }

    /// Gives up leadership if `key` still leads (etcd: `Resign`).
    pub async fn resign(&self, key: &[u8], rev: i64) -> Result<Option<ResponseHeader>> {
        let del = DeleteRangeRequest {
            key: Bytes::copy_from_slice(key),
            ..Default::default()
        };
        let t = self
            .kv
            .txn(TxnRequest {
                compare: vec![created_at(key, rev)],
                success: vec![op(Op::RequestDeleteRange(del))],
                failure: vec![],
            })
            .await?;
        Ok(t.header)
    }

    /// The current leader's key-value (etcd: `Election.Leader`).
    pub async fn election_leader(&self, name: &[u8]) -> Result<(Option<ResponseHeader>, KeyValue)> {
        let mut prefix = name.to_vec();
        prefix.push(b'/');
        let r = self
            .kv
            .range(&by_create(&prefix, SortOrder::Ascend, 0))
            .await?;
        let kv = r.kvs.into_iter().next().ok_or(Error::ElectionNoLeader)?;
        Ok((r.header, kv))
    }

    /// Streams the leader's key-value whenever it changes (etcd:
    /// `Election.Observe`): the current leader (or, if none, the first one
    /// to campaign), then its proclamations, then its successors.
    pub fn observe(
        self: std::sync::Arc<Self>,
        name: Vec<u8>,
    ) -> impl futures::Stream<Item = Result<(Option<ResponseHeader>, KeyValue)>> {
        let mut prefix = name;
        prefix.push(b'/');
        async_stream::try_stream! {
            loop {
                let r = self.kv.range(&by_create(&prefix, SortOrder::Ascend, 0)).await?;
                let rev = r.header.as_ref().map_or(0, |h| h.revision);
                let (stream, mut rx) = self.watch.open_stream();
                let (mut header, mut kv) = match r.kvs.into_iter().next() {
                    Some(kv) => (r.header, kv),
                    None => {
                        // Nobody leads: the first put under the prefix does.
                        stream.create(&WatchCreateRequest {
                            key: Bytes::from(prefix.clone()),
                            range_end: prefix_end(&prefix).into(),
                            start_revision: rev,
                            ..Default::default()
                        }).await;
                        let mut found = None;
                        while found.is_none() {
                            let msg = rx.recv().await.ok_or(Error::Stopped)?;
                            if msg.resp.canceled {
                                Err(Error::Compacted)?;
                            }
                            found = msg.resp.events.iter()
                                .find(|e| e.r#type == EventType::Put as i32)
                                .and_then(|e| e.kv.clone());
                        }
                        let kv = found.ok_or(Error::Stopped)?;
                        let header = Some(ResponseHeader { revision: kv.mod_revision, ..Default::default() });
                        (header, kv)
                    }
                };
                drop((stream, rx));
                yield (header.take(), kv.clone());
                // Follow the leader's key until it goes away.
                let (stream, mut rx) = self.watch.open_stream();
                stream.create(&WatchCreateRequest {
                    key: kv.key.clone(),
                    start_revision: kv.mod_revision + 1,
                    ..Default::default()
                }).await;
                'leader: while let Some(msg) = rx.recv().await {
                    if msg.resp.canceled {
                        break 'leader;
                    }
                    let h = msg.resp.header;
                    for e in &msg.resp.events {
                        if e.r#type == EventType::Delete as i32 {
                            break 'leader;
                        }
                        if let Some(new) = &e.kv {
                            kv = new.clone();
                            yield (h, kv.clone());
                        }
                    }
                }
            }
        }
    }
}

/// Deletes a lock or campaign key unless disarmed: a waiter that gives up
/// (error or cancellation) must not stay queued (etcd deletes it too).
struct ReleaseOnDrop {
    kv: Weak<Kv>,
    key: Option<Vec<u8>>,
}

impl ReleaseOnDrop {
    fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        let (Some(key), Some(kv)) = (self.key.take(), self.kv.upgrade()) else {
            return;
        };
        tokio::spawn(async move {
            let _ = kv
                .delete_range(DeleteRangeRequest {
                    key: key.into(),
                    ..Default::default()
                })
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends_follow_clientv3() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
