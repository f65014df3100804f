//! Scenarios for the raft runner under the harness: scripted ones, random
//! runs of 3 and 5 members, and planted bugs the checks must catch.

use raft::prelude::{ConfChange, ConfChangeType, Message, MessageType, Snapshot};

use super::{Applied, Mix, Sim};

/// Ticks and delivers until a leader is known (at most `rounds` rounds).
fn elect(sim: &mut Sim, rounds: usize) -> usize {
    for _ in 0..rounds {
        if let Some(l) = sim.leader() {
            // Let the new leader's first entry commit everywhere reachable.
            sim.deliver_all(10_000);
            return l;
        }
        sim.tick_all();
        sim.deliver_all(10_000);
    }
    panic!("no leader after {rounds} rounds\n{}", sim.trace());
}

fn assert_safe(sim: &Sim) {
    let v = sim.violations();
    assert!(
        v.is_empty(),
        "violations: {v:#?}\nlast steps:\n{}",
        sim.trace()
    );
}

#[test]
fn three_members_elect_one_leader_and_replicate() {
    let mut sim = Sim::new(3, 1);
    let l = elect(&mut sim, 100);
    let ids: Vec<u64> = (0..20).map(|_| sim.propose(l)).collect();
    sim.deliver_all(10_000);
    sim.tick_all();
    sim.deliver_all(10_000);
    assert_safe(&sim);
    let leader_sm = sim.state_machine(l);
    for i in 0..3 {
        let sm = sim.state_machine(i);
        assert_eq!(sm.log, leader_sm.log, "member {i} applied the same entries");
        for id in &ids {
            assert!(sm.ids.contains(id), "member {i} applied write {id}");
        }
    }
    assert_eq!(sim.acked(), 20);
}

#[test]
fn a_proposal_without_a_leader_is_dropped_not_lost_in_silence() {
    let mut sim = Sim::new(3, 2);
    // No member has campaigned yet: nobody leads.
    let id = sim.propose(0);
    assert_eq!(sim.dropped(0), vec![id]);
    assert_safe(&sim);
}

#[test]
fn configuration_changes_are_applied_between_the_runs_of_normal_entries() {
    let mut sim = Sim::new(3, 3);
    let l = elect(&mut sim, 100);
    let follower = (l + 1) % 3;
    let before = sim.applied_of(follower);
    // Two writes, a configuration change and a write, committed together
    // on the follower: it is away while the others commit them.
    sim.partition(&[follower]);
    sim.propose(l);
    sim.propose(l);
    let mut cc = ConfChange::default();
    cc.set_change_type(ConfChangeType::AddLearnerNode);
    cc.node_id = 9;
    sim.propose_conf_change(l, cc);
    sim.propose(l);
    sim.deliver_all(10_000);
    sim.heal();
    for _ in 0..5 {
        sim.tick_all();
        sim.deliver_all(10_000);
    }
    assert_safe(&sim);
    let cc_index = before + 3;
    let calls: Vec<Applied> = sim
        .sink_calls(follower)
        .into_iter()
        .filter(|c| match c {
            Applied::Entries(v) => v.iter().any(|i| *i > before),
            Applied::ConfChange(i) => *i > before,
            Applied::Snapshot(_) => true,
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            Applied::Entries(vec![before + 1, before + 2]),
            Applied::ConfChange(cc_index),
            Applied::Entries(vec![before + 4]),
        ],
        "the committed run was split around the configuration change"
    );
    let sm = sim.state_machine(follower);
    assert_eq!(sm.conf.learners, vec![9], "the learner was added");
}

#[test]
fn a_snapshot_raft_does_not_take_is_discarded() {
    let mut sim = Sim::new(3, 4);
    let l = elect(&mut sim, 100);
    for _ in 0..5 {
        sim.propose(l);
    }
    sim.deliver_all(10_000);
    let f = (l + 1) % 3;
    let term = sim.log_state(l).hs.term;
    // A snapshot older than what the follower already committed.
    let mut snap = Snapshot::default();
    snap.set_data(b"stale-snapshot".to_vec().into());
    snap.mut_metadata().index = 2;
    snap.mut_metadata().term = 1;
    snap.mut_metadata().mut_conf_state().voters = sim.ids.clone();
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgSnapshot);
    m.from = sim.ids[l];
    m.to = sim.ids[f];
    m.term = term;
    m.set_snapshot(snap);
    sim.step(f, m);
    assert_eq!(
        sim.log_state(f).discarded,
        vec![b"stale-snapshot".to_vec()],
        "the runner asked the log to remove the snapshot's files"
    );
    assert!(
        !sim.sink_calls(f)
            .iter()
            .any(|c| matches!(c, Applied::Snapshot(_))),
        "nothing was installed"
    );
    assert_safe(&sim);
}

