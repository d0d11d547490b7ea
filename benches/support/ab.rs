//! `--ab <row> <row> [rounds] [batch]`: two rows of a layer bench timed in alternating short
//! batches, for wall-clock comparisons on a shared, noisy machine.
//!
//! Criterion runs one row for seconds, then the next: a neighbour's burst, or the host's CPU
//! steal, lands on one row and not the other, and on this VM medians of the same code moved by
//! half between runs. Here the two rows take turns every `batch` iterations (200 by default)
//! for `rounds` rounds (200), alternating which goes first, so both see the same machine. Each
//! batch builds its requests first and drops its responses after the clock stops, like the
//! criterion rows. The median and minimum batch of each row are printed, and the difference of
//! the medians.
//!
//! ```text
//! cargo bench --bench authz --all-features -- --ab scopes/bare scopes/held_10_require_1
//! ```
//!
//! `--ab ?` lists the rows.
//!
//! Each bench uses part of this module.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

/// Runs `n` iterations of a row and answers the nanoseconds per iteration.
pub type Batch = Box<dyn Fn(usize) -> f64>;

thread_local! {
    static COLLECTING: Cell<bool> = const { Cell::new(false) };
    static GROUP: RefCell<String> = const { RefCell::new(String::new()) };
    static ROWS: RefCell<Vec<(String, Batch)>> = const { RefCell::new(Vec::new()) };
}

/// The `--ab` request on the command line, if any: `(a, b, rounds, batch)`.
pub fn requested() -> Option<(String, String, usize, usize)> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--ab")?;
    let arg = |k: usize| args.get(i + k).cloned();
    let number = |k: usize, default: usize| arg(k).and_then(|s| s.parse().ok()).unwrap_or(default);
    Some((
        arg(1).unwrap_or_else(|| "?".into()),
        arg(2).unwrap_or_else(|| "?".into()),
        number(3, 200),
        number(4, 200),
    ))
}

/// `true` while rows are being collected for `--ab` rather than run by criterion.
pub fn collecting() -> bool {
    COLLECTING.with(Cell::get)
}

/// `c.benchmark_group(name)`, remembering the name for the rows registered next.
pub fn group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    GROUP.with(|g| *g.borrow_mut() = name.to_owned());
    c.benchmark_group(name)
}

/// Registers a row of the current group for `--ab`.
pub fn register(name: &str, batch: Batch) {
    let full = GROUP.with(|g| format!("{}/{name}", g.borrow()));
    ROWS.with(|rows| rows.borrow_mut().push((full, batch)));
}

/// Times `run` over `n` inputs from `make`, inputs built before and outputs dropped after.
pub fn time_batch<I, O>(n: usize, make: impl Fn() -> I, run: impl Fn(I) -> O) -> f64 {
    let inputs: Vec<I> = (0..n).map(|_| make()).collect();
    let mut outputs = Vec::with_capacity(n);
    let start = Instant::now();
    callgrind_measured_batch(inputs, &run, &mut outputs);
    let elapsed = start.elapsed();
    black_box(outputs);
    elapsed.as_secs_f64() * 1e9 / n as f64
}

/// The timed loop, kept out of line under a name `--callgrind` can toggle on.
#[inline(never)]
fn callgrind_measured_batch<I, O>(inputs: Vec<I>, run: &impl Fn(I) -> O, outputs: &mut Vec<O>) {
    for input in inputs {
        outputs.push(run(input));
    }
}

/// The `--callgrind <row> [N]` request on the command line, if any.
pub fn callgrind_requested() -> Option<(String, usize)> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--callgrind")?;
    let name = args.get(i + 1).cloned().unwrap_or_else(|| "?".into());
    let n = args.get(i + 2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    Some((name, n))
}

/// `--callgrind <row> [N]` for the rows that `benches` registers: one warm-up iteration, then
/// `N`, each through `callgrind_measured_batch`. Under
/// `valgrind --tool=callgrind --toggle-collect='*callgrind_measured*'` the instruction count
/// divided by `N + 1` is the row's cost per iteration (requests built and responses dropped
/// outside the count).
pub fn callgrind_main(benches: impl FnOnce(&mut Criterion), (name, n): (String, usize)) {
    COLLECTING.with(|c| c.set(true));
    benches(&mut Criterion::default());
    ROWS.with(|rows| {
        let rows = rows.borrow();
        let Some((_, run)) = rows.iter().find(|(row, _)| *row == name) else {
            eprintln!("rows:");
            for (row, _) in rows.iter() {
                eprintln!("  {row}");
            }
            std::process::exit(2);
        };
        run(1);
        run(n);
        println!("{name}: {} iterations measured", n + 1);
    });
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Collects the rows that `benches` registers, then runs the `--ab` comparison.
pub fn main(
    benches: impl FnOnce(&mut Criterion),
    (a, b, rounds, batch): (String, String, usize, usize),
) {
    COLLECTING.with(|c| c.set(true));
    benches(&mut Criterion::default());
    ROWS.with(|rows| {
        let rows = rows.borrow();
        let find = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, run)| run);
        let (Some(run_a), Some(run_b)) = (find(&a), find(&b)) else {
            eprintln!("rows:");
            for (name, _) in rows.iter() {
                eprintln!("  {name}");
            }
            std::process::exit(2);
        };
        compare(&a, run_a, &b, run_b, rounds, batch);
    });
}

/// Times `run_a` and `run_b` (each runs `n` iterations and answers ns per iteration) in
/// alternating batches and prints both medians and minimums and their difference.
pub fn compare(
    a: &str,
    run_a: &dyn Fn(usize) -> f64,
    b: &str,
    run_b: &dyn Fn(usize) -> f64,
    rounds: usize,
    batch: usize,
) {
    let (mut ta, mut tb) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    // Warm both up once.
    run_a(batch);
    run_b(batch);
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs on a warmer cache.
        if round % 2 == 0 {
            ta.push(run_a(batch));
            tb.push(run_b(batch));
        } else {
            tb.push(run_b(batch));
            ta.push(run_a(batch));
        }
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (min_a, min_b) = (min(&ta), min(&tb));
    let (med_a, med_b) = (median(&mut ta), median(&mut tb));
    println!("{a:<48} median {med_a:9.1} ns  min {min_a:9.1} ns");
    println!("{b:<48} median {med_b:9.1} ns  min {min_b:9.1} ns");
    println!(
        "{:<48} median {:+9.1} ns  min {:+9.1} ns",
        "difference (second - first)",
        med_b - med_a,
        min_b - min_a
    );
}
