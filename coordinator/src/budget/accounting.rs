//! The budget's counts, kept incrementally: sessions held by leased chunks
//! and pooled on workers are counted per connection name as they are taken
//! and given back, so a lease costs O(1) in the chunks in flight (a full
//! recount only backs the tick's consistency check, `Budget::sync_chunks`).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use ferry_common::db::DbRole;

/// A leased chunk's sessions.
#[derive(Debug)]
pub(super) struct Held {
    pub worker: String,
    pub conns: [(String, DbRole); 2],
}

/// A session a worker keeps pooled after its chunk ended.
#[derive(Debug)]
struct Idle {
    name: String,
    role: DbRole,
    until: Instant,
}

/// Counts of one budget.
#[derive(Debug, Default)]
pub(super) struct Inner {
    /// Limits read from servers (`None`: no limit).
    pub derived: HashMap<String, Option<u32>>,
    /// Coordinator sessions by name.
    pub reserved: HashMap<String, u32>,
    /// Leased chunks by (job, chunk).
    chunks: HashMap<(String, u32), Held>,
    /// Sessions of leased chunks by name.
    held: HashMap<String, u32>,
    /// Pooled sessions by worker.
    idle: HashMap<String, Vec<Idle>>,
    /// Pooled sessions by name.
    idle_count: HashMap<String, u32>,
    /// Workers with pooled sessions, by when the first of them ends (in
    /// release order; an entry whose sessions were reused is skipped).
    idle_order: VecDeque<(Instant, String)>,
    /// Names a lease wanted before their limit was read.
    pub unresolved: std::collections::BTreeSet<String>,
    /// When reading a server's limit last failed, by name.
    pub failed: HashMap<String, Instant>,
}

fn add(map: &mut HashMap<String, u32>, name: &str, n: i64) {
    if let Some(c) = map.get_mut(name) {
        *c = (i64::from(*c) + n).max(0) as u32;
        if *c == 0 {
            map.remove(name);
        }
    } else if n > 0 {
        map.insert(name.to_string(), n as u32);
    }
}

impl Inner {
    /// Sessions counted on `name` now (after `expire`).
    pub fn in_use(&self, name: &str) -> u32 {
        let get = |m: &HashMap<String, u32>| m.get(name).copied().unwrap_or(0);
        get(&self.reserved) + get(&self.held) + get(&self.idle_count)
    }

    /// Names with sessions held by chunks now.
    pub fn held_names(&self) -> impl Iterator<Item = &String> {
        self.held.keys()
    }

    /// The chunk `k`'s holder, if leased.
    pub fn holder(&self, k: &(String, u32)) -> Option<&str> {
        self.chunks.get(k).map(|h| h.worker.as_str())
    }

    /// Leased chunks, by (job, chunk).
    pub fn chunk_keys(&self) -> impl Iterator<Item = &(String, u32)> {
        self.chunks.keys()
    }

    /// Counts chunk `k`'s sessions; the old holder's, if any, are pooled
    /// on its worker until `until`.
    pub fn hold(&mut self, k: (String, u32), held: Held, until: Instant) {
        for (name, _) in &held.conns {
            add(&mut self.held, name, 1);
        }
        if let Some(old) = self.chunks.insert(k, held) {
            self.release(old, until);
        }
    }

    /// Pools chunk `k`'s sessions on its worker until `until`; whether it
    /// was leased.
    pub fn unhold(&mut self, k: &(String, u32), until: Instant) -> bool {
        match self.chunks.remove(k) {
            Some(old) => {
                self.release(old, until);
                true
            }
            None => false,
        }
    }

    fn release(&mut self, held: Held, until: Instant) {
        let list = self.idle.entry(held.worker.clone()).or_default();
        for (name, role) in held.conns {
            add(&mut self.held, &name, -1);
            add(&mut self.idle_count, &name, 1);
            list.push(Idle { name, role, until });
        }
        self.idle_order.push_back((until, held.worker));
    }

    /// Whether `worker` has a pooled session on `name` as `role` besides
    /// the `skip` it already reuses.
    pub fn pooled(&self, worker: &str, name: &str, role: DbRole, skip: usize) -> bool {
        self.idle.get(worker).is_some_and(|l| {
            l.iter()
                .filter(|i| i.name == name && i.role == role)
                .nth(skip)
                .is_some()
        })
    }

    /// Takes one pooled session of `worker` on `name` as `role`.
    pub fn take_pooled(&mut self, worker: &str, name: &str, role: DbRole) {
        let Some(list) = self.idle.get_mut(worker) else {
            return;
        };
        if let Some(i) = list.iter().position(|i| i.name == name && i.role == role) {
            list.swap_remove(i);
            add(&mut self.idle_count, name, -1);
            if list.is_empty() {
                self.idle.remove(worker);
            }
        }
    }

    /// Forgets pooled sessions past their linger; whether any was.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut any = false;
        while self.idle_order.front().is_some_and(|(t, _)| *t <= now) {
            let Some((_, worker)) = self.idle_order.pop_front() else {
                break;
            };
            let Some(list) = self.idle.get_mut(&worker) else {
                continue;
            };
            let counts = &mut self.idle_count;
            list.retain(|i| {
                let keep = i.until > now;
                if !keep {
                    add(counts, &i.name, -1);
                    any = true;
                }
                keep
            });
            if list.is_empty() {
                self.idle.remove(&worker);
            }
        }
        any
    }
}
