//! Applying alarms (etcd: `apply/apply.go` `Alarm`), and the refusals
//! active alarms impose on other requests, as decorators in front of the
//! domain appliers (etcd: the capped and corrupt appliers,
//! `apply/apply.go` `applierV3Capped`, `applierV3Corrupt`).

use std::sync::Arc;

use super::{Applier, Response};
use crate::error::Error;
use crate::mvcc::Batch;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse};
use crate::proto::oxcdpb::internal_raft_request::Request;
use crate::server::alarm::{self, AlarmSet};
use crate::storage::schema;

/// A cross-cutting check in front of every domain applier: refuses a
/// request before it changes anything. Guards see only replicated state,
/// so every member refuses the same entries.
pub trait Guard: Send {
    fn refuse(&self, req: &Request) -> Option<Error>;
}

/// With a CORRUPT alarm active, nothing that changes data is applied.
pub struct CorruptGuard(pub Arc<AlarmSet>);

impl Guard for CorruptGuard {
    fn refuse(&self, req: &Request) -> Option<Error> {
        let changes_data = matches!(
            req,
            Request::Put(_)
                | Request::DeleteRange(_)
                | Request::Txn(_)
                | Request::Compaction(_)
                | Request::LeaseGrant(_)
                | Request::LeaseRevoke(_)
        );
        (self.0.corrupt() && changes_data).then_some(Error::Corrupt)
    }
}

/// With a NOSPACE alarm active, nothing that grows the data is applied
/// (deletes, compactions and revocations still are, to make room).
pub struct NoSpaceGuard(pub Arc<AlarmSet>);

impl Guard for NoSpaceGuard {
    fn refuse(&self, req: &Request) -> Option<Error> {
        if !self.0.nospace() {
            return None;
        }
        let grows = match req {
            Request::Put(_) | Request::LeaseGrant(_) => true,
            Request::Txn(t) => alarm::cost_txn(t) > 0,
            _ => false,
        };
        grows.then_some(Error::NoSpace)
    }
}

impl Applier {
    pub(super) fn apply_alarm(&self, batch: &mut Batch, a: &AlarmRequest) -> Response {
        let db = self.store.db().clone();
        let changed = match AlarmAction::try_from(a.action) {
            Ok(AlarmAction::Activate) => {
                let added = self.alarms.activate(a.member_id, a.alarm);
                if added {
                    batch.meta_put(&db, schema::alarm::key(a.member_id, a.alarm), Vec::new());
                    tracing::warn!(
                        member_id = format!("{:x}", a.member_id),
                        alarm = a.alarm,
                        "alarm raised"
                    );
                }
                added
            }
            Ok(AlarmAction::Deactivate) => {
                let removed = self.alarms.deactivate(a.member_id, a.alarm);
                if removed {
                    batch.meta_delete(&db, schema::alarm::key(a.member_id, a.alarm));
                    tracing::warn!(
                        member_id = format!("{:x}", a.member_id),
                        alarm = a.alarm,
                        "alarm cleared"
                    );
                }
                removed
            }
            // GET is answered without raft; nothing else exists.
            _ => false,
        };
        let alarms = if changed {
            vec![AlarmMember {
                member_id: a.member_id,
                alarm: a.alarm,
            }]
        } else {
            vec![]
        };
        Response::Alarm(AlarmResponse {
            header: Self::header(batch),
            alarms,
        })
    }
}
