//! Compares memsentry's unwind-table walk with libgcc's on many shapes of stack, and
//! samples every allocation of four threads with it: what `tests/tests/unwind_nofp.rs`
//! runs in a build *without* frame pointers, the build a user of the crate gets.
//!
//! ```text
//! RUSTFLAGS="-C force-frame-pointers=no" CARGO_TARGET_DIR=target/nofp \
//!     cargo run --release --example unwind_walks -- compare [LIBRARY.so]
//! RUSTFLAGS="-C force-frame-pointers=no" CARGO_TARGET_DIR=target/nofp \
//!     cargo run --release --example unwind_walks -- stress SECONDS
//! ```
//!
//! `compare` prints one line per stack shape (`same`, or both walks) and exits non-zero on
//! a difference. With a shared library that exports `void memsentry_call_back(void
//! (*)(void))`, it also loads it with `dlopen` (after the table was built) and compares
//! inside the callback, through the library's frame. `stress` samples every allocation
//! (R = 1) of four threads that free each other's blocks, and checks the counts, the
//! unwinder chosen and that the profile names the allocating functions.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use memsentry::MemSentry;
use memsentry::profile::{self, SampleType, Unwinder};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

static DIFFERENCES: AtomicUsize = AtomicUsize::new(0);
static COMPARED: AtomicUsize = AtomicUsize::new(0);

/// Walks the stack here both ways and reports.
#[inline(never)]
fn compare(shape: &str) {
    let (dwarf, table) = memsentry::__both_walks();
    COMPARED.fetch_add(1, Ordering::Relaxed);
    if dwarf == table && !dwarf.is_empty() {
        println!("{shape}: same ({} frames)", dwarf.len());
    } else {
        DIFFERENCES.fetch_add(1, Ordering::Relaxed);
        println!("{shape}: DIFFERENT\n  libgcc {dwarf:x?}\n  table  {table:x?}");
    }
}

#[inline(never)]
fn recurse(depth: usize) -> usize {
    if depth == 0 {
        compare("recursion, 40 deep");
        return 0;
    }
    // Not a tail call: each level keeps its frame.
    black_box(recurse(depth - 1)) + 1
}

#[inline(never)]
fn through_closures() {
    let total: usize = (0..3)
        .map(|i| {
            if i == 1 {
                compare("closures in an iterator");
            }
            black_box(i)
        })
        .sum();
    black_box(total);
}

#[inline(never)]
fn generic<T: std::fmt::Debug>(value: T, shape: &str) {
    compare(shape);
    black_box(format!("{value:?}"));
}

#[inline(always)]
fn inlined_inner() {
    compare("inlined frames");
}

#[inline(always)]
fn inlined_outer() {
    inlined_inner();
    black_box(());
}

#[inline(never)]
fn not_inlined() {
    inlined_outer();
    black_box(());
}

async fn leaf_future() -> u32 {
    compare("an async poll");
    7
}

async fn outer_future() -> u32 {
    leaf_future().await + black_box(1)
}

#[inline(never)]
fn poll_async() {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = std::pin::pin!(outer_future());
    assert!(future.as_mut().poll(&mut cx).is_ready());
}

struct CompareOnDrop;

impl Drop for CompareOnDrop {
    fn drop(&mut self) {
        compare(if std::thread::panicking() {
            "a drop while a panic unwinds"
        } else {
            "a drop"
        });
    }
}

#[inline(never)]
fn panics() {
    let _guard = CompareOnDrop;
    panic!("unwinding through a compared drop");
}

#[inline(never)]
fn caught_panic() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(panics);
    std::panic::set_hook(hook);
    assert!(result.is_err());
    compare("after a caught panic");
}

extern "C" fn qsort_order(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| compare("inside libc's qsort callback"));
    // SAFETY: qsort passes pointers to two elements of the `u32` array below.
    let (a, b) = unsafe { (*a.cast::<u32>(), *b.cast::<u32>()) };
    a.cmp(&b) as libc::c_int
}

#[inline(never)]
fn through_libc() {
    let mut values = [5u32, 3, 9, 1];
    // SAFETY: a valid array of four `u32`s and a comparator for them.
    unsafe {
        libc::qsort(
            values.as_mut_ptr().cast(),
            values.len(),
            std::mem::size_of::<u32>(),
            Some(qsort_order),
        );
    }
    assert_eq!(values, [1, 3, 5, 9]);
}

extern "C" fn from_the_library() {
    compare("inside a dlopen'ed library's callback");
}

