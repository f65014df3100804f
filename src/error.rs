//! The one error type of oxcd, and the only place it becomes a gRPC status.
//!
//! Go clients (clientv3, etcdctl, kube-apiserver) recognise etcd errors by the
//! exact text of the gRPC status message, so each variant carries etcd's
//! message byte for byte and etcd's gRPC code (etcd:
//! `api/v3rpc/rpctypes/error.go`, mapped from internal errors by
//! `server/etcdserver/api/v3rpc/util.go`).
//!
//! Errors are `Clone + PartialEq` so they fit in apply results, oneshot
//! channels and test assertions. Storage failures are `Internal`; during
//! apply they are fatal (see `server::apply`), elsewhere they reach the client
//! as `Unknown`.

use std::fmt;

/// Every error a client can see from oxcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // ---- request validation
    /// Empty key in Range, Put, DeleteRange or a Txn compare.
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a missing key; a `RequestOp` with no request.
    KeyNotFound,
    /// `ignore_value` together with a non-empty value.
    ValueProvided,
    /// `ignore_lease` together with a non-zero lease.
    LeaseProvided,
    /// A txn with more compares or ops than `--max-txn-ops`.
    TooManyOps,
    /// Overlapping writes in one branch of a txn.
    DuplicateKey,
    /// A sort order or target outside the enum.
    InvalidSortOption,
    /// `client-api-version` metadata that is not valid UTF-8.
    InvalidClientApiVersion,
    /// The encoded request exceeds `--max-request-bytes`.
    RequestTooLarge,

    // ---- mvcc
    /// The revision asked for has been compacted away.
    Compacted,
    /// The revision asked for is beyond the current revision.
    FutureRev,
    /// The space quota is exhausted (NOSPACE alarm).
    NoSpace,

    // ---- lease
    LeaseNotFound,
    LeaseExist,
    LeaseTtlTooLarge,

    // ---- watch
    WatchCanceled,

    // ---- cluster membership
    MemberExist,
    PeerUrlExist,
    MemberNotEnoughStarted,
    MemberBadUrls,
    MemberNotFound,
    MemberNotLearner,
    LearnerNotReady,
    TooManyLearners,
    ClusterIdMismatch,

    // ---- auth
    RootUserNotExist,
    RootRoleNotExist,
    UserAlreadyExist,
    UserEmpty,
    UserNotFound,
    RoleAlreadyExist,
    RoleNotFound,
    RoleEmpty,
    AuthFailed,
    PermissionNotGiven,
    PermissionDenied,
    RoleNotGranted,
    PermissionNotGranted,
    AuthNotEnabled,
    InvalidAuthToken,
    InvalidAuthMgmt,
    AuthOldRevision,

    // ---- server and raft
    /// The apply loop lags the commit index by too much (back-pressure).
    TooManyRequests,
    NoLeader,
    NotLeader,
    LeaderChanged,
    NotCapable,
    Stopped,
    Timeout,
    TimeoutDueToLeaderFail,
    TimeoutDueToConnectionLost,
    TimeoutWaitAppliedIndex,
    TimeoutLeaderTransfer,
    Unhealthy,
    Corrupt,
    NotSupportedForLearner,
    BadLeaderTransferee,

    // ---- downgrade
    WrongDowngradeVersionFormat,
    InvalidDowngradeTargetVersion,
    ClusterVersionUnavailable,
    DowngradeInProcess,
    NoInflightDowngrade,

    // ---- context
    Canceled,
    DeadlineExceeded,

    // ---- strings etcd sends outside its table (code Unknown)
    /// Raft refused the proposal (e.g. no leader known yet).
    ProposalDropped,
    /// The proposal's context was canceled (the client went away).
    RequestCancelled,

    // ---- lock and election services (etcd's concurrency package)
    /// Proclaim or resign by a member that is not (any more) the leader.
    ElectionNotLeader,
    /// Leader of an election nobody campaigns in.
    ElectionNoLeader,
    /// Proclaim or Resign without a leader key.
    MissingLeaderKey,
    /// The lock's key vanished (its lease expired) while waiting.
    SessionExpired,

    /// A storage or other internal failure; the text is for logs and humans.
    Internal(String),
}

