//! Per-thread stripes: data written on every request (a counter, a reference count) kept in
//! several copies, each thread using one, so that cores serving requests at once do not take
//! turns owning one cache line.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe number, handed out round-robin on first use; take it modulo the number
/// of copies.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
