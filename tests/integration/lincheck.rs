//! A linearizability checker for histories of a key-value register, in the
//! style of Knossos and porcupine (the Wing–Gong–Lowe search with
//! memoization).
//!
//! Test clients record every operation they issue into a [`History`]: the
//! operation, the time it was called, the time it returned and what the
//! client saw ([`Outcome`]). [`check`] then decides whether some total order
//! of the operations (1) respects real time, i.e. an operation that returned
//! before another was called comes first, and (2) is a legal sequential
//! execution of a map from key to optional value, starting with every key
//! absent.
//!
//! # Algorithm
//!
//! - **P-compositionality.** Every operation touches one key, and a history
//!   is linearizable iff each key's sub-history is, so keys are checked one
//!   at a time. A key's values are interned, so the model state is a `u32`
//!   (0 = absent, `i + 1` = the i-th value).
//! - **WGL search.** A key's completed operations become call and return
//!   entries in a doubly linked list sorted by time (calls first on ties, so
//!   touching intervals count as concurrent). The operations that may take
//!   effect next are the calls before the first return entry: an operation
//!   whose return comes first must take effect before anything called
//!   later. The search tries a candidate: if the model allows it, the
//!   operation's two entries are unlinked (dancing links), the old state is
//!   pushed on a stack and the scan restarts from the head of the list; when
//!   the scan reaches a return entry, nothing else can go next, so it pops
//!   the stack, relinks the entries and tries the candidate after the popped
//!   one. It succeeds when every completed operation has taken effect and
//!   fails when the stack is empty.
//! - **Memoization.** Two search nodes with the same set of operations taken
//!   effect and the same state have the same future, so each node is
//!   remembered and a node already seen is not explored again. The set is
//!   stored compactly: the index of the first operation not yet taken
//!   effect (operations are numbered by call time, so nearly all before it
//!   have), plus the few taken-effect operations after it. A value that no
//!   remaining operation refers to (no read of it, no CAS expecting it)
//!   behaves like any other such value from then on, so all of them count
//!   as one state.
//! - **Unknown outcomes.** A write (put, delete, CAS) whose client got an
//!   error or a timeout may have taken effect at any time after its call,
//!   or never: it is an optional operation with an infinite return time. It
//!   has no return entry, so it never forces anything, and the search
//!   succeeds as soon as all *completed* operations have taken effect. An
//!   unknown read says nothing and is dropped. Optional operations multiply
//!   the search space, which four rules keep in check, none of which loses a
//!   linearization (each pruned one can be turned into one that is searched
//!   by dropping unknown operations or swapping equivalent ones):
//!   - a node is pruned if a seen node *dominates* it: same completed set
//!     and state, and a sub-multiset of its unknown operations applied
//!     (fewer applied leaves more options);
//!   - completed candidates are tried before unknown ones (those called
//!     before the first return entry), so dominating nodes tend to come
//!     first;
//!   - an unknown operation must matter: after one is applied, the search
//!     follows the state the key would have without it, and cuts the branch
//!     as soon as both reach equivalent states (see `KeyHistory::advance`);
//!     an unknown write never directly follows another unknown operation,
//!     and one is only applied if some operation can follow it;
//!   - of unknown operations with equivalent effects, the earliest called is
//!     applied first.
//!
//! When a key is not linearizable, the explanation names the key, the
//! longest linearizable prefix the search found, the key's value after it,
//! and the operations none of which could take effect next.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One client operation on a single key, recorded by a test client.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: String,
        value: String,
    },
    /// Linearizable read; `None` = key absent.
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
    /// Txn: if value(key) == expected (None = key absent) then put(key, new).
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

impl Op {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Get { key } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Put/Delete completed.
    Done,
    /// Get's result.
    Value(Option<String>),
    /// Delete's count of deleted keys (0 or 1).
    Deleted(u64),
    /// Cas's `succeeded`.
    Cas(bool),
    /// The client got an error or timed out: the write may or may not have
    /// taken effect, at any time after the call. (For Get, an Unknown op
    /// can simply be dropped.)
    Unknown,
}

/// One recorded operation: who issued it, when, and what the client saw.
#[derive(Debug, Clone)]
pub struct Event {
    pub client: usize,
    pub op: Op,
    /// Nanoseconds since the test started.
    pub call: u64,
    /// Nanoseconds since the test started; ignored for `Outcome::Unknown`
    /// (treated as +infinity).
    pub ret: u64,
    pub outcome: Outcome,
}

/// A shared recorder that test clients push their events into.
#[derive(Debug)]
pub struct History {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl History {
    /// A new, empty history whose clock starts now.
    pub fn new() -> Arc<History> {
        Arc::new(History {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
        })
    }

    /// Nanoseconds since the history was created.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records one event (a poisoned lock is recovered).
    pub fn record(&self, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(e);
    }

    /// A copy of every event recorded so far, in recording order.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// What a successful check covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckStats {
    /// Distinct keys in the history.
    pub keys: usize,
    /// Operations checked (unknown reads are dropped and not counted).
    pub ops: usize,
}

/// The search-step budget [`check`] uses.
pub const DEFAULT_MAX_STEPS: u64 = 50_000_000;

/// Checks the history; `Ok` if it is linearizable, otherwise `Err` with an
/// explanation naming the key and the operations that could not be
/// linearized. Initial state: every key absent.
pub fn check(events: &[Event]) -> Result<CheckStats, String> {
    check_with_budget(events, DEFAULT_MAX_STEPS)
}

/// Like [`check`], but gives up with `Err("budget exhausted ...")` after
/// `max_steps` search steps in total over all keys.
pub fn check_with_budget(events: &[Event], max_steps: u64) -> Result<CheckStats, String> {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        by_key.entry(e.op.key()).or_default().push(i);
    }
    let mut budget = max_steps;
    let mut ops = 0;
    for (key, indices) in &by_key {
        let sub = KeyHistory::build(events, key, indices)?;
        ops += sub.ops.len();
        match sub.search(&mut budget) {
            Ok(()) => {}
            Err(Stuck::Budget) => {
                return Err(format!(
                    "budget exhausted: {max_steps} search steps were not enough to decide key \
                     {key:?} ({} ops, {} with unknown outcome); the history is undecided",
                    sub.ops.len(),
                    sub.ops.len() - sub.completed,
                ));
            }
            Err(Stuck::NotLinearizable { prefix, state }) => {
                return Err(sub.explain(events, key, &prefix, state));
            }
        }
    }
    Ok(CheckStats {
        keys: by_key.len(),
        ops,
    })
}

/// An operation's effect on the interned model state (0 = absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// A put, or a delete that did not report a count (writes state 0).
    Write(u32),
    /// A read, or a delete that deleted nothing (reads state 0).
    Read(u32),
    /// A delete that reported deleting one key.
    DeletePresent,
    /// A compare-and-swap; `succeeded` is `None` when unknown.
    Cas {
        expected: u32,
        new: u32,
        succeeded: Option<bool>,
    },
}

