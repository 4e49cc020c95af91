//! The ticket-taking and waiting steps shared by the FIFO lock and the
//! semaphore ([`Enqueue`]), in the two ways they wait for their turn.
//!
//! - **Until the predecessor leaves** (the semaphore): a waiter blocks on
//!   its nearest conflicting predecessor's ticket byte in the mode of its
//!   own ticket, and is woken when that ticket is unlocked.
//! - **Until the predecessor holds** (the FIFO lock, the *hand-off*
//!   protocol): a ticket is write-locked while its owner waits and turned
//!   into a read lock (one `F_OFD_SETLK`, which the kernel does in place)
//!   the moment its owner holds the lock file's kernel lock. A waiter asks
//!   for a *read* lock on its predecessor's byte, which the kernel grants
//!   once the predecessor holds (or left): then it is next, and blocks on
//!   the lock file's kernel lock itself. The holder's release of that lock
//!   wakes it directly, as a plain kernel lock hands over: one wake-up, no
//!   queue bookkeeping between the release and the next holder running.
//!   At any moment only the next in line waits on the lock file; everyone
//!   behind it waits in the queue file.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{
    COUNTER, Draw, Issued, Kind, QueueFile, RESTART_TICKET, Step, TICKET_BASE, Target, conflict,
    draw, highest_below, issue_ticket, open_queue, store_next,
};
use crate::error::{Error, IoOp, Result};
use crate::sys::{self, LockReq, Range};

/// What an acquisition's `first` did under the counter lock, with nobody
/// in line (see [`Enqueue::advance_or`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Nothing: take a ticket and wait as usual.
    No,
    /// It took what the acquisition is for; no ticket is needed (the
    /// semaphore's slot).
    WithoutTicket,
    /// It took the lock file's kernel lock: take a ticket in the holding
    /// state (hand-off protocol), so that later arrivals queue behind it.
    Holding,
}

/// What an acquisition tries under the counter lock when nobody is in
/// line (see [`Enqueue::advance_or`]): called with the open queue file and
/// the counter.
pub(crate) type First<'a> = dyn FnMut(&File, u64) -> Result<Served> + 'a;

/// The ticket-taking steps shared by both machines.
#[derive(Debug)]
pub(crate) struct Enqueue {
    pub queue: QueueFile,
    pub queue_path: PathBuf,
    pub permissions: u32,
    pub kind: Kind,
    pub exclusive: bool,
    /// The hand-off protocol (module docs): wait until the predecessor
    /// holds, then on the lock file.
    handoff: bool,
    pub counter_held: bool,
    pub ticket: Option<u64>,
    /// Hand-off protocol: our ticket is in the holding state (read-locked).
    holding: bool,
    /// The predecessor byte we are blocked on.
    pub waiting_on: Option<u64>,
    /// A predecessor's byte we were granted (it left, or, hand-off, it
    /// holds): still locked by us, released later (see
    /// [`Enqueue::granted`]).
    pub stale: Option<u64>,
    /// The predecessor we wait on had nobody waiting ahead of it: once it
    /// leaves (or, hand-off, holds), it is our turn without asking again.
    pred_was_head: bool,
    /// It is our turn (see `pred_was_head`).
    head_known: bool,
    /// Served without a ticket (see [`Enqueue::advance_or`]).
    pub bypassed: bool,
}

impl Enqueue {
    /// `handoff`: wait as the FIFO lock does (module docs).
    pub(crate) fn new(
        queue: QueueFile,
        queue_path: PathBuf,
        permissions: u32,
        kind: Kind,
        exclusive: bool,
        handoff: bool,
    ) -> Self {
        Enqueue {
            queue,
            queue_path,
            permissions,
            kind,
            exclusive,
            handoff,
            counter_held: false,
            ticket: None,
            holding: false,
            waiting_on: None,
            stale: None,
            pred_was_head: false,
            head_known: false,
            bypassed: false,
        }
    }

    /// Moves through the queue: takes a ticket if this acquisition has none
    /// yet, then waits for its turn. `Ok(None)` once it is our turn;
    /// otherwise the wait to perform before calling again.
    ///
    /// When the queue turns out to be empty as the ticket is about to be
    /// taken, `first` is called first, under the counter lock: nobody is in
    /// line and nobody can join meanwhile, so what it takes is taken in
    /// arrival order ([`Served`]: without a ticket at all, or with one in
    /// the holding state).
    pub(crate) fn advance_or(&mut self, first: Option<&mut First<'_>>) -> Result<Option<Step>> {
        if self.bypassed {
            return Ok(None);
        }
        if self.ticket.is_none()
            && let Some(step) = self.take_ticket(first)?
        {
            return Ok(Some(step));
        }
        if self.bypassed {
            return Ok(None);
        }
        if self.handoff {
            let step = self.wait_until_predecessor_holds()?;
            if step.is_none() {
                // Next in line: the lock on our predecessor's byte has done
                // its work. Let go before waiting on the kernel lock (a
                // queue length counts it as a place in line).
                self.drop_stale();
            }
            Ok(step)
        } else {
            self.wait_until_predecessor_leaves()
        }
    }

