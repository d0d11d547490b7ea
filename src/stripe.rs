//! Per-thread stripes: data written on every request (a counter, a reference count) kept in
//! several copies, each thread using one, so that cores serving requests at once do not take
//! turns owning one cache line.

#[cfg(feature = "jwt")]
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(feature = "jwt")]
static NEXT: AtomicUsize = AtomicUsize::new(0);

#[cfg(feature = "jwt")]
thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe number, handed out round-robin on first use; take it modulo the number
/// of copies.
#[cfg(feature = "jwt")]
#[inline]
pub(crate) fn thread_stripe() -> usize {
    STRIPE.with(|stripe| {
        let mut n = stripe.get();
        if n == usize::MAX {
            // The top bit cleared: never the unset marker.
            n = NEXT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            stripe.set(n);
        }
        n
    })
}

/// How many threads at once own a block of every [`Tally`].
const SLOTS: usize = 16;

/// Bit `i` set: slot `i` is owned by a live thread.
static TAKEN: AtomicUsize = AtomicUsize::new(0);

/// Takes the lowest free slot of `taken`, if any.
fn acquire(taken: &AtomicUsize) -> Option<usize> {
    let all = (1usize << SLOTS) - 1;
    let mut now = taken.load(Ordering::Relaxed);
    loop {
        let free = !now & all;
        if free == 0 {
            return None;
        }
        let slot = free.trailing_zeros() as usize;
        // Acquire: the slot's last owner's counts happen before this thread's.
        match taken.compare_exchange_weak(
            now,
            now | 1 << slot,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Some(slot),
            Err(seen) => now = seen,
        }
    }
}

/// Gives `slot` back to `taken`.
fn release(taken: &AtomicUsize, slot: usize) {
    // Release: this thread's counts happen before the next owner's.
    taken.fetch_and(!(1 << slot), Ordering::Release);
}

/// This thread's slot, returned to [`TAKEN`] when the thread exits.
struct OwnedSlot(Option<usize>);

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            release(&TAKEN, slot);
        }
    }
}

thread_local! {
    static OWNED: OwnedSlot = OwnedSlot(acquire(&TAKEN));
}

/// The slot this thread alone writes, if one was free when it first asked (at most [`SLOTS`]
/// threads at once have one; a thread that exits gives its slot back).
#[inline]
fn owned_slot() -> Option<usize> {
    OWNED.try_with(|owned| owned.0).ok().flatten()
}

/// `N` counters bumped by (nearly) every request, kept per thread: each of the first
/// [`SLOTS`] threads alive at once owns a block and bumps it with a plain load and store (no
/// locked instruction, no cache line written by another core); any further thread bumps a
/// shared block atomically. Reading sums the blocks, each counter read atomically.
pub(crate) struct Tally<const N: usize> {
    blocks: Box<[Block<N>]>,
}

#[repr(align(64))]
struct Block<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Tally<N> {
    fn default() -> Self {
        Self {
            blocks: (0..=SLOTS)
                .map(|_| Block(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }
}

impl<const N: usize> Tally<N> {
    /// Adds one to counter `i`.
    #[inline]
    pub(crate) fn bump(&self, i: usize) {
        match owned_slot() {
            Some(slot) => {
                if let Some(c) = self.blocks.get(slot).and_then(|b| b.0.get(i)) {
                    // Only this thread writes this block: no read-modify-write can interleave.
                    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
                }
            }
            None => {
                if let Some(c) = self.blocks.get(SLOTS).and_then(|b| b.0.get(i)) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Counter `i`, summed over the blocks.
    pub(crate) fn get(&self, i: usize) -> u64 {
        self.blocks
            .iter()
            .filter_map(|b| b.0.get(i))
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "jwt")]
    #[test]
    fn a_thread_keeps_its_stripe_and_threads_spread() {
        let mine = thread_stripe();
        assert_eq!(thread_stripe(), mine);
        let others: Vec<usize> = (0..4)
            .map(|_| std::thread::spawn(thread_stripe).join().unwrap())
            .collect();
        let mut all = others.clone();
        all.push(mine);
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            5,
            "each new thread gets the next stripe: {others:?}"
        );
    }

    #[test]
    fn tallies_from_more_threads_than_slots_add_up() {
        let n = 4 * SLOTS + 1;
        let tally = std::sync::Arc::new(Tally::<3>::default());
        // Four times as many threads as slots, all alive at once (the barrier): most of them
        // find no free slot and count in the shared block.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|t| {
                let tally = std::sync::Arc::clone(&tally);
                let barrier = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..1000 {
                        tally.bump(t % 3);
                    }
                    tally.bump(2);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = n as u64;
        let per = |k: u64| (0..n).filter(|t| t % 3 == k).count() as u64 * 1000;
        assert_eq!(tally.get(0), per(0));
        assert_eq!(tally.get(1), per(1));
        assert_eq!(tally.get(2), per(2) + n);
        assert_eq!(tally.get(3), 0, "no such counter");
    }

    #[test]
    fn slots_are_exclusive_and_come_back() {
        let taken = AtomicUsize::new(0);
        let mut held: Vec<usize> = (0..SLOTS).filter_map(|_| acquire(&taken)).collect();
        held.sort_unstable();
        assert_eq!(held, (0..SLOTS).collect::<Vec<_>>(), "each slot once");
        assert_eq!(acquire(&taken), None, "no slot past SLOTS");
        release(&taken, 5);
        assert_eq!(acquire(&taken), Some(5));
        assert_eq!(acquire(&taken), None);
    }

    #[test]
    fn a_thread_keeps_its_slot() {
        let (mine, again) = std::thread::spawn(|| (owned_slot(), owned_slot()))
            .join()
            .unwrap();
        assert_eq!(mine, again);
    }
}
