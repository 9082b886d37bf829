//! Fairness between clinics on the shared pool: each org may hold at most `cap` tenant
//! transactions at once. One clinic's burst of slow requests then waits for (or is refused)
//! its own slots while the other clinics' requests still find connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use voxanne_domain::OrgId;

#[derive(Debug)]
pub(crate) struct OrgSlots {
    cap: usize,
    wait: Duration,
    /// Orgs with a request holding or awaiting a slot: their semaphore and how many use it.
    /// An org with none has no entry, so the map stays as small as the work in flight.
    orgs: Mutex<HashMap<OrgId, (Arc<Semaphore>, usize)>>,
}

/// One tenant transaction's slot of its org, given back when dropped.
#[derive(Debug)]
pub(crate) struct OrgSlot {
    _permit: OwnedSemaphorePermit,
    _user: SlotUser,
}

/// One user of an org's entry in the map; the entry goes when its last user does.
#[derive(Debug)]
struct SlotUser {
    slots: Arc<OrgSlots>,
    org: OrgId,
}

impl Drop for SlotUser {
    fn drop(&mut self) {
        if let Ok(mut orgs) = self.slots.orgs.lock() {
            if let Some(entry) = orgs.get_mut(&self.org) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    orgs.remove(&self.org);
                }
            }
        }
    }
}

impl OrgSlots {
    pub(crate) fn new(cap: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            wait,
            orgs: Mutex::default(),
        })
    }

    /// A slot of `org`, waiting up to `wait` for one; `None` when the org's slots stay taken.
    pub(crate) async fn acquire(self: &Arc<Self>, org: OrgId) -> Option<OrgSlot> {
        let (semaphore, user) = {
            let mut orgs = self.orgs.lock().ok()?;
            let entry = orgs
                .entry(org)
                .or_insert_with(|| (Arc::new(Semaphore::new(self.cap)), 0));
            entry.1 += 1;
            (
                entry.0.clone(),
                SlotUser {
                    slots: self.clone(),
                    org,
                },
            )
        };
        let permit = tokio::time::timeout(self.wait, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(OrgSlot {
            _permit: permit,
            _user: user,
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.orgs.lock().map(|o| o.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_org_gets_its_cap_and_no_more_and_others_are_not_affected() {
        let slots = OrgSlots::new(2, Duration::from_millis(50));
        let (a, b) = (OrgId::new_random(), OrgId::new_random());
        let first = slots.acquire(a).await.expect("1st");
        let second = slots.acquire(a).await.expect("2nd");
        assert!(slots.acquire(a).await.is_none(), "over the cap");
        assert!(slots.acquire(b).await.is_some(), "another org");
        drop(first);
        assert!(slots.acquire(a).await.is_some(), "a slot given back");
        drop(second);
        assert_eq!(slots.tracked(), 0, "no entry without work in flight");
    }
}
