//! The accuracy harness (`cargo run --release --example accuracy`) meets every target:
//! estimated in-use bytes at four call sites with known ground truth, at R = 64 KiB and
//! as the mean of 20 seeded runs at R = 512 KiB. It exits non-zero on a miss.

use memsentry_integration::cargo;

#[test]
fn sampled_estimates_meet_the_accuracy_targets() {
    let output = cargo(
        &["run", "--release", "--quiet", "--example", "accuracy"],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("every target met"), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("| 512 KiB"))
            .count(),
        2,
        "{stdout}"
    );
}