/// Loads `path` and compares inside its `memsentry_call_back`.
#[inline(never)]
fn through_dlopen(path: &str) -> Result<(), String> {
    let path = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path; the library is a plain C object of the test's.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        return Err("dlopen failed".to_owned());
    }
    // SAFETY: a valid handle and a NUL-terminated name.
    let symbol = unsafe { libc::dlsym(handle, c"memsentry_call_back".as_ptr()) };
    if symbol.is_null() {
        return Err("no memsentry_call_back in the library".to_owned());
    }
    // SAFETY: the library defines `void memsentry_call_back(void (*)(void))`.
    let call_back: extern "C" fn(extern "C" fn()) = unsafe { std::mem::transmute(symbol) };
    call_back(from_the_library);
    Ok(())
}

fn compare_all(library: Option<&str>) -> ExitCode {
    black_box(recurse(40));
    through_closures();
    generic(1u8, "a generic, u8");
    generic("text", "a generic, &str");
    generic(vec![1.5f64], "a generic, Vec<f64>");
    not_inlined();
    poll_async();
    caught_panic();
    through_libc();
    std::thread::spawn(|| {
        compare("a spawned thread");
        black_box(recurse(40));
    })
    .join()
    .unwrap();
    if let Some(path) = library
        && let Err(error) = through_dlopen(path)
    {
        eprintln!("unwind_walks: {error}");
        return ExitCode::FAILURE;
    }
    let (compared, different) = (
        COMPARED.load(Ordering::Relaxed),
        DIFFERENCES.load(Ordering::Relaxed),
    );
    println!("{compared} stacks compared, {different} different");
    if different == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[inline(never)]
fn stress_site_small(i: u64) -> Box<[u64; 4]> {
    black_box(Box::new([i; 4]))
}

#[inline(never)]
fn stress_site_large(i: u8) -> Vec<u8> {
    black_box(vec![i; 9000])
}

/// Four threads allocate at two named sites for `seconds`, every allocation sampled,
/// sending half their blocks to the next thread to free.
fn stress(seconds: u64) -> ExitCode {
    profile::set_sample_rate(1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel()).unzip();
    let mut threads = Vec::new();
    for (index, receiver) in receivers.into_iter().enumerate() {
        let next = senders[(index + 1) % 4].clone();
        threads.push(std::thread::spawn(move || {
            let mut made = 0u64;
            let ((), usage) = memsentry::measure(|| {
                while Instant::now() < deadline {
                    for i in 0..100 {
                        let small = stress_site_small(i);
                        let large = stress_site_large(i as u8);
                        made += 2;
                        if i % 2 == 0 {
                            let _ = next.send((small, large));
                        }
                    }
                    while let Ok(blocks) = receiver.try_recv() {
                        drop(blocks);
                    }
                }
            });
            drop(next);
            // Drains what is left: every block sent is freed.
            for blocks in receiver.iter() {
                drop(blocks);
            }
            (made, usage.allocations())
        }));
    }
    drop(senders);
    let mut made = 0;
    for thread in threads {
        let (count, allocations) = thread.join().expect("no crash");
        // The scope's allocations: the blocks and the channel's own nodes.
        if allocations < count {
            eprintln!("unwind_walks: counted {allocations} allocations of at least {count}");
            return ExitCode::FAILURE;
        }
        made += count;
    }
    profile::set_sample_rate(0);
    let heap = profile::heap();
    let named = |function: &str| {
        heap.samples_through(function)
            .map(|s| s.alloc.samples)
            .sum::<u64>()
    };
    let (small, large) = (
        named("unwind_walks::stress_site_small"),
        named("unwind_walks::stress_site_large"),
    );
    println!(
        "stress: {made} blocks on 4 threads in {seconds} s, unwinder {}, samples through \
         the sites: {small} + {large}",
        profile::unwinder()
    );
    let usage = profile::usage();
    println!(
        "unwind table: {} rows, {} bytes, built in {} µs; {} rows it cannot express; {} walks \
         stopped early",
        usage.unwind_table_rows,
        usage.unwind_table_bytes,
        usage.unwind_table_build_micros,
        usage.unwind_table_unsupported_rows,
        usage.unwind_walks_stopped
    );
    println!("{}", heap.top(SampleType::AllocObjects, 5));
    if small + large != made {
        eprintln!(
            "unwind_walks: {made} allocations at the sites, {} samples name them",
            small + large
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("compare") => compare_all(args.get(1).map(String::as_str)),
        Some("stress") => {
            let seconds = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
            let code = stress(seconds);
            if profile::unwinder() != Unwinder::Table && cfg!(target_arch = "x86_64") {
                eprintln!(
                    "unwind_walks: the unwinder is {}, expected the unwind table (is this a \
                     build without frame pointers?)",
                    profile::unwinder()
                );
                return ExitCode::FAILURE;
            }
            code
        }
        _ => {
            eprintln!("usage: unwind_walks compare [LIBRARY.so] | stress SECONDS");
            ExitCode::from(2)
        }
    }
}
