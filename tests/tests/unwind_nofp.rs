//! memsentry in the build a user gets: no forced frame pointers. The examples are built
//! with `-C force-frame-pointers=no` (in `target/nofp`), and:
//! - the unwind-table walk gives the same frames as libgcc's on many shapes of stack
//!   (recursion, closures, generics, inlined frames, an async poll, a drop while a panic
//!   unwinds, libc's qsort calling back, a thread, and a C library loaded with `dlopen`
//!   after the table was built, compiled without frame pointers);
//! - sampling every allocation of four threads that free each other's blocks crashes
//!   nothing, counts exactly and names the allocating functions, walked by the table;
//! - the accuracy harness gives the same estimates as in the workspace's own build (with
//!   frame pointers), walked by the table there and by frame pointers here.

use std::path::Path;
use std::process::Command;

use memsentry_integration::{cargo, workspace_root};

const NO_FRAME_POINTERS: [(&str, &str); 2] = [
    ("RUSTFLAGS", "-C force-frame-pointers=no"),
    ("CARGO_TARGET_DIR", "target/nofp"),
];

fn run(binary: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary)
        .args(args)
        .output()
        .expect("the example runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A C library exporting `memsentry_call_back`, compiled without frame pointers.
fn callback_library(dir: &Path) -> std::path::PathBuf {
    let source = dir.join("callback.c");
    std::fs::write(
        &source,
        "void memsentry_call_back(void (*f)(void)) { f(); __asm__ volatile(\"\" ::: \"memory\"); }\n",
    )
    .unwrap();
    let library = dir.join("libcallback.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-fomit-frame-pointer"])
        .args(["-fno-optimize-sibling-calls", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "cc failed");
    library
}

#[test]
fn without_frame_pointers_the_table_walks_as_libgcc_does() {
    let built = cargo(
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "memsentry-examples",
            "--example",
            "unwind_walks",
            "--example",
            "accuracy",
        ],
        &NO_FRAME_POINTERS,
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let examples = workspace_root().join("target/nofp/release/examples");
    let dir = std::env::temp_dir().join(format!("memsentry-nofp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let library = callback_library(&dir);

    let (ok, stdout, stderr) = run(
        &examples.join("unwind_walks"),
        &["compare", library.to_str().unwrap()],
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("13 stacks compared, 0 different"),
        "{stdout}"
    );
    assert!(
        stdout.contains("inside a dlopen'ed library's callback: same"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run(&examples.join("unwind_walks"), &["stress", "3"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("unwinder unwind tables"), "{stdout}");

    // The accuracy harness, both ways: the same estimates, walked differently.
    let (ok, nofp, stderr) = run(&examples.join("accuracy"), &[]);
    assert!(ok, "{nofp}\n{stderr}");
    assert!(nofp.contains("stacks walked by unwind tables"), "{nofp}");
    let fp = cargo(
        &[
            "run",
            "--release",
            "--quiet",
            "-p",
            "memsentry-examples",
            "--example",
            "accuracy",
        ],
        &[],
    );
    let fp = String::from_utf8_lossy(&fp.stdout).into_owned();
    assert!(fp.contains("stacks walked by frame pointers"), "{fp}");
    let rows = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with('|'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(rows(&fp), rows(&nofp), "the same estimates:\n{fp}\n{nofp}");
    std::fs::remove_dir_all(&dir).unwrap();
}