#[test]
fn reads_at_two_followers_get_their_own_answers() {
    let mut sim = Sim::new(3, 5);
    let l = elect(&mut sim, 100);
    for _ in 0..3 {
        sim.propose(l);
    }
    sim.deliver_all(10_000);
    let (a, b) = ((l + 1) % 3, (l + 2) % 3);
    sim.read(a);
    sim.read(b);
    sim.read(l);
    sim.deliver_all(10_000);
    sim.tick_all();
    sim.deliver_all(10_000);
    sim.check();
    let mut who: Vec<usize> = sim.answered.iter().map(|(m, _)| *m).collect();
    who.sort_unstable();
    let mut want = vec![a, b, l];
    want.sort_unstable();
    assert_eq!(who, want, "each member got the answer to its own read");
    let commit = sim.commit_of(l);
    for (m, index) in &sim.answered {
        assert_eq!(*index, commit, "read at member {m}");
    }
    assert_safe(&sim);
}

#[test]
fn an_isolated_leader_steps_down_and_the_majority_goes_on() {
    let mut sim = Sim::new(3, 6);
    let old = elect(&mut sim, 100);
    let old_term = sim.log_state(old).hs.term;
    sim.partition(&[old]);
    // A write the isolated leader takes is never acknowledged.
    let lost = sim.propose(old);
    let mut new = None;
    for _ in 0..200 {
        sim.tick_all();
        sim.deliver_all(10_000);
        if let Some(l) = sim.leader()
            && l != old
        {
            new = Some(l);
            break;
        }
    }
    let new = new.expect("the majority elects a new leader");
    assert!(sim.log_state(new).hs.term > old_term);
    for _ in 0..40 {
        sim.tick_all();
        sim.deliver_all(10_000);
    }
    assert!(
        !sim.is_leader(old),
        "the isolated leader stepped down (check quorum)"
    );
    let kept = sim.propose(new);
    sim.deliver_all(10_000);
    sim.converge(200);
    assert_safe(&sim);
    for i in 0..3 {
        let sm = sim.state_machine(i);
        assert!(
            sm.ids.contains(&kept),
            "member {i} has the majority's write"
        );
        assert!(
            !sm.ids.contains(&lost),
            "member {i} never applied the isolated leader's write"
        );
    }
}

#[test]
fn a_lagging_follower_catches_up_by_snapshot() {
    let mut sim = Sim::with_snapshot_count(3, 7, 5);
    let l = elect(&mut sim, 100);
    let f = (l + 1) % 3;
    sim.partition(&[f]);
    for _ in 0..30 {
        sim.propose(l);
        sim.deliver_all(10_000);
    }
    assert!(
        sim.log_state(l).truncated.0 > sim.applied_of(f),
        "the leader compacted what the follower lacks"
    );
    sim.converge(300);
    assert_safe(&sim);
    assert!(
        sim.sink_calls(f)
            .iter()
            .any(|c| matches!(c, Applied::Snapshot(_))),
        "the follower installed a snapshot"
    );
    assert_eq!(sim.state_machine(f).ids, sim.state_machine(l).ids);
}

#[test]
fn a_snapshot_installs_while_raft_goes_on_and_a_crash_before_it_ends_keeps_the_old_state() {
    let mut sim = Sim::with_snapshot_count(3, 7, 5);
    let l = elect(&mut sim, 100);
    let f = (l + 1) % 3;
    sim.partition(&[f]);
    for _ in 0..30 {
        sim.propose(l);
        sim.deliver_all(10_000);
    }
    let old = sim.state_machine(f);
    let old_log = sim.log_state(f);
    sim.heal();
    for _ in 0..100 {
        if sim.is_installing(f) {
            break;
        }
        sim.tick(l);
        sim.deliver_all(10_000);
    }
    assert!(sim.is_installing(f), "the follower started an install");
    // While the install runs, time passes and the leader goes on writing:
    // the follower keeps hearing it (no election) and applies nothing.
    let term = sim.log_state(l).hs.term;
    for _ in 0..40 {
        sim.tick_all();
        sim.propose(l);
        sim.deliver_all(10_000);
    }
    assert_safe(&sim);
    assert!(sim.is_installing(f));
    assert_eq!(sim.state_machine(f).applied, old.applied, "nothing applied");
    assert!(sim.is_leader(l), "the leader kept its place");
    assert_eq!(sim.log_state(l).hs.term, term, "no election meanwhile");
    assert!(sim.log_state(f).before_install.is_some());
    // A crash before the install's write finds the old log and state.
    sim.crash(f);
    assert_eq!(sim.log_state(f).truncated, old_log.truncated);
    assert_eq!(sim.log_state(f).entries.len(), old_log.entries.len());
    assert_eq!(sim.state_machine(f).applied, old.applied);
    // Started again, it installs a snapshot and catches up.
    sim.converge(300);
    assert_safe(&sim);
    assert!(
        sim.sink_calls(f)
            .iter()
            .any(|c| matches!(c, Applied::Snapshot(_))),
        "the follower installed a snapshot"
    );
    assert_eq!(sim.state_machine(f).ids, sim.state_machine(l).ids);
}

#[test]
fn restarting_every_member_keeps_every_acknowledged_write() {
    let mut sim = Sim::new(3, 8);
    let l = elect(&mut sim, 100);
    for _ in 0..10 {
        sim.propose(l);
    }
    sim.deliver_all(10_000);
    sim.check();
    let acked = sim.acked();
    assert!(acked > 0);
    for i in 0..3 {
        sim.crash(i);
    }
    for i in 0..3 {
        sim.restart(i);
    }
    sim.converge(300);
    assert_safe(&sim);
    assert_eq!(sim.acked(), acked);
}