    /// Under the counter lock: `first`, if the queue is empty, then a
    /// ticket unless `first` made it unneeded (`Ok(None)`).
    fn draw_and_issue(&mut self, first: Option<&mut First<'_>>) -> Result<Option<Issued>> {
        let d: Draw = draw(&mut self.queue, &self.queue_path, self.kind)?;
        let served = match first {
            Some(first) if d.empty => first(&self.queue.file, d.next())?,
            _ => Served::No,
        };
        let lock_exclusive = match served {
            Served::WithoutTicket => {
                // The counter still moves on (the semaphore starts its slot
                // search there).
                if d.next() < RESTART_TICKET {
                    let (q, path) = (&mut self.queue, &self.queue_path);
                    store_next(q, path, self.kind, &d, d.next() + 1)?;
                }
                return Ok(None);
            }
            Served::Holding => false,
            // Hand-off: every waiting ticket is write-locked, readers'
            // too, so that a successor can tell waiting from holding.
            Served::No => self.handoff || self.exclusive,
        };
        let issued = issue_ticket(
            &mut self.queue,
            &self.queue_path,
            self.kind,
            lock_exclusive,
            &d,
        )?;
        self.holding = served == Served::Holding;
        Ok(Some(issued))
    }

    /// Takes a ticket: `Ok(None)` once it is taken (or `first` served the
    /// acquisition without one), or the wait for the counter lock.
    fn take_ticket(&mut self, mut first: Option<&mut First<'_>>) -> Result<Option<Step>> {
        let io = |p: &Path, e| Error::io(IoOp::LockQueue, p, e);
        loop {
            if !self.counter_held {
                if !sys::range_lock(&self.queue.file, COUNTER, false)
                    .map_err(|e| io(&self.queue_path, e))?
                {
                    return Ok(Some(Step::Wait {
                        target: Target::Queue,
                        reqs: vec![LockReq::Range(COUNTER)],
                        short: true,
                    }));
                }
                self.counter_held = true;
            }
            let q = &mut self.queue;
            let unlinked = q
                .linked
                .is_unlinked(&q.file)
                .map_err(|e| io(&self.queue_path, e))?;
            if unlinked {
                // The idle queue file was removed: use the one at the path.
                self.release_counter();
                self.queue = QueueFile::new(open_queue(&self.queue_path, self.permissions)?);
                continue;
            }
            let issued = self.draw_and_issue(first.as_deref_mut());
            self.release_counter();
            return match issued? {
                Some(issued) => {
                    self.ticket = Some(issued.ticket);
                    // Nobody was in line: no probe needed to know we are first.
                    self.head_known = issued.head;
                    Ok(None)
                }
                None => {
                    self.bypassed = true;
                    Ok(None)
                }
            };
        }
    }

    fn release_counter(&mut self) {
        if self.counter_held {
            let _ = sys::range_unlock(&self.queue.file, COUNTER.start, COUNTER.len);
            self.counter_held = false;
        }
    }

    /// With a ticket: `Ok(None)` if nobody conflicting is ahead, else the
    /// wait on the nearest one, until it leaves.
    fn wait_until_predecessor_leaves(&mut self) -> Result<Option<Step>> {
        let t = self.ticket.expect("a ticket");
        let io = |p: &Path, e| Error::io(IoOp::WaitInQueueFile, p, e);
        if self.head_known {
            return Ok(None);
        }
        // The common case: the direct predecessor is still in line (one
        // probe). Otherwise search for the nearest live one.
        let direct = t > 0
            && self.stale.is_none()
            && sys::range_conflict(
                &self.queue.file,
                Range::byte(TICKET_BASE + t - 1, self.exclusive),
            )
            .map_err(|e| io(&self.queue_path, e))?
            .is_some();
        let nearest = if direct {
            Some(t - 1)
        } else {
            highest_below(&self.queue.file, t, self.exclusive)
                .map_err(|e| io(&self.queue_path, e))?
        };
        let Some(b) = nearest else {
            return Ok(None);
        };
        self.drop_stale();
        // Is it the head? Then we will be once it leaves: tickets are only
        // ever issued above the live ones, so nothing can appear below it.
        // (One probe now, while we have time, saves one after the wake-up,
        // on the hand-off path.)
        self.pred_was_head = !conflict(&self.queue.file, 0, Some(b), self.exclusive)
            .map_err(|e| io(&self.queue_path, e))?;
        self.waiting_on = Some(b);
        Ok(Some(Step::Wait {
            target: Target::Queue,
            reqs: vec![LockReq::Range(Range::byte(TICKET_BASE + b, self.exclusive))],
            short: false,
        }))
    }

