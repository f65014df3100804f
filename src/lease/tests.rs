use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn lessor() -> (Lessor, Instant) {
    (Lessor::new(2, secs(300)), Instant::now())
}

#[test]
fn grants_clamp_to_the_minimum_ttl_and_refuse_duplicates() {
    let (mut l, t0) = lessor();
    assert_eq!(l.grant(1, 0, t0), Ok(2));
    assert_eq!(l.grant(2, 1, t0), Ok(2));
    assert_eq!(l.grant(3, -5, t0), Ok(2));
    assert_eq!(l.grant(4, 60, t0), Ok(60));
    assert_eq!(l.grant(4, 60, t0), Err(Error::LeaseExist));
    assert_eq!(l.ids(), vec![1, 2, 3, 4]);
    assert_eq!(l.revoke(4), Ok(()));
    assert_eq!(l.revoke(4), Err(Error::LeaseNotFound));
}

#[test]
fn only_the_primary_runs_deadlines() {
    let (mut l, t0) = lessor();
    l.grant(1, 10, t0).unwrap();
    assert_eq!(l.expired(t0 + secs(1000), 10), Vec::<i64>::new());
    assert_eq!(l.renew(1, t0), Err(Error::NotLeader));
    assert_eq!(l.time_to_live(1, t0), Some((10, 10)));
    l.promote(t0, secs(1));
    // Deadline: now + TTL + extend.
    assert_eq!(l.time_to_live(1, t0), Some((11, 10)));
    assert_eq!(l.expired(t0 + secs(10), 10), Vec::<i64>::new());
    assert_eq!(l.expired(t0 + secs(11), 10), vec![1]);
    // Reported once, then again only after the retry interval.
    assert_eq!(l.expired(t0 + secs(12), 10), Vec::<i64>::new());
    assert_eq!(l.expired(t0 + secs(11) + EXPIRED_RETRY, 10), vec![1]);
    l.demote();
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn keep_alive_resets_the_deadline_and_expired_leases_cannot_be_renewed() {
    let (mut l, t0) = lessor();
    l.promote(t0, Duration::ZERO);
    l.grant(7, 5, t0).unwrap();
    assert_eq!(l.renew(7, t0 + secs(4)), Ok((5, false)));
    assert_eq!(l.time_to_live(7, t0 + secs(4)), Some((5, 5)));
    assert_eq!(l.expired(t0 + secs(8), 10), Vec::<i64>::new());
    assert_eq!(l.expired(t0 + secs(9), 10), vec![7]);
    assert_eq!(l.renew(7, t0 + secs(10)), Err(Error::LeaseNotFound));
    assert_eq!(l.renew(99, t0), Err(Error::LeaseNotFound));
    assert_eq!(l.time_to_live(99, t0), None);
}

#[test]
fn expiry_is_reported_in_deadline_order_and_bounded() {
    let (mut l, t0) = lessor();
    l.promote(t0, Duration::ZERO);
    for id in 1..=10 {
        l.grant(id, 100 - id, t0).unwrap();
    }
    let first = l.expired(t0 + secs(1000), 3);
    assert_eq!(first, vec![10, 9, 8]);
    assert_eq!(l.expired(t0 + secs(1000), 100).len(), 7);
}

#[test]
fn checkpoints_carry_remaining_ttl_across_promotion() {
    let (mut l, t0) = lessor();
    l.promote(t0, Duration::ZERO);
    l.grant(1, 1000, t0).unwrap();
    l.grant(2, 100, t0).unwrap(); // shorter than the interval: no checkpoints
    assert_eq!(l.next_deadline(), Some(t0 + secs(100)));
    assert_eq!(l.due_checkpoints(t0 + secs(299), 10), vec![]);
    let due = l.due_checkpoints(t0 + secs(300), 10);
    assert_eq!(due, vec![(1, 700)]);
    // The applied checkpoint survives a change of leader (or a restart).
    l.checkpoint(1, 700);
    assert_eq!(l.record(1), Some((1000, 700)));
    l.demote();
    let t1 = t0 + secs(400);
    l.promote(t1, Duration::ZERO);
    assert_eq!(l.time_to_live(1, t1), Some((700, 1000)));
    // A keep-alive clears it: the full TTL applies again.
    assert_eq!(l.renew(1, t1), Ok((1000, true)));
    assert_eq!(l.record(1), Some((1000, 0)));
    assert_eq!(l.time_to_live(1, t1), Some((1000, 1000)));
}

#[test]
fn checkpoints_continue_after_a_grace_period_longer_than_the_interval() {
    let (mut l, t0) = (Lessor::new(2, secs(1)), Instant::now());
    l.grant(1, 30, t0).unwrap();
    // Promoted with a grace period: nothing to record at the first look...
    l.promote(t0, secs(1));
    assert_eq!(l.due_checkpoints(t0 + secs(1), 10), vec![]);
    // ...but the lease keeps being looked at.
    assert_eq!(l.due_checkpoints(t0 + secs(2), 10), vec![(1, 29)]);
    assert_eq!(l.due_checkpoints(t0 + secs(3), 10), vec![(1, 28)]);
}

#[test]
fn records_round_trip() {
    let v = crate::storage::schema::lease::encode_record(60, 42);
    assert_eq!(
        crate::storage::schema::lease::decode_record(&v),
        Some((60, 42))
    );
    assert_eq!(crate::storage::schema::lease::decode_record(b"short"), None);
    let k = crate::storage::schema::lease::attached(5, b"key");
    assert!(k.starts_with(&crate::storage::schema::lease::attached_prefix(5)));
    assert_eq!(
        crate::storage::schema::lease::decode_id(&crate::storage::schema::lease::lease(-2)),
        Some(-2)
    );
}