/// Random runs: deliveries in any order, drops, duplicates, partitions,
/// crashes and restarts, proposals and reads anywhere; safety checked
/// after every step, convergence at the end.
fn random_runs(members: usize, seeds: std::ops::Range<u64>, steps: usize, snapshot_count: u64) {
    let mix = Mix::default();
    let (mut acked, mut snapshots, mut restarts, mut reads) = (0, 0, 0, 0);
    let (mut installs, mut crashed_installing) = (0, 0);
    for seed in seeds {
        let mut sim = Sim::with_snapshot_count(members, seed, snapshot_count);
        for _ in 0..steps {
            sim.random_step(&mix);
            let v = sim.violations();
            assert!(
                v.is_empty(),
                "seed {seed}, step {}: {v:#?}\nlast steps:\n{}",
                sim.steps,
                sim.trace()
            );
        }
        sim.converge(500);
        assert_safe(&sim);
        acked += sim.acked();
        snapshots += sim.snapshots_installed();
        restarts += sim.restarts;
        reads += sim.answered.len();
        installs += sim.installs;
        crashed_installing += sim.crashed_installing;
    }
    eprintln!(
        "{members} members: {acked} writes, {snapshots} snapshots ({installs} finished at a later step, {crashed_installing} crashed mid-install), {restarts} restarts, {reads} reads"
    );
    // The runs covered what they are for.
    assert!(acked > 0, "the runs made progress");
    assert!(snapshots > 0, "members caught up by snapshot");
    assert!(restarts > 0, "members restarted");
    assert!(installs > 0, "installs ran while raft went on");
    assert!(crashed_installing > 0, "members crashed mid-install");
    assert!(reads > 0, "reads were answered");
}

#[test]
fn random_runs_of_three_members_stay_safe() {
    random_runs(3, 0..12, 3000, 20);
}

#[test]
fn random_runs_of_five_members_stay_safe() {
    random_runs(5, 100..106, 3000, 20);
}

#[test]
fn random_runs_without_faults_make_steady_progress() {
    let mix = Mix {
        drop: 0,
        duplicate: 0,
        partition: 0,
        heal: 0,
        restart: 0,
        ..Mix::default()
    };
    let mut sim = Sim::new(3, 42);
    for _ in 0..3000 {
        sim.random_step(&mix);
    }
    sim.converge(100);
    assert_safe(&sim);
    assert!(sim.acked() > 100, "acknowledged {}", sim.acked());
}

// Planted bugs: the checks must catch each.

#[test]
fn the_check_catches_a_commit_without_a_quorum() {
    let mut sim = Sim::new(3, 9);
    let l = elect(&mut sim, 100);
    sim.check();
    assert_safe(&sim);
    // The leader alone has the new entry...
    sim.partition(&[l]);
    sim.propose(l);
    // ... and commits it anyway.
    assert!(sim.plant_commit_without_quorum());
    sim.check();
    let v = sim.violations();
    assert!(
        v.iter()
            .any(|m| m.contains("durable on only 1 of 3 voters")),
        "caught: {v:#?}"
    );
}

#[test]
fn the_check_catches_an_fsync_that_lies() {
    let mut sim = Sim::new(3, 10);
    let l = elect(&mut sim, 100);
    let (liar, away) = ((l + 1) % 3, (l + 2) % 3);
    sim.plant_lying_fsync(liar);
    sim.partition(&[away]);
    let id = sim.propose(l);
    sim.deliver_all(10_000);
    let v = sim.violations();
    assert!(
        v.iter()
            .any(|m| m.contains("durable on only 1 of 3 voters")),
        "caught: {v:#?}"
    );
    // And the write really is gone from the liar after a crash.
    sim.restart(liar);
    assert!(
        !sim.log_state(liar)
            .entries
            .iter()
            .any(|e| e.data.as_ref() == id.to_be_bytes())
    );
}

#[test]
fn the_check_catches_two_members_applying_different_entries() {
    let mut sim = Sim::new(3, 11);
    let l = elect(&mut sim, 100);
    sim.propose(l);
    sim.deliver_all(10_000);
    assert_safe(&sim);
    // A member whose log was rewritten under it (a bug in a log store)
    // applies something else at the next index.
    let f = (l + 1) % 3;
    sim.partition(&[f]);
    sim.propose(l);
    sim.deliver_all(10_000);
    let next = sim.applied_of(f) + 1;
    let forged = raft::prelude::Entry {
        index: next,
        term: sim.log_state(l).hs.term,
        data: 999_999u64.to_be_bytes().to_vec().into(),
        ..Default::default()
    };
    {
        use super::super::node::ApplySink as _;
        let mut sink = sim.sink_for(f);
        sink.apply(vec![forged]);
    }
    let v = sim.violations();
    assert!(
        v.iter().any(|m| m.contains("another member applied")),
        "caught: {v:#?}"
    );
}