impl Kind {
    /// The state after the operation, or `None` if it cannot happen in
    /// `state`.
    fn step(self, state: u32) -> Option<u32> {
        match self {
            Kind::Write(v) => Some(v),
            Kind::Read(v) => (state == v).then_some(state),
            Kind::DeletePresent => (state != 0).then_some(0),
            Kind::Cas {
                expected,
                new,
                succeeded,
            } => match succeeded {
                Some(true) => (state == expected).then_some(new),
                Some(false) => (state != expected).then_some(state),
                None => Some(if state == expected { new } else { state }),
            },
        }
    }
}

/// One operation of a key's sub-history.
#[derive(Debug)]
struct KeyOp {
    /// Index in the checked `events` slice.
    event: usize,
    call: u64,
    /// `None` for an unknown outcome (+infinity).
    ret: Option<u64>,
    kind: Kind,
}

/// Why a key's search stopped without success.
enum Stuck {
    Budget,
    /// The deepest sequence of operations (indices into `KeyHistory::ops`)
    /// that took effect, and the state after it.
    NotLinearizable {
        prefix: Vec<usize>,
        state: u32,
    },
}

/// A key's operations: the `completed` ones first, sorted by call time, then
/// the unknown ones, sorted by call time.
struct KeyHistory {
    ops: Vec<KeyOp>,
    completed: usize,
    /// For an unknown operation: the unknown operation with the same effect
    /// called just before it, if any (`NIL` otherwise).
    prev_twin: Vec<usize>,
    /// Interned values; state `i + 1` is `values[i]`.
    values: Vec<String>,
    /// For each state: the operations that can tell it apart from other
    /// present values (reads of it, CAS expecting it), ascending.
    refs: Vec<Vec<usize>>,
    /// For each state: the unknown CAS operations expecting it.
    cas_expecting: Vec<Vec<usize>>,
}

const NIL: usize = usize::MAX;
/// Head sentinel of the list of completed operations' calls and returns.
const MAIN: usize = 0;
/// Head sentinel of the list of unknown operations' calls.
const UNKNOWN: usize = 1;

#[derive(Debug)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a completed operation's call: its return entry.
    ret_entry: usize,
    prev: usize,
    next: usize,
}

/// The doubly linked entry lists; removed entries keep their links, so
/// they can be put back in reverse order of removal.
struct Lists {
    e: Vec<Entry>,
}

impl Lists {
    fn new(ops: &[KeyOp]) -> Lists {
        let sentinel = || Entry {
            op: NIL,
            is_call: false,
            ret_entry: NIL,
            prev: NIL,
            next: NIL,
        };
        let mut lists = Lists {
            e: vec![sentinel(), sentinel()],
        };
        // (time, is return, op): calls before returns at equal times.
        let mut main: Vec<(u64, bool, usize)> = Vec::new();
        let mut unknown: Vec<(u64, usize)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op.ret {
                Some(ret) => {
                    main.push((op.call, false, i));
                    main.push((ret, true, i));
                }
                None => unknown.push((op.call, i)),
            }
        }
        main.sort_unstable();
        unknown.sort_unstable();
        let mut call_entry = vec![NIL; ops.len()];
        let mut tail = MAIN;
        for &(_, is_ret, op) in &main {
            let idx = lists.push_after(tail, op, !is_ret);
            if is_ret {
                lists.e[call_entry[op]].ret_entry = idx;
            } else {
                call_entry[op] = idx;
            }
            tail = idx;
        }
        tail = UNKNOWN;
        for &(_, op) in &unknown {
            tail = lists.push_after(tail, op, true);
        }
        lists
    }

    fn push_after(&mut self, tail: usize, op: usize, is_call: bool) -> usize {
        let idx = self.e.len();
        self.e.push(Entry {
            op,
            is_call,
            ret_entry: NIL,
            prev: tail,
            next: NIL,
        });
        self.e[tail].next = idx;
        idx
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.e[i].prev, self.e[i].next);
        self.e[prev].next = next;
        if next != NIL {
            self.e[next].prev = prev;
        }
    }

    fn relink(&mut self, i: usize) {
        let (prev, next) = (self.e[i].prev, self.e[i].next);
        self.e[prev].next = i;
        if next != NIL {
            self.e[next].prev = i;
        }
    }

    /// Removes a call entry and its return entry, if any.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let ret = self.e[call].ret_entry;
        if ret != NIL {
            self.unlink(ret);
        }
    }

    /// Undoes `lift(call)`; must be called in reverse order of the lifts.
    fn unlift(&mut self, call: usize) {
        let ret = self.e[call].ret_entry;
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }
}

/// The canonical state of a value no remaining operation can tell apart
/// from other such values (see `KeyHistory::canon`).
const DEAD: u32 = u32::MAX - 1;

/// A canonical effect of unknown operations, and how many were applied.
type Run = ([u32; 3], u32);

/// The memo of search nodes seen. A node's key holds its canonical state,
/// obligation and set of completed operations taken effect; each key keeps
/// the minimal multisets of (canonical) unknown operations applied seen
/// with it.
#[derive(Default)]
struct Memo {
    seen: HashMap<Box<[u32]>, Vec<Box<[Run]>>>,
}

impl Memo {
    /// Records the node; false if a node seen before dominates it: same
    /// key, or the same key without obligation, and a sub-multiset of its
    /// unknown operations.
    fn insert(&mut self, key: &mut [u32], unknown: &[Run]) -> bool {
        let dominated = |seen: &HashMap<Box<[u32]>, Vec<Box<[Run]>>>, key: &[u32]| {
            seen.get(key)
                .is_some_and(|sets| sets.iter().any(|s| is_subset(s, unknown)))
        };
        if dominated(&self.seen, key) {
            return false;
        }
        let obligation = key[1];
        if obligation != 0 {
            key[1] = 0;
            let free = dominated(&self.seen, key);
            key[1] = obligation;
            if free {
                return false;
            }
        }
        let sets = self.seen.entry(Box::from(&*key)).or_default();
        sets.retain(|s| !is_subset(unknown, s));
        sets.push(unknown.into());
        true
    }
}

