//! Rows as values, for the benches that also run outside criterion (`jwt`, `jwks`): the
//! `--callgrind <row> [N]` driver and `--ab <row> <row> [rounds] [batch]` over them.
//!
//! Each bench uses part of this module.
#![allow(dead_code)]

use std::hint::black_box;

use http::{Request, StatusCode};

use crate::ab;

/// What a row runs.
pub enum Routine {
    /// A call with no request (a raw `jsonwebtoken::decode`, a key lookup): `true` on success.
    Raw(Box<dyn Fn() -> bool>),
    /// A request through a service: the request maker, then the call answering the status.
    Service(
        Box<dyn Fn() -> Request<()>>,
        Box<dyn Fn(Request<()>) -> StatusCode>,
    ),
}

/// One named row.
pub struct Row {
    pub name: String,
    pub routine: Routine,
}

impl Routine {
    /// Runs `n` iterations and answers the nanoseconds per iteration; requests are built before
    /// and responses dropped after the clock, as criterion's `iter_batched` does.
    pub fn time(&self, n: usize) -> f64 {
        match self {
            Self::Raw(run) => ab::time_batch(n, || (), |()| run()),
            Self::Service(make, run) => ab::time_batch(n, make, run),
        }
    }
}

fn find<'r>(rows: &'r [Row], name: &str) -> &'r Row {
    rows.iter().find(|r| r.name == name).unwrap_or_else(|| {
        eprintln!("no row {name:?}; rows:");
        for row in rows {
            eprintln!("  {}", row.name);
        }
        std::process::exit(2)
    })
}

/// Runs `iterations` of one row, then nothing else: for `valgrind --tool=callgrind
/// --toggle-collect=*callgrind_measured*`, whose instruction count divided by `iterations` is
/// the row's cost per iteration. Requests are built before and responses dropped after the
/// measured loop, as criterion's `iter_batched` does.
pub fn callgrind(rows: &[Row], name: &str, iterations: usize) {
    let row = find(rows, name);
    let mut out = Vec::with_capacity(iterations);
    // One warm-up call, outside the measured function: lazy statics, first allocations.
    match &row.routine {
        Routine::Raw(run) => {
            black_box(run());
            callgrind_measured_raw(run, iterations, &mut out);
        }
        Routine::Service(make, run) => {
            black_box(run(make()));
            let requests: Vec<Request<()>> = (0..iterations).map(|_| make()).collect();
            callgrind_measured_service(run, requests, &mut out);
        }
    }
    black_box(out);
    println!("{name}: {iterations} iterations measured");
}

#[inline(never)]
fn callgrind_measured_raw(run: &dyn Fn() -> bool, iterations: usize, out: &mut Vec<u16>) {
    for _ in 0..iterations {
        out.push(u16::from(run()));
    }
}

#[inline(never)]
fn callgrind_measured_service(
    run: &dyn Fn(Request<()>) -> StatusCode,
    requests: Vec<Request<()>>,
    out: &mut Vec<u16>,
) {
    for request in requests {
        out.push(run(request).as_u16());
    }
}

/// `--ab` over rows: see [`ab`].
pub fn ab(rows: &[Row], a: &str, b: &str, rounds: usize, batch: usize) {
    let (row_a, row_b) = (find(rows, a), find(rows, b));
    ab::compare(
        a,
        &|n| row_a.routine.time(n),
        b,
        &|n| row_b.routine.time(n),
        rounds,
        batch,
    );
}

/// `--callgrind <row> [N]` or `--ab <row> <row> [rounds] [batch]` on the command line: runs it
/// over `rows()` and answers `true`; `false` when neither was asked for.
pub fn run_modes(rows: impl FnOnce() -> Vec<Row>) -> bool {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--callgrind") {
        let name = args.get(i + 1).map_or("", String::as_str);
        let iterations = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1000);
        callgrind(&rows(), name, iterations);
        return true;
    }
    if let Some((a, b, rounds, batch)) = ab::requested() {
        ab(&rows(), &a, &b, rounds, batch);
        return true;
    }
    false
}
