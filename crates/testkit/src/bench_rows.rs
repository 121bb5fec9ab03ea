//! The benchmarks' summary rows, appended to the file named by `BENCH_ROWS` (as
//! `scripts/bench.sh` collects them), each already a row of its Markdown table.

use std::io::Write as _;

/// The environment variable naming the file the rows are appended to.
pub const BENCH_ROWS: &str = "BENCH_ROWS";

/// Appends `rows`, one line each, to the file named by [`BENCH_ROWS`] (created if missing);
/// does nothing when it is not set.
pub fn append(rows: &[String]) {
    let Some(path) = std::env::var_os(BENCH_ROWS) else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("BENCH_ROWS file opens");
    for row in rows {
        writeln!(file, "{row}").expect("BENCH_ROWS written");
    }
}