/// Whether the multiset `a` is contained in `b` (runs sorted by effect).
fn is_subset(a: &[Run], b: &[Run]) -> bool {
    let mut b = b.iter();
    'next: for (effect, count) in a {
        for (other, other_count) in b.by_ref() {
            if other == effect && other_count >= count {
                continue 'next;
            }
            if other >= effect {
                return false;
            }
        }
        return false;
    }
    true
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set_bit(bits: &mut [u64], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

impl KeyHistory {
    fn build(events: &[Event], key: &str, indices: &[usize]) -> Result<KeyHistory, String> {
        let mut values: Vec<String> = Vec::new();
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut intern = |v: Option<&str>| -> u32 {
            let Some(v) = v else { return 0 };
            if let Some(&id) = ids.get(v) {
                return id;
            }
            values.push(v.to_string());
            let id = values.len() as u32;
            ids.insert(v.to_string(), id);
            id
        };
        let mut ops = Vec::with_capacity(indices.len());
        for &i in indices {
            let e = &events[i];
            let unknown = e.outcome == Outcome::Unknown;
            if !unknown && e.ret < e.call {
                return Err(format!(
                    "malformed history: {} returned before it was called",
                    describe(i, e)
                ));
            }
            let kind = match (&e.op, &e.outcome) {
                (Op::Get { .. }, Outcome::Unknown) => continue,
                (Op::Get { .. }, Outcome::Value(v)) => Kind::Read(intern(v.as_deref())),
                (Op::Put { value, .. }, Outcome::Done | Outcome::Unknown) => {
                    Kind::Write(intern(Some(value)))
                }
                (Op::Delete { .. }, Outcome::Done | Outcome::Unknown) => Kind::Write(0),
                (Op::Delete { .. }, Outcome::Deleted(0)) => Kind::Read(0),
                (Op::Delete { .. }, Outcome::Deleted(1)) => Kind::DeletePresent,
                (Op::Cas { expected, new, .. }, Outcome::Cas(_) | Outcome::Unknown) => Kind::Cas {
                    expected: intern(expected.as_deref()),
                    new: intern(Some(new)),
                    succeeded: match e.outcome {
                        Outcome::Cas(ok) => Some(ok),
                        _ => None,
                    },
                },
                _ => {
                    return Err(format!(
                        "malformed history: impossible outcome in {}",
                        describe(i, e)
                    ));
                }
            };
            ops.push(KeyOp {
                event: i,
                call: e.call,
                ret: (!unknown).then_some(e.ret),
                kind,
            });
        }
        if values.len() >= DEAD as usize {
            return Err(format!("key {key:?} has too many values"));
        }
        ops.sort_by_key(|op| (op.ret.is_none(), op.call, op.event));
        let completed = ops.iter().filter(|op| op.ret.is_some()).count();
        let mut refs = vec![Vec::new(); values.len() + 1];
        for (i, op) in ops.iter().enumerate() {
            match op.kind {
                Kind::Read(v) | Kind::Cas { expected: v, .. } if v != 0 => refs[v as usize].push(i),
                _ => {}
            }
        }
        // Unknown operations are twins if they have the same effect, where
        // all values nothing refers to count as one.
        let unreferenced = |v: u32| {
            if v != 0 && refs[v as usize].is_empty() {
                DEAD
            } else {
                v
            }
        };
        let mut prev_twin = vec![NIL; ops.len()];
        let mut last: HashMap<Kind, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate().skip(completed) {
            let class = match op.kind {
                Kind::Write(v) => Kind::Write(unreferenced(v)),
                Kind::Cas {
                    expected,
                    new,
                    succeeded,
                } => Kind::Cas {
                    expected,
                    new: unreferenced(new),
                    succeeded,
                },
                other => other,
            };
            if let Some(prev) = last.insert(class, i) {
                prev_twin[i] = prev;
            }
        }
        let mut cas_expecting = vec![Vec::new(); values.len() + 1];
        for (i, op) in ops.iter().enumerate().skip(completed) {
            if let Kind::Cas { expected, .. } = op.kind {
                cas_expecting[expected as usize].push(i);
            }
        }
        Ok(KeyHistory {
            ops,
            completed,
            prev_twin,
            values,
            refs,
            cas_expecting,
        })
    }

    /// The state, or `DEAD` if it is a value no remaining operation refers
    /// to (`bits`: the operations taken effect, which include all below
    /// `applied_below`). All such values behave alike from here on: reads
    /// and CAS of other values fail on them, a delete finds them present,
    /// writes replace them.
    fn canon(&self, state: u32, bits: &[u64], applied_below: usize) -> u32 {
        let refs = &self.refs[state as usize];
        let dead = state != 0
            && (refs.last().is_none_or(|&op| op < applied_below)
                || refs.iter().rev().all(|&op| bit(bits, op)));
        if dead { DEAD } else { state }
    }

    /// Applies `op` (already marked in `bits`) to the node's state and
    /// obligation. `None` if the model forbids it, or if it would make the
    /// unknown operations applied since the obligation began redundant.
    ///
    /// Only linearizations in which every applied unknown operation matters
    /// are searched. Applying an unknown operation opens an obligation
    /// `alt`: the state the key would have without the unknown operations
    /// applied since. While it is open, each op is also run from `alt`: if
    /// an op cannot run from `alt`, the unknown operations were needed and
    /// the obligation closes; if it reaches an equivalent state from `alt`,
    /// they were not (the linearization without them is equivalent and is
    /// searched anyway), so this branch is cut. Any linearization can be
    /// reduced to one never cut by dropping redundant unknown operations, so
    /// nothing is lost.
    fn advance(
        &self,
        op: usize,
        bits: &[u64],
        state: u32,
        obligation: Option<u32>,
    ) -> Option<(u32, Option<u32>)> {
        let kind = self.ops[op].kind;
        let next = kind.step(state)?;
        let alt = if op < self.completed {
            let Some(alt) = obligation else {
                return Some((next, None));
            };
            match kind.step(alt) {
                None => return Some((next, None)),
                Some(alt_next) => alt_next,
            }
        } else if next == state {
            // An unknown CAS that does not fire changes nothing.
            return None;
        } else {
            obligation.unwrap_or(state)
        };
        (self.canon(next, bits, 0) != self.canon(alt, bits, 0)).then_some((next, Some(alt)))
    }

    /// The memo key of a node, and its applied unknown operations as a
    /// sorted multiset of canonical effects.
    fn node_key(
        &self,
        bits: &[u64],
        state: u32,
        obligation: Option<u32>,
        key: &mut Vec<u32>,
        effects: &mut Vec<[u32; 3]>,
        unknown: &mut Vec<Run>,
    ) {
        // The first completed operation not taken effect; there is one
        // while the search runs.
        let first_zero = bits
            .iter()
            .position(|w| *w != u64::MAX)
            .map_or(self.completed, |i| {
                i * 64 + bits[i].trailing_ones() as usize
            })
            .min(self.completed);
        key.clear();
        effects.clear();
        let canon = |v: u32| self.canon(v, bits, first_zero);
        let obligation = obligation.map_or(0, |alt| canon(alt) + 1);
        key.extend([canon(state), obligation, first_zero as u32]);
        // Counts of the commonest effects, which sort first: delete, write
        // of a dead value.
        let (mut deletes, mut dead_writes) = (0, 0);
        for (w, &word) in bits.iter().enumerate().skip(first_zero / 64) {
            let mut rest = word;
            while rest != 0 {
                let i = w * 64 + rest.trailing_zeros() as usize;
                rest &= rest - 1;
                if i < self.completed {
                    if i > first_zero {
                        key.push(i as u32);
                    }
                    continue;
                }
                // An operation's effect must not depend on whether it was
                // applied itself, so a CAS keeps its expected value (it
                // refers to it).
                match self.ops[i].kind {
                    Kind::Write(0) => deletes += 1,
                    Kind::Write(v) if canon(v) == DEAD => dead_writes += 1,
                    Kind::Write(v) => effects.push([1, v, 0]),
                    Kind::Cas { expected, new, .. } if new == expected => {
                        effects.push([2, expected, new]);
                    }
                    Kind::Cas { expected, new, .. } => effects.push([2, expected, canon(new)]),
                    // Unknown operations are writes or CAS.
                    Kind::Read(v) => effects.push([3, v, 0]),
                    Kind::DeletePresent => effects.push([4, 0, 0]),
                }
            }
        }
        effects.sort_unstable();
        unknown.clear();
        for (effect, count) in [([0, 0, 0], deletes), ([0, 1, 0], dead_writes)] {
            if count > 0 {
                unknown.push((effect, count));
            }
        }
        for &effect in effects.iter() {
            match unknown.last_mut() {
                Some((last, count)) if *last == effect => *count += 1,
                _ => unknown.push((effect, 1)),
            }
        }
    }

    /// Whether anything can go next after an unknown operation left the key
    /// in `state` with the obligation `alt` (see `advance`), or the node is
    /// a dead end: that takes a completed candidate (the same as before the
    /// unknown operation) that keeps the obligation's point, or an unknown
    /// CAS that fires (an unknown write cannot go next, and an unknown CAS
    /// that does not fire changes nothing). Canonical states are computed
    /// without the next operation applied, which errs on the side of "yes".
    fn has_follower(
        &self,
        lists: &Lists,
        bits: &[u64],
        state: u32,
        alt: Option<u32>,
        limit: u64,
    ) -> bool {
        let Some(alt) = alt else {
            return true;
        };
        let mut entry = lists.e[MAIN].next;
        while entry != NIL && lists.e[entry].is_call {
            let kind = self.ops[lists.e[entry].op].kind;
            if let Some(next) = kind.step(state) {
                match kind.step(alt) {
                    None => return true,
                    Some(alt_next)
                        if self.canon(alt_next, bits, 0) != self.canon(next, bits, 0) =>
                    {
                        return true;
                    }
                    Some(_) => {}
                }
            }
            entry = lists.e[entry].next;
        }
        self.cas_expecting[state as usize]
            .iter()
            .any(|&cas| !bit(bits, cas) && self.ops[cas].call <= limit)
    }

    /// Whether the unknown operation `op` may go next, as far as the search
    /// order goes (`advance` checks the model):
    /// - of twins (unknown operations with equivalent effects), the earliest
    ///   called goes first: swapping twins keeps a linearization valid;
    /// - while an obligation is open, no unknown write: it would overwrite
    ///   the unknown operations applied since the obligation opened, and
    ///   dropping those keeps the linearization valid.
    fn unknown_may_go(&self, op: usize, bits: &[u64], obligation: Option<u32>) -> bool {
        let twin = self.prev_twin[op];
        (twin == NIL || bit(bits, twin))
            && !(obligation.is_some() && matches!(self.ops[op].kind, Kind::Write(_)))
    }

    /// The WGL search; `Ok` if the key's history is linearizable.
    fn search(&self, budget: &mut u64) -> Result<(), Stuck> {
        let n = self.ops.len();
        if self.completed == 0 {
            return Ok(());
        }
        let mut lists = Lists::new(&self.ops);
        let mut bits = vec![0u64; n.div_ceil(64)];
        let mut memo = Memo::default();
        let (mut key, mut effects, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
        let mut state = 0u32;
        let mut obligation = None;
        self.node_key(
            &bits,
            state,
            obligation,
            &mut key,
            &mut effects,
            &mut unknown,
        );
        memo.insert(&mut key, &unknown);
        // (call entry taken effect, state and obligation before it)
        let mut stack: Vec<(usize, u32, Option<u32>)> = Vec::new();
        let mut remaining = self.completed;
        let mut best: (Vec<usize>, u32) = (Vec::new(), 0);
        // Unknown operations called after `limit` are not candidates.
        let mut limit = 0u64;
        let mut cur = lists.e[MAIN].next;
        loop {
            if cur != NIL && !lists.e[cur].is_call {
                // The first return: the completed candidates are done, try
                // the unknown operations called before it.
                limit = self.ops[lists.e[cur].op].ret.unwrap_or(u64::MAX);
                cur = lists.e[UNKNOWN].next;
            }
            let candidate = cur != NIL && {
                let op = lists.e[cur].op;
                op < self.completed || self.ops[op].call <= limit
            };
            if candidate
                && lists.e[cur].op >= self.completed
                && !self.unknown_may_go(lists.e[cur].op, &bits, obligation)
            {
                cur = lists.e[cur].next;
                continue;
            }
            if *budget == 0 {
                return Err(Stuck::Budget);
            }
            *budget -= 1;
            if candidate {
                let op = lists.e[cur].op;
                set_bit(&mut bits, op, true);
                let step = self
                    .advance(op, &bits, state, obligation)
                    .filter(|&(next, alt)| {
                        op < self.completed || self.has_follower(&lists, &bits, next, alt, limit)
                    });
                if let Some((next, next_obligation)) = step {
                    self.node_key(
                        &bits,
                        next,
                        next_obligation,
                        &mut key,
                        &mut effects,
                        &mut unknown,
                    );
                    if memo.insert(&mut key, &unknown) {
                        stack.push((cur, state, obligation));
                        lists.lift(cur);
                        state = next;
                        obligation = next_obligation;
                        if op < self.completed {
                            remaining -= 1;
                            if remaining == 0 {
                                return Ok(());
                            }
                        }
                        if stack.len() > best.0.len() {
                            best = (stack.iter().map(|&(c, ..)| lists.e[c].op).collect(), state);
                        }
                        cur = lists.e[MAIN].next;
                        continue;
                    }
                }
                set_bit(&mut bits, op, false);
                cur = lists.e[cur].next;
                continue;
            }
            // No candidate left: undo the last operation taken effect.
            let Some((call, state_before, obligation_before)) = stack.pop() else {
                let (prefix, state) = best;
                return Err(Stuck::NotLinearizable { prefix, state });
            };
            let op = lists.e[call].op;
            set_bit(&mut bits, op, false);
            lists.unlift(call);
            state = state_before;
            obligation = obligation_before;
            if op < self.completed {
                remaining += 1;
            } else {
                // Back in the unknown list: recompute its limit.
                let mut first_ret = lists.e[MAIN].next;
                while first_ret != NIL && lists.e[first_ret].is_call {
                    first_ret = lists.e[first_ret].next;
                }
                if first_ret != NIL {
                    limit = self.ops[lists.e[first_ret].op].ret.unwrap_or(u64::MAX);
                }
            }
            cur = lists.e[call].next;
        }
    }

    fn value(&self, state: u32) -> String {
        match state {
            0 => "absent".to_string(),
            v => format!("{:?}", self.values[v as usize - 1]),
        }
    }

    /// Explains why the key is not linearizable, from the deepest prefix.
    fn explain(&self, events: &[Event], key: &str, prefix: &[usize], state: u32) -> String {
        const SHOWN: usize = 12;
        let mut done = vec![false; self.ops.len()];
        for &op in prefix {
            done[op] = true;
        }
        let mut msg = format!(
            "key {key:?} is not linearizable ({} ops, {} with unknown outcome).\n\
             The longest linearizable prefix found has {} ops and leaves the key {}",
            self.ops.len(),
            self.ops.len() - self.completed,
            prefix.len(),
            self.value(state),
        );
        if prefix.is_empty() {
            msg.push_str(" (initial state).\n");
        } else {
            let _ = writeln!(msg, "; its last ops:");
            for &op in &prefix[prefix.len().saturating_sub(SHOWN)..] {
                let _ = writeln!(
                    msg,
                    "    {}",
                    describe(self.ops[op].event, &events[self.ops[op].event])
                );
            }
        }
        // The completed op that must take effect first among the rest.
        let blocking = (0..self.completed)
            .filter(|&op| !done[op])
            .min_by_key(|&op| (self.ops[op].ret, self.ops[op].call));
        if let Some(b) = blocking {
            let deadline = self.ops[b].ret.unwrap_or(u64::MAX);
            let mut candidates: Vec<usize> = (0..self.ops.len())
                .filter(|&op| !done[op] && self.ops[op].call <= deadline)
                .collect();
            candidates.sort_by_key(|&op| (self.ops[op].call, op));
            let _ = writeln!(
                msg,
                "From there, the next op must be one called by {deadline}ns, when {} \
                 returned, but none of them can be linearized next (each is illegal in that \
                 state or leads to a dead end):",
                describe(self.ops[b].event, &events[self.ops[b].event]),
            );
            for &op in candidates.iter().take(SHOWN) {
                let _ = writeln!(
                    msg,
                    "    {}",
                    describe(self.ops[op].event, &events[self.ops[op].event])
                );
            }
            if candidates.len() > SHOWN {
                let _ = writeln!(msg, "    ... and {} more", candidates.len() - SHOWN);
            }
        }
        msg
    }
}

/// A one-line description of the event at `index`.
fn describe(index: usize, e: &Event) -> String {
    let op = match &e.op {
        Op::Put { key, value } => format!("put({key:?}, {value:?})"),
        Op::Get { key } => format!("get({key:?})"),
        Op::Delete { key } => format!("delete({key:?})"),
        Op::Cas { key, expected, new } => {
            format!("cas({key:?}, expected {expected:?}, new {new:?})")
        }
    };
    let ret = match e.outcome {
        Outcome::Unknown => "?".to_string(),
        _ => format!("{}ns", e.ret),
    };
    format!(
        "#{index} client {}: {op} -> {:?} [call {}ns, ret {ret}]",
        e.client, e.outcome, e.call
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::thread;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    fn get(key: &str) -> Op {
        Op::Get { key: key.into() }
    }

    fn del(key: &str) -> Op {
        Op::Delete { key: key.into() }
    }

    fn cas(key: &str, expected: Option<&str>, new: &str) -> Op {
        Op::Cas {
            key: key.into(),
            expected: expected.map(String::from),
            new: new.into(),
        }
    }

    fn val(v: Option<&str>) -> Outcome {
        Outcome::Value(v.map(String::from))
    }

    fn ev(client: usize, op: Op, call: u64, ret: u64, outcome: Outcome) -> Event {
        Event {
            client,
            op,
            call,
            ret,
            outcome,
        }
    }

    fn unknown(client: usize, op: Op, call: u64) -> Event {
        ev(client, op, call, 0, Outcome::Unknown)
    }

    fn assert_rejected(events: &[Event], key: &str) -> String {
        let err = check(events).expect_err("history must be rejected");
        assert!(
            err.contains(&format!("key {key:?} is not linearizable")),
            "{err}"
        );
        err
    }

    #[test]
    fn accepts_empty_history() {
        assert_eq!(check(&[]), Ok(CheckStats { keys: 0, ops: 0 }));
    }

    #[test]
    fn accepts_sequential_history() {
        let h = vec![
            ev(0, get("k"), 0, 1, val(None)),
            ev(0, put("k", "a"), 2, 3, Outcome::Done),
            ev(1, get("k"), 4, 5, val(Some("a"))),
            ev(0, cas("k", Some("a"), "b"), 6, 7, Outcome::Cas(true)),
            ev(1, cas("k", Some("a"), "c"), 8, 9, Outcome::Cas(false)),
            ev(0, get("k"), 10, 11, val(Some("b"))),
            ev(1, del("k"), 12, 13, Outcome::Deleted(1)),
            ev(0, get("k"), 14, 15, val(None)),
            ev(0, del("k"), 16, 17, Outcome::Deleted(0)),
            ev(1, cas("k", None, "d"), 18, 19, Outcome::Cas(true)),
            ev(0, del("k"), 20, 21, Outcome::Done),
            ev(1, get("k"), 22, 23, val(None)),
        ];
        assert_eq!(check(&h), Ok(CheckStats { keys: 1, ops: 12 }));
    }

    #[test]
    fn accepts_concurrent_writes_in_either_order() {
        // Two overlapping puts: a later read may see either one last.
        for (last, other) in [("a", "b"), ("b", "a")] {
            let h = vec![
                ev(0, put("k", "a"), 0, 100, Outcome::Done),
                ev(1, put("k", "b"), 10, 90, Outcome::Done),
                ev(2, get("k"), 200, 210, val(Some(last))),
                ev(2, get("k"), 220, 230, val(Some(last))),
            ];
            assert!(check(&h).is_ok(), "last = {last}");
            // ... but it cannot flip back afterwards.
            let mut bad = h.clone();
            bad.push(ev(3, get("k"), 240, 250, val(Some(other))));
            assert_rejected(&bad, "k");
        }
        // A read concurrent with a put sees the old or the new value.
        for seen in ["old", "new"] {
            let h = vec![
                ev(0, put("k", "old"), 0, 10, Outcome::Done),
                ev(0, put("k", "new"), 20, 60, Outcome::Done),
                ev(1, get("k"), 30, 40, val(Some(seen))),
            ];
            assert!(check(&h).is_ok(), "seen = {seen}");
        }
    }

    #[test]
    fn accepts_history_needing_backtracking() {
        // Three concurrent puts and reads pinning the order c, b, a: the
        // search first tries a (earliest call) and has to back out of it.
        let h = vec![
            ev(0, put("k", "a"), 0, 100, Outcome::Done),
            ev(1, put("k", "b"), 1, 100, Outcome::Done),
            ev(2, put("k", "c"), 2, 100, Outcome::Done),
            ev(3, get("k"), 3, 50, val(Some("c"))),
            ev(4, get("k"), 10, 110, val(Some("b"))),
            ev(3, get("k"), 120, 130, val(Some("a"))),
        ];
        assert_eq!(check(&h), Ok(CheckStats { keys: 1, ops: 6 }));
        // c cannot come back after a once every write is done.
        let mut bad = h.clone();
        bad.push(ev(4, get("k"), 140, 150, val(Some("c"))));
        assert_rejected(&bad, "k");
    }

    #[test]
    fn accepts_unknown_write_that_took_effect() {
        let h = vec![
            ev(0, put("k", "a"), 0, 10, Outcome::Done),
            unknown(1, put("k", "b"), 20),
            ev(0, get("k"), 100, 110, val(Some("b"))),
            ev(2, get("k"), 120, 130, val(Some("b"))),
        ];
        assert_eq!(check(&h), Ok(CheckStats { keys: 1, ops: 4 }));
    }

    #[test]
    fn accepts_unknown_write_that_never_took_effect() {
        let h = vec![
            ev(0, put("k", "a"), 0, 10, Outcome::Done),
            unknown(1, put("k", "b"), 20),
            unknown(1, del("k"), 25),
            unknown(1, cas("k", Some("a"), "c"), 30),
            ev(0, get("k"), 100, 110, val(Some("a"))),
            ev(2, get("k"), 200, 210, val(Some("a"))),
        ];
        assert_eq!(check(&h), Ok(CheckStats { keys: 1, ops: 6 }));
    }

    #[test]
    fn accepts_unknown_writes_taking_effect_late() {
        // The unknown put lands after a read that still saw nothing, and the
        // unknown delete lands between two reads much later.
        let h = vec![
            unknown(0, put("k", "b"), 20),
            ev(1, get("k"), 30, 40, val(None)),
            ev(1, get("k"), 50, 60, val(Some("b"))),
            unknown(2, del("k"), 65),
            ev(1, get("k"), 70, 80, val(Some("b"))),
            ev(3, get("k"), 1000, 1010, val(None)),
            // An unknown CAS that succeeded after the delete.
            unknown(2, cas("k", None, "c"), 1005),
            ev(1, get("k"), 2000, 2010, val(Some("c"))),
        ];
        assert_eq!(check(&h), Ok(CheckStats { keys: 1, ops: 8 }));
    }

    #[test]
    fn unknown_reads_are_dropped() {
        let h = vec![
            ev(0, put("k", "a"), 0, 10, Outcome::Done),
            ev(1, get("k"), 20, 0, Outcome::Unknown),
            ev(1, get("k"), 30, 40, val(Some("a"))),
        ];
        assert_eq!(check(&h), Ok(CheckStats { keys: 1, ops: 2 }));
    }

    #[test]
    fn rejects_unknown_write_read_before_its_call() {
        let h = vec![
            ev(0, get("k"), 0, 10, val(Some("b"))),
            unknown(1, put("k", "b"), 20),
        ];
        assert_rejected(&h, "k");
    }

    #[test]
    fn rejects_stale_read() {
        let h = vec![
            ev(0, put("k", "old"), 0, 10, Outcome::Done),
            ev(0, put("k", "new"), 20, 30, Outcome::Done),
            ev(1, get("k"), 40, 50, val(Some("old"))),
        ];
        let err = assert_rejected(&h, "k");
        assert!(err.contains("#2 client 1: get(\"k\")"), "{err}");
        assert!(err.contains("leaves the key \"new\""), "{err}");
    }

    #[test]
    fn rejects_lost_write() {
        let h = vec![
            ev(0, put("k", "a"), 0, 10, Outcome::Done),
            ev(1, get("k"), 20, 30, val(None)),
        ];
        let err = assert_rejected(&h, "k");
        assert!(err.contains("Value(None)"), "{err}");
    }

    #[test]
    fn rejects_sequential_double_cas_success() {
        let h = vec![
            ev(0, put("k", "a"), 0, 10, Outcome::Done),
            ev(0, cas("k", Some("a"), "b"), 20, 30, Outcome::Cas(true)),
            ev(1, cas("k", Some("a"), "c"), 40, 50, Outcome::Cas(true)),
        ];
        let err = assert_rejected(&h, "k");
        assert!(err.contains("#2 client 1: cas"), "{err}");
        // Concurrent create-if-absent: exactly one may win.
        let race = |second: bool| {
            vec![
                ev(0, cas("k", None, "x"), 0, 100, Outcome::Cas(true)),
                ev(1, cas("k", None, "y"), 0, 100, Outcome::Cas(second)),
            ]
        };
        assert!(check(&race(false)).is_ok());
        assert_rejected(&race(true), "k");
    }

    #[test]
    fn rejects_read_of_value_never_written() {
        let h = vec![
            ev(0, put("k", "a"), 0, 10, Outcome::Done),
            ev(1, put("k", "b"), 5, 15, Outcome::Done),
            ev(2, get("k"), 0, 20, val(Some("zzz"))),
        ];
        let err = assert_rejected(&h, "k");
        assert!(err.contains("zzz"), "{err}");
    }

    #[test]
    fn rejects_real_time_violations_across_clients() {
        // Client 1 reads b before client 0 even called put(b).
        let future = vec![
            ev(0, put("k", "a"), 0, 10, Outcome::Done),
            ev(1, get("k"), 12, 18, val(Some("b"))),
            ev(0, put("k", "b"), 20, 30, Outcome::Done),
        ];
        assert_rejected(&future, "k");
        // New-then-old inversion: both reads overlap the put, but client 1
        // saw the new value before client 2 saw the old one.
        let inversion = vec![
            ev(0, put("k", "old"), 0, 5, Outcome::Done),
            ev(0, put("k", "new"), 10, 100, Outcome::Done),
            ev(1, get("k"), 20, 30, val(Some("new"))),
            ev(2, get("k"), 40, 50, val(Some("old"))),
        ];
        assert_rejected(&inversion, "k");
        // The same reads overlapping each other are fine.
        let mut overlapping = inversion.clone();
        overlapping[3].call = 25;
        assert!(check(&overlapping).is_ok());
    }

    #[test]
    fn delete_counts_are_checked() {
        let present_absent = vec![ev(0, del("k"), 0, 10, Outcome::Deleted(1))];
        assert_rejected(&present_absent, "k");
        let absent_present = vec![
            ev(0, put("k", "a"), 0, 10, Outcome::Done),
            ev(0, del("k"), 20, 30, Outcome::Deleted(0)),
        ];
        assert_rejected(&absent_present, "k");
        let ok = vec![
            ev(0, put("k", "a"), 0, 10, Outcome::Done),
            ev(1, del("k"), 20, 30, Outcome::Deleted(1)),
            ev(0, del("k"), 25, 40, Outcome::Deleted(0)),
        ];
        assert!(check(&ok).is_ok());
    }

    #[test]
    fn keys_are_checked_independently() {
        // Interleaved in time, each key's history is fine on its own.
        let h = vec![
            ev(0, put("a", "1"), 0, 10, Outcome::Done),
            ev(1, put("b", "1"), 5, 15, Outcome::Done),
            ev(0, get("b"), 20, 30, val(Some("1"))),
            ev(1, get("a"), 20, 30, val(Some("1"))),
            ev(2, get("c"), 0, 40, val(None)),
        ];
        assert_eq!(check(&h), Ok(CheckStats { keys: 3, ops: 5 }));
        // A stale read on "b" only: the error names "b".
        let mut bad = h.clone();
        bad.push(ev(0, put("b", "2"), 40, 50, Outcome::Done));
        bad.push(ev(1, get("b"), 60, 70, val(Some("1"))));
        let err = assert_rejected(&bad, "b");
        assert!(!err.contains("key \"a\""), "{err}");
    }

    #[test]
    fn rejects_malformed_events() {
        let wrong_outcome = vec![ev(0, put("k", "a"), 0, 10, Outcome::Cas(true))];
        assert!(check(&wrong_outcome).unwrap_err().contains("malformed"));
        let backwards = vec![ev(0, get("k"), 10, 5, val(None))];
        assert!(check(&backwards).unwrap_err().contains("malformed"));
        let two_deleted = vec![ev(0, del("k"), 0, 10, Outcome::Deleted(2))];
        assert!(check(&two_deleted).unwrap_err().contains("malformed"));
    }

    #[test]
    fn budget_exhaustion_is_reported() {
        // Many concurrent writes followed by a read of a value never written:
        // refuting it takes many steps.
        let mut h: Vec<Event> = (0..12)
            .map(|c| ev(c, put("k", &c.to_string()), 0, 100, Outcome::Done))
            .collect();
        h.push(ev(12, get("k"), 200, 210, val(Some("nope"))));
        let err = check_with_budget(&h, 100).unwrap_err();
        assert!(err.starts_with("budget exhausted"), "{err}");
        assert!(err.contains("\"k\""), "{err}");
        // Memoization makes the refutation cheap enough for the default.
        assert_rejected(&h, "k");
        // And the budget is not consumed by an accepted history.
        h.pop();
        assert!(check_with_budget(&h, 1_000).is_ok());
    }

    /// Decides linearizability by trying every order (small histories only).
    fn brute_force(events: &[Event]) -> bool {
        fn apply(state: &Option<String>, e: &Event) -> Option<Option<String>> {
            match (&e.op, &e.outcome) {
                (Op::Put { value, .. }, Outcome::Done | Outcome::Unknown) => {
                    Some(Some(value.clone()))
                }
                (Op::Get { .. }, Outcome::Value(v)) => (v == state).then(|| state.clone()),
                (Op::Delete { .. }, Outcome::Done | Outcome::Unknown) => Some(None),
                (Op::Delete { .. }, Outcome::Deleted(n)) => {
                    (*n == u64::from(state.is_some())).then_some(None)
                }
                (Op::Cas { expected, new, .. }, Outcome::Cas(_) | Outcome::Unknown) => {
                    let matches = expected == state;
                    if matches!(e.outcome, Outcome::Cas(ok) if ok != matches) {
                        None
                    } else if matches {
                        Some(Some(new.clone()))
                    } else {
                        Some(state.clone())
                    }
                }
                _ => None,
            }
        }
        fn search(events: &[Event], done: &mut [bool], state: Option<String>) -> bool {
            let must = |done: &[bool], j: usize| !done[j] && events[j].outcome != Outcome::Unknown;
            if !(0..events.len()).any(|j| must(done, j)) {
                return true;
            }
            for i in 0..events.len() {
                let ready = !done[i]
                    && (0..events.len()).all(|j| !must(done, j) || events[j].ret >= events[i].call);
                if let Some(next) = apply(&state, &events[i]).filter(|_| ready) {
                    done[i] = true;
                    let found = search(events, done, next);
                    done[i] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        let events: Vec<Event> = events
            .iter()
            .filter(|e| !matches!((&e.op, &e.outcome), (Op::Get { .. }, Outcome::Unknown)))
            .cloned()
            .collect();
        search(&events, &mut vec![false; events.len()], None)
    }

    #[test]
    fn agrees_with_brute_force_on_random_histories() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let value = |rng: &mut Rng| ["a", "b"][rng.below(2) as usize].to_string();
        let maybe = |rng: &mut Rng| match rng.below(3) {
            0 => None,
            1 => Some("a".to_string()),
            _ => Some("b".to_string()),
        };
        let (mut accepted, mut rejected) = (0, 0);
        for round in 0..4000 {
            let n = 2 + rng.below(6) as usize;
            let events: Vec<Event> = (0..n)
                .map(|client| {
                    let call = rng.below(30);
                    let ret = call + rng.below(12);
                    let unknown = rng.below(5) == 0;
                    let (op, outcome) = match rng.below(4) {
                        0 => (put("k", &value(&mut rng)), Outcome::Done),
                        1 => (get("k"), Outcome::Value(maybe(&mut rng))),
                        2 => {
                            let outcome = match rng.below(3) {
                                0 => Outcome::Done,
                                n => Outcome::Deleted(n - 1),
                            };
                            (del("k"), outcome)
                        }
                        _ => {
                            let op = Op::Cas {
                                key: "k".into(),
                                expected: maybe(&mut rng),
                                new: value(&mut rng),
                            };
                            (op, Outcome::Cas(rng.below(2) == 0))
                        }
                    };
                    let outcome = if unknown { Outcome::Unknown } else { outcome };
                    ev(client, op, call, ret, outcome)
                })
                .collect();
            let expected = brute_force(&events);
            assert_eq!(
                check(&events).is_ok(),
                expected,
                "round {round}: {events:#?}"
            );
            if expected {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        assert!(
            accepted > 500 && rejected > 500,
            "{accepted} accepted, {rejected} rejected"
        );
    }

    /// Runs a sequential execution of random ops at random linearization
    /// points, gives each op an interval around its point (some writes get
    /// an unknown outcome, and take effect or not), then, half of the time,
    /// corrupts one outcome.
    fn mutated_linearizable_history(rng: &mut Rng) -> Vec<Event> {
        let n = 3 + rng.below(9) as usize;
        let values = 1 + rng.below(2 * n as u64);
        let value = |rng: &mut Rng| format!("v{}", rng.below(values));
        let mut state: Option<String> = None;
        let mut events = Vec::new();
        for client in 0..n {
            let point = client as u64 * 10 + rng.below(5);
            let (call, ret) = (point.saturating_sub(rng.below(40)), point + rng.below(40));
            let v = value(rng);
            let unknown = rng.below(4) == 0;
            let applied = !unknown || rng.below(2) == 0;
            let (op, outcome) = match rng.below(5) {
                0 => {
                    if applied {
                        state = Some(v.clone());
                    }
                    (put("k", &v), Outcome::Done)
                }
                1 => (get("k"), Outcome::Value(state.clone())),
                2 => {
                    let deleted = Outcome::Deleted(u64::from(state.is_some()));
                    if applied {
                        state = None;
                    }
                    (del("k"), deleted)
                }
                _ => {
                    let expected = (rng.below(3) != 0).then(|| value(rng));
                    let ok = expected == state;
                    if ok && applied {
                        state = Some(v.clone());
                    }
                    let op = Op::Cas {
                        key: "k".into(),
                        expected,
                        new: v,
                    };
                    (op, Outcome::Cas(ok))
                }
            };
            let outcome = match op {
                Op::Get { .. } => outcome,
                _ if unknown => Outcome::Unknown,
                _ => outcome,
            };
            events.push(ev(client, op, call, ret, outcome));
        }
        if rng.below(2) == 0 {
            let i = rng.below(n as u64) as usize;
            events[i].outcome = match &events[i].outcome {
                Outcome::Value(_) => Outcome::Value((rng.below(3) != 0).then(|| value(rng))),
                Outcome::Cas(ok) => Outcome::Cas(!ok),
                Outcome::Deleted(n) => Outcome::Deleted(1 - n),
                other => other.clone(),
            };
        }
        events
    }

    #[test]
    fn agrees_with_brute_force_on_mutated_linearizable_histories() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let (mut accepted, mut rejected) = (0, 0);
        for round in 0..3000 {
            let events = mutated_linearizable_history(&mut rng);
            let expected = brute_force(&events);
            assert_eq!(
                check(&events).is_ok(),
                expected,
                "round {round}: {events:#?}"
            );
            if expected {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        assert!(
            accepted > 1500 && rejected > 300,
            "{accepted} accepted, {rejected} rejected"
        );
    }

    /// A tiny deterministic PRNG (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    /// Ten threads run random ops against a mutex-protected map (each op
    /// takes effect inside its [call, ret] interval), recording them into a
    /// shared `History`; some writes report `Unknown`, half of them having
    /// taken effect.
    fn threaded_history(ops_per_client: usize, keys: &[&str]) -> Vec<Event> {
        let history = History::new();
        let store: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let threads: Vec<_> = (0..10)
            .map(|client| {
                let history = Arc::clone(&history);
                let store = Arc::clone(&store);
                let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                thread::spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((client as u64 + 1) * 7919));
                    let mut last_seen: Option<String> = None;
                    for i in 0..ops_per_client {
                        let key = keys[rng.below(keys.len() as u64) as usize].clone();
                        let value = format!("c{client}-{i}");
                        let op = match rng.below(10) {
                            0..=3 => Op::Get { key: key.clone() },
                            4..=6 => Op::Put {
                                key: key.clone(),
                                value,
                            },
                            7 => Op::Delete { key: key.clone() },
                            _ => Op::Cas {
                                key: key.clone(),
                                expected: last_seen.clone(),
                                new: value,
                            },
                        };
                        let lost = rng.below(100) < 2 && !matches!(op, Op::Get { .. });
                        let applied = !lost || rng.below(2) == 0;
                        let call = history.now();
                        let outcome = {
                            let mut map = store.lock().unwrap();
                            let current = map.get(&key).cloned();
                            match &op {
                                Op::Get { .. } => {
                                    last_seen = current.clone();
                                    Outcome::Value(current)
                                }
                                Op::Put { value, .. } => {
                                    if applied {
                                        map.insert(key.clone(), value.clone());
                                    }
                                    Outcome::Done
                                }
                                Op::Delete { .. } => {
                                    if applied {
                                        map.remove(&key);
                                    }
                                    Outcome::Deleted(u64::from(current.is_some()))
                                }
                                Op::Cas { expected, new, .. } => {
                                    let ok = current == *expected;
                                    if ok && applied {
                                        map.insert(key.clone(), new.clone());
                                    }
                                    Outcome::Cas(ok)
                                }
                            }
                        };
                        let ret = history.now();
                        let outcome = if lost { Outcome::Unknown } else { outcome };
                        history.record(Event {
                            client,
                            op,
                            call,
                            ret,
                            outcome,
                        });
                        if i % 16 == 0 {
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        history.events()
    }

    #[test]
    fn accepts_large_recorded_history_and_catches_corruption() {
        let events = threaded_history(300, &["k"]);
        assert_eq!(events.len(), 3000);
        let gets = events
            .iter()
            .filter(|e| matches!((&e.op, &e.outcome), (Op::Get { .. }, Outcome::Value(_))))
            .count();
        assert!(gets > 500, "{gets}");
        let started = Instant::now();
        assert_eq!(check(&events), Ok(CheckStats { keys: 1, ops: 3000 }));
        eprintln!("3000 ops on one key checked in {:?}", started.elapsed());

        // Corrupt one read in the middle: it now sees a value never written.
        let mut bad = events.clone();
        let victim = (events.len() / 2..events.len())
            .find(|&i| matches!(bad[i].op, Op::Get { .. }) && bad[i].outcome != Outcome::Unknown)
            .unwrap();
        bad[victim].outcome = Outcome::Value(Some("corrupt".into()));
        let started = Instant::now();
        let err = assert_rejected(&bad, "k");
        eprintln!("corruption found in {:?}", started.elapsed());
        assert!(err.contains("corrupt"), "{err}");

        // Make a write disappear: reads of its unique value become
        // reads of a value never written.
        let mut lost = events.clone();
        let read_value = |e: &Event| match (&e.op, &e.outcome) {
            (Op::Get { .. }, Outcome::Value(Some(v))) => Some(v.clone()),
            _ => None,
        };
        let observed = lost.iter().rev().find_map(read_value).unwrap();
        lost.retain(|e| !matches!(&e.op, Op::Put { value, .. } | Op::Cas { new: value, .. } if *value == observed));
        assert_rejected(&lost, "k");
    }

    #[test]
    fn accepts_large_multi_key_history() {
        let events = threaded_history(400, &["x", "y", "z"]);
        let stats = check(&events).unwrap();
        assert_eq!(stats, CheckStats { keys: 3, ops: 4000 });
    }
}
