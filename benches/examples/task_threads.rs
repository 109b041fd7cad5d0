//! Task instances started and ended on N threads at once, all of one name (as the workers
//! of a server run one handler): time per instance (a `Scope` entered and left, with
//! nothing inside), median and range over 9 runs of 200,000 instances per thread. What
//! it shows beyond one thread is how much the threads contend in the name's bookkeeping.
//!
//! ```text
//! cargo run --release -p memsentry-benches --example task_threads -- [THREADS]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use memsentry::MemSentry;
use memsentry::task::TaskName;
use memsentry_benches::positive_arg;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

static HANDLER: TaskName = TaskName::new("bench::handler");

const INSTANCES: u32 = 200_000;
const RUNS: usize = 9;

fn main() -> ExitCode {
    let threads = match positive_arg(1, 2, "task_threads [THREADS>0]") {
        Ok(threads) => threads,
        Err(code) => return code,
    };
    let mut per_instance: Vec<f64> = (0..RUNS)
        .map(|_| {
            let began = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for _ in 0..INSTANCES {
                            let scope = HANDLER.scope();
                            std::hint::black_box(&scope);
                        }
                    });
                }
            });
            began.elapsed().as_secs_f64() * 1e9 / f64::from(INSTANCES)
        })
        .collect();
    per_instance.sort_by(f64::total_cmp);
    println!(
        "{threads} thread(s): {:.0} ns per instance on each thread (range {:.0}–{:.0})",
        per_instance[RUNS / 2],
        per_instance[0],
        per_instance[RUNS - 1]
    );
    ExitCode::SUCCESS
}