/// gRPC status codes, as numbers, so this enum stays free of transport types
/// everywhere but in the conversion at the bottom of this file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    FailedPrecondition,
    OutOfRange,
    ResourceExhausted,
    PermissionDenied,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Error {
    /// etcd's gRPC code for this error.
    pub fn code(&self) -> Code {
        use Code::*;
        use Error as E;
        match self {
            E::EmptyKey
            | E::KeyNotFound
            | E::ValueProvided
            | E::LeaseProvided
            | E::TooManyOps
            | E::DuplicateKey
            | E::InvalidSortOption
            | E::InvalidClientApiVersion
            | E::RequestTooLarge
            | E::MemberBadUrls
            | E::UserEmpty
            | E::RoleEmpty
            | E::AuthFailed
            | E::PermissionNotGiven
            | E::InvalidAuthMgmt
            | E::AuthOldRevision
            | E::WrongDowngradeVersionFormat
            | E::InvalidDowngradeTargetVersion => InvalidArgument,
            E::Compacted | E::FutureRev | E::LeaseTtlTooLarge => OutOfRange,
            E::NoSpace => ResourceExhausted,
            E::LeaseNotFound | E::MemberNotFound => NotFound,
            E::LeaseExist
            | E::MemberExist
            | E::PeerUrlExist
            | E::MemberNotLearner
            | E::LearnerNotReady
            | E::TooManyLearners
            | E::ClusterIdMismatch
            | E::RootUserNotExist
            | E::RootRoleNotExist
            | E::UserAlreadyExist
            | E::UserNotFound
            | E::RoleAlreadyExist
            | E::RoleNotFound
            | E::RoleNotGranted
            | E::PermissionNotGranted
            | E::AuthNotEnabled
            | E::NotLeader
            | E::NotCapable
            | E::NotSupportedForLearner
            | E::BadLeaderTransferee
            | E::ClusterVersionUnavailable
            | E::DowngradeInProcess
            | E::NoInflightDowngrade => FailedPrecondition,
            E::WatchCanceled | E::Canceled => Canceled,
            E::PermissionDenied => PermissionDenied,
            E::InvalidAuthToken => Unauthenticated,
            E::NoLeader
            | E::LeaderChanged
            | E::Stopped
            | E::Timeout
            | E::TimeoutDueToLeaderFail
            | E::TimeoutDueToConnectionLost
            | E::TimeoutWaitAppliedIndex
            | E::TimeoutLeaderTransfer
            | E::Unhealthy => Unavailable,
            E::Corrupt => DataLoss,
            E::DeadlineExceeded => DeadlineExceeded,
            // etcd's error map hands these two to grpc-go as plain errors, so
            // they reach clients with code Unknown (v3rpc/util.go); clients
            // recognise them by text either way.
            E::TooManyRequests | E::MemberNotEnoughStarted => Unknown,
            E::ProposalDropped | E::RequestCancelled | E::Internal(_) => Unknown,
            E::ElectionNotLeader
            | E::ElectionNoLeader
            | E::MissingLeaderKey
            | E::SessionExpired => Unknown,
        }
    }

    /// etcd's exact message text for this error.
    pub fn message(&self) -> &str {
        use Error as E;
        match self {
            E::EmptyKey => "etcdserver: key is not provided",
            E::KeyNotFound => "etcdserver: key not found",
            E::ValueProvided => "etcdserver: value is provided",
            E::LeaseProvided => "etcdserver: lease is provided",
            E::TooManyOps => "etcdserver: too many operations in txn request",
            E::DuplicateKey => "etcdserver: duplicate key given in txn request",
            E::InvalidSortOption => "etcdserver: invalid sort option",
            E::InvalidClientApiVersion => "etcdserver: invalid client api version",
            E::RequestTooLarge => "etcdserver: request is too large",
            E::Compacted => "etcdserver: mvcc: required revision has been compacted",
            E::FutureRev => "etcdserver: mvcc: required revision is a future revision",
            E::NoSpace => "etcdserver: mvcc: database space exceeded",
            E::LeaseNotFound => "etcdserver: requested lease not found",
            E::LeaseExist => "etcdserver: lease already exists",
            E::LeaseTtlTooLarge => "etcdserver: too large lease TTL",
            E::WatchCanceled => "etcdserver: watch canceled",
            E::MemberExist => "etcdserver: member ID already exist",
            E::PeerUrlExist => "etcdserver: Peer URLs already exists",
            E::MemberNotEnoughStarted => {
                "etcdserver: re-configuration failed due to not enough started members"
            }
            E::MemberBadUrls => "etcdserver: given member URLs are invalid",
            E::MemberNotFound => "etcdserver: member not found",
            E::MemberNotLearner => "etcdserver: can only promote a learner member",
            E::LearnerNotReady => {
                "etcdserver: can only promote a learner member which is in sync with leader"
            }
            E::TooManyLearners => "etcdserver: too many learner members in cluster",
            E::ClusterIdMismatch => "etcdserver: cluster ID mismatch",
            E::RootUserNotExist => "etcdserver: root user does not exist",
            E::RootRoleNotExist => "etcdserver: root user does not have root role",
            E::UserAlreadyExist => "etcdserver: user name already exists",
            E::UserEmpty => "etcdserver: user name is empty",
            E::UserNotFound => "etcdserver: user name not found",
            E::RoleAlreadyExist => "etcdserver: role name already exists",
            E::RoleNotFound => "etcdserver: role name not found",
            E::RoleEmpty => "etcdserver: role name is empty",
            E::AuthFailed => "etcdserver: authentication failed, invalid user ID or password",
            E::PermissionNotGiven => "etcdserver: permission not given",
            E::PermissionDenied => "etcdserver: permission denied",
            E::RoleNotGranted => "etcdserver: role is not granted to the user",
            E::PermissionNotGranted => "etcdserver: permission is not granted to the role",
            E::AuthNotEnabled => "etcdserver: authentication is not enabled",
            E::InvalidAuthToken => "etcdserver: invalid auth token",
            E::InvalidAuthMgmt => "etcdserver: invalid auth management",
            E::AuthOldRevision => "etcdserver: revision of auth store is old",
            E::TooManyRequests => "etcdserver: too many requests",
            E::NoLeader => "etcdserver: no leader",
            E::NotLeader => "etcdserver: not leader",
            E::LeaderChanged => "etcdserver: leader changed",
            E::NotCapable => "etcdserver: not capable",
            E::Stopped => "etcdserver: server stopped",
            E::Timeout => "etcdserver: request timed out",
            E::TimeoutDueToLeaderFail => {
                "etcdserver: request timed out, possibly due to previous leader failure"
            }
            E::TimeoutDueToConnectionLost => {
                "etcdserver: request timed out, possibly due to connection lost"
            }
            E::TimeoutWaitAppliedIndex => {
                "etcdserver: request timed out, waiting for the applied index took too long"
            }
            E::TimeoutLeaderTransfer => {
                "etcdserver: request timed out, leader transfer took too long"
            }
            E::Unhealthy => "etcdserver: unhealthy cluster",
            E::Corrupt => "etcdserver: corrupt cluster",
            E::NotSupportedForLearner => "etcdserver: rpc not supported for learner",
            E::BadLeaderTransferee => "etcdserver: bad leader transferee",
            E::WrongDowngradeVersionFormat => "etcdserver: wrong downgrade target version format",
            E::InvalidDowngradeTargetVersion => "etcdserver: invalid downgrade target version",
            E::ClusterVersionUnavailable => {
                "etcdserver: cluster version not found during downgrade"
            }
            E::DowngradeInProcess => "etcdserver: cluster has a downgrade job in progress",
            E::NoInflightDowngrade => "etcdserver: no inflight downgrade job",
            E::Canceled => "etcdserver: request canceled",
            E::DeadlineExceeded => "etcdserver: context deadline exceeded",
            E::ProposalDropped => "raft proposal dropped",
            E::RequestCancelled => "etcdserver: request cancelled",
            E::ElectionNotLeader => "election: not leader",
            E::ElectionNoLeader => "election: no leader",
            E::MissingLeaderKey => "\"leader\" field must be provided",
            E::SessionExpired => "mutex: session is expired",
            E::Internal(msg) => msg,
        }
    }

    /// Wraps a storage failure.
    pub fn internal(what: impl fmt::Display) -> Error {
        Error::Internal(what.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Error {
        Error::Internal(format!("storage: {e}"))
    }
}

impl From<Code> for tonic::Code {
    fn from(c: Code) -> tonic::Code {
        match c {
            Code::Canceled => tonic::Code::Cancelled,
            Code::Unknown => tonic::Code::Unknown,
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Code::NotFound => tonic::Code::NotFound,
            Code::FailedPrecondition => tonic::Code::FailedPrecondition,
            Code::OutOfRange => tonic::Code::OutOfRange,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::PermissionDenied => tonic::Code::PermissionDenied,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::DataLoss => tonic::Code::DataLoss,
            Code::Unauthenticated => tonic::Code::Unauthenticated,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        tonic::Status::new(e.code().into(), e.message().to_string())
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd's table (spec §3.2, etcd `api/v3rpc/rpctypes/error.go`): the
    /// variant, the gRPC code clients see, and the exact message.
    const TABLE: &[(Error, tonic::Code, &str)] = &[
        (
            Error::EmptyKey,
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided",
        ),
        (
            Error::KeyNotFound,
            tonic::Code::InvalidArgument,
            "etcdserver: key not found",
        ),
        (
            Error::ValueProvided,
            tonic::Code::InvalidArgument,
            "etcdserver: value is provided",
        ),
        (
            Error::LeaseProvided,
            tonic::Code::InvalidArgument,
            "etcdserver: lease is provided",
        ),
        (
            Error::TooManyOps,
            tonic::Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        ),
        (
            Error::DuplicateKey,
            tonic::Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        ),
        (
            Error::InvalidSortOption,
            tonic::Code::InvalidArgument,
            "etcdserver: invalid sort option",
        ),
        (
            Error::InvalidClientApiVersion,
            tonic::Code::InvalidArgument,
            "etcdserver: invalid client api version",
        ),
        (
            Error::Compacted,
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            Error::FutureRev,
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            Error::NoSpace,
            tonic::Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        ),
        (
            Error::LeaseNotFound,
            tonic::Code::NotFound,
            "etcdserver: requested lease not found",
        ),
        (
            Error::LeaseExist,
            tonic::Code::FailedPrecondition,
            "etcdserver: lease already exists",
        ),
        (
            Error::LeaseTtlTooLarge,
            tonic::Code::OutOfRange,
            "etcdserver: too large lease TTL",
        ),
        (
            Error::WatchCanceled,
            tonic::Code::Cancelled,
            "etcdserver: watch canceled",
        ),
        (
            Error::MemberExist,
            tonic::Code::FailedPrecondition,
            "etcdserver: member ID already exist",
        ),
        (
            Error::PeerUrlExist,
            tonic::Code::FailedPrecondition,
            "etcdserver: Peer URLs already exists",
        ),
        (
            Error::MemberNotEnoughStarted,
            tonic::Code::Unknown,
            "etcdserver: re-configuration failed due to not enough started members",
        ),
        (
            Error::MemberBadUrls,
            tonic::Code::InvalidArgument,
            "etcdserver: given member URLs are invalid",
        ),
        (
            Error::MemberNotFound,
            tonic::Code::NotFound,
            "etcdserver: member not found",
        ),
        (
            Error::MemberNotLearner,
            tonic::Code::FailedPrecondition,
            "etcdserver: can only promote a learner member",
        ),
        (
            Error::LearnerNotReady,
            tonic::Code::FailedPrecondition,
            "etcdserver: can only promote a learner member which is in sync with leader",
        ),
        (
            Error::TooManyLearners,
            tonic::Code::FailedPrecondition,
            "etcdserver: too many learner members in cluster",
        ),
        (
            Error::ClusterIdMismatch,
            tonic::Code::FailedPrecondition,
            "etcdserver: cluster ID mismatch",
        ),
        (
            Error::RequestTooLarge,
            tonic::Code::InvalidArgument,
            "etcdserver: request is too large",
        ),
        (
            Error::TooManyRequests,
            tonic::Code::Unknown,
            "etcdserver: too many requests",
        ),
        (
            Error::RootUserNotExist,
            tonic::Code::FailedPrecondition,
            "etcdserver: root user does not exist",
        ),
        (
            Error::RootRoleNotExist,
            tonic::Code::FailedPrecondition,
            "etcdserver: root user does not have root role",
        ),
        (
            Error::UserAlreadyExist,
            tonic::Code::FailedPrecondition,
            "etcdserver: user name already exists",
        ),
        (
            Error::UserEmpty,
            tonic::Code::InvalidArgument,
            "etcdserver: user name is empty",
        ),
        (
            Error::UserNotFound,
            tonic::Code::FailedPrecondition,
            "etcdserver: user name not found",
        ),
        (
            Error::RoleAlreadyExist,
            tonic::Code::FailedPrecondition,
            "etcdserver: role name already exists",
        ),
        (
            Error::RoleNotFound,
            tonic::Code::FailedPrecondition,
            "etcdserver: role name not found",
        ),
        (
            Error::RoleEmpty,
            tonic::Code::InvalidArgument,
            "etcdserver: role name is empty",
        ),
        (
            Error::AuthFailed,
            tonic::Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        (
            Error::PermissionNotGiven,
            tonic::Code::InvalidArgument,
            "etcdserver: permission not given",
        ),
        (
            Error::PermissionDenied,
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied",
        ),
        (
            Error::RoleNotGranted,
            tonic::Code::FailedPrecondition,
            "etcdserver: role is not granted to the user",
        ),
        (
            Error::PermissionNotGranted,
            tonic::Code::FailedPrecondition,
            "etcdserver: permission is not granted to the role",
        ),
        (
            Error::AuthNotEnabled,
            tonic::Code::FailedPrecondition,
            "etcdserver: authentication is not enabled",
        ),
        (
            Error::InvalidAuthToken,
            tonic::Code::Unauthenticated,
            "etcdserver: invalid auth token",
        ),
        (
            Error::InvalidAuthMgmt,
            tonic::Code::InvalidArgument,
            "etcdserver: invalid auth management",
        ),
        (
            Error::AuthOldRevision,
            tonic::Code::InvalidArgument,
            "etcdserver: revision of auth store is old",
        ),
        (
            Error::NoLeader,
            tonic::Code::Unavailable,
            "etcdserver: no leader",
        ),
        (
            Error::NotLeader,
            tonic::Code::FailedPrecondition,
            "etcdserver: not leader",
        ),
        (
            Error::LeaderChanged,
            tonic::Code::Unavailable,
            "etcdserver: leader changed",
        ),
        (
            Error::NotCapable,
            tonic::Code::FailedPrecondition,
            "etcdserver: not capable",
        ),
        (
            Error::Stopped,
            tonic::Code::Unavailable,
            "etcdserver: server stopped",
        ),
        (
            Error::Timeout,
            tonic::Code::Unavailable,
            "etcdserver: request timed out",
        ),
        (
            Error::TimeoutDueToLeaderFail,
            tonic::Code::Unavailable,
            "etcdserver: request timed out, possibly due to previous leader failure",
        ),
        (
            Error::TimeoutDueToConnectionLost,
            tonic::Code::Unavailable,
            "etcdserver: request timed out, possibly due to connection lost",
        ),
        (
            Error::TimeoutWaitAppliedIndex,
            tonic::Code::Unavailable,
            "etcdserver: request timed out, waiting for the applied index took too long",
        ),
        (
            Error::TimeoutLeaderTransfer,
            tonic::Code::Unavailable,
            "etcdserver: request timed out, leader transfer took too long",
        ),
        (
            Error::Unhealthy,
            tonic::Code::Unavailable,
            "etcdserver: unhealthy cluster",
        ),
        (
            Error::Corrupt,
            tonic::Code::DataLoss,
            "etcdserver: corrupt cluster",
        ),
        (
            Error::NotSupportedForLearner,
            tonic::Code::FailedPrecondition,
            "etcdserver: rpc not supported for learner",
        ),
        (
            Error::BadLeaderTransferee,
            tonic::Code::FailedPrecondition,
            "etcdserver: bad leader transferee",
        ),
        (
            Error::WrongDowngradeVersionFormat,
            tonic::Code::InvalidArgument,
            "etcdserver: wrong downgrade target version format",
        ),
        (
            Error::InvalidDowngradeTargetVersion,
            tonic::Code::InvalidArgument,
            "etcdserver: invalid downgrade target version",
        ),
        (
            Error::ClusterVersionUnavailable,
            tonic::Code::FailedPrecondition,
            "etcdserver: cluster version not found during downgrade",
        ),
        (
            Error::DowngradeInProcess,
            tonic::Code::FailedPrecondition,
            "etcdserver: cluster has a downgrade job in progress",
        ),
        (
            Error::NoInflightDowngrade,
            tonic::Code::FailedPrecondition,
            "etcdserver: no inflight downgrade job",
        ),
        (
            Error::Canceled,
            tonic::Code::Cancelled,
            "etcdserver: request canceled",
        ),
        (
            Error::DeadlineExceeded,
            tonic::Code::DeadlineExceeded,
            "etcdserver: context deadline exceeded",
        ),
        (
            Error::ProposalDropped,
            tonic::Code::Unknown,
            "raft proposal dropped",
        ),
        (
            Error::RequestCancelled,
            tonic::Code::Unknown,
            "etcdserver: request cancelled",
        ),
    ];

    #[test]
    fn every_error_has_etcds_code_and_exact_message() {
        for (err, code, msg) in TABLE {
            let status: tonic::Status = err.clone().into();
            assert_eq!(status.code(), *code, "code of {err:?}");
            assert_eq!(status.message(), *msg, "message of {err:?}");
        }
    }

    #[test]
    fn messages_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for (err, _, _) in TABLE {
            assert!(
                seen.insert(err.message()),
                "duplicate message {}",
                err.message()
            );
        }
    }

    #[test]
    fn internal_errors_are_unknown_with_their_text() {
        let status: tonic::Status = Error::internal("storage: disk on fire").into();
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert_eq!(status.message(), "storage: disk on fire");
    }
}