    /// Hand-off protocol, with a ticket: `Ok(None)` once every conflicting
    /// predecessor holds the kernel lock or left (we are next: wait on the
    /// lock file), else the wait for the nearest one to get there.
    ///
    /// A writer's probe (write type) sees every ticket and tells a holding
    /// one (read-locked) from a waiting one (write-locked); a reader's probe
    /// (read type) sees only waiting tickets, so readers in a row share.
    fn wait_until_predecessor_holds(&mut self) -> Result<Option<Step>> {
        let t = self.ticket.expect("a ticket");
        let io = |p: &Path, e| Error::io(IoOp::WaitInQueueFile, p, e);
        if self.head_known {
            return Ok(None);
        }
        let file = &self.queue.file;
        let probe = |b: u64| {
            sys::range_conflict(file, Range::byte(TICKET_BASE + b, self.exclusive))
                .map_err(|e| io(&self.queue_path, e))
        };
        // The common case: the direct predecessor is in line (one probe,
        // which also says whether it holds). Otherwise search.
        let mut found = match t {
            0 => None,
            _ => probe(t - 1)?.map(|r| (t - 1, r)),
        };
        while found.is_none() {
            let Some(b) =
                highest_below(file, t, self.exclusive).map_err(|e| io(&self.queue_path, e))?
            else {
                return Ok(None);
            };
            // Its state (it may have left between the two probes: search
            // again).
            found = probe(b)?.map(|r| (b, r));
        }
        let (b, lock) = found.expect("found");
        if !lock.exclusive {
            return Ok(None); // it holds: we are next
        }
        self.drop_stale();
        // Is nobody waiting ahead of it? Then once it holds or leaves it is
        // our turn: holders never wait again, and tickets are only issued
        // above the live ones. (A read probe sees waiting tickets only.)
        self.pred_was_head =
            !conflict(&self.queue.file, 0, Some(b), false).map_err(|e| io(&self.queue_path, e))?;
        self.waiting_on = Some(b);
        Ok(Some(Step::Wait {
            target: Target::Queue,
            // A read lock: granted as soon as its owner turns its ticket
            // into the holding state, or leaves.
            reqs: vec![LockReq::Range(Range::byte(TICKET_BASE + b, false))],
            short: false,
        }))
    }

    /// The wait on the counter or on a predecessor was granted.
    pub(crate) fn granted(&mut self) -> Result<()> {
        if let Some(b) = self.waiting_on.take() {
            // We now hold a lock on the predecessor's byte (it left, or,
            // hand-off, holds). Letting go of it can wait: off the hand-off
            // path, it is released with our own ticket (or before we wait
            // again; hand-off: before we wait on the kernel lock). Holding
            // it misleads nobody: it lies below our own live ticket, so no
            // probe takes it for the nearest one.
            self.stale = Some(b);
            self.head_known = self.pred_was_head;
        } else if self.ticket.is_none() {
            self.counter_held = true;
        }
        Ok(())
    }

    /// Hand-off protocol: we hold the kernel lock now; say so to our
    /// successor, who waits for a read lock on our ticket (the kernel turns
    /// our write lock into a read lock in place, and wakes it).
    pub(crate) fn mark_holding(&mut self) -> Result<()> {
        if !self.handoff || self.holding {
            return Ok(());
        }
        let Some(t) = self.ticket else {
            return Ok(());
        };
        // Nobody else holds a lock on our byte while we hold a write lock
        // on it, so the conversion cannot conflict.
        sys::range_lock(&self.queue.file, Range::byte(TICKET_BASE + t, false), false)
            .map_err(|e| Error::io(IoOp::WaitInQueueFile, &self.queue_path, e))?;
        self.holding = true;
        Ok(())
    }

    /// Hand-off protocol: we no longer hold the kernel lock (the lock file
    /// was replaced under the hold taken in `first`): back to waiting, if
    /// no successor took our holding state for its cue yet (then it may
    /// reach the new file's kernel lock first: order, not exclusion).
    pub(crate) fn mark_waiting(&mut self) {
        if let (true, Some(t)) = (self.holding, self.ticket) {
            let back = sys::range_lock(&self.queue.file, Range::byte(TICKET_BASE + t, true), false);
            self.holding = !matches!(back, Ok(true));
        }
    }

    fn drop_stale(&mut self) {
        if let Some(b) = self.stale.take() {
            let _ = sys::range_unlock(&self.queue.file, TICKET_BASE + b, 1);
        }
    }

    /// Gives the ticket back (the place in the queue is left).
    pub(crate) fn leave(&mut self) -> std::io::Result<()> {
        self.release_counter();
        self.drop_stale();
        if let Some(b) = self.waiting_on.take() {
            let _ = sys::range_unlock(&self.queue.file, TICKET_BASE + b, 1);
        }
        self.holding = false;
        match self.ticket.take() {
            Some(t) => sys::range_unlock(&self.queue.file, TICKET_BASE + t, 1),
            None => Ok(()),
        }
    }
}
