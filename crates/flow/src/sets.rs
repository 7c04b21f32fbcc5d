//! Bounded sets of addresses and domains that merge the same whatever the order of merges.
//!
//! Keeping the *smallest* `bound` members (instead of the first ones seen) makes union an
//! associative and commutative operation, so a flow log is the same however updates were batched.

use serde::{Deserialize, Serialize};

/// At most this many addresses per endpoint of a flow log (flow-model.md §1).
pub const IPS_BOUND: usize = 100;
/// At most this many destination domains per flow log.
pub const DOMAINS_BOUND: usize = 5;

/// A sorted set holding at most `N` members, that remembers whether members were dropped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BoundedSet<T: Ord, const N: usize> {
    members: Vec<T>,
    truncated: bool,
}

impl<T: Ord, const N: usize> Default for BoundedSet<T, N> {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            truncated: false,
        }
    }
}

impl<T: Ord + Clone, const N: usize> BoundedSet<T, N> {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            members: Vec::new(),
            truncated: false,
        }
    }

    /// Builds a set from any members, keeping the smallest `N`.
    pub fn from_members(members: impl IntoIterator<Item = T>) -> Self {
        let mut set = Self::new();
        set.members = members.into_iter().collect();
        set.members.sort();
        set.members.dedup();
        if set.members.len() > N {
            set.members.truncate(N);
            set.truncated = true;
        }
        set
    }

    /// Adds one member.
    pub fn insert(&mut self, member: T) {
        match self.members.binary_search(&member) {
            Ok(_) => {}
            Err(position) if position < N => {
                self.members.insert(position, member);
                if self.members.len() > N {
                    self.members.truncate(N);
                    self.truncated = true;
                }
            }
            Err(_) => self.truncated = true,
        }
    }

    /// Union with another set, within the bound.
    pub fn union_with(&mut self, other: &Self) {
        self.truncated |= other.truncated;
        if other
            .members
            .iter()
            .all(|member| self.members.binary_search(member).is_ok())
        {
            return;
        }
        for member in &other.members {
            self.insert(member.clone());
        }
    }

    /// True when `other` adds nothing to this set.
    pub fn contains_all(&self, other: &Self) -> bool {
        (!other.truncated || self.truncated)
            && other
                .members
                .iter()
                .all(|member| self.members.binary_search(member).is_ok())
    }

    /// The members, sorted ascending.
    pub fn members(&self) -> &[T] {
        &self.members
    }

    /// Whether members were dropped to keep the bound.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Whether the set has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Number of members held.
    pub fn len(&self) -> usize {
        self.members.len()
    }
}
