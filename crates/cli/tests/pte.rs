//! `ptemu pte` as a user runs it: the built binary, its output and exit codes.

use std::process::{Command, Output};

fn ptemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptemu")).args(args).output().expect("the ptemu binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

fn ok(args: &[&str]) -> String {
    let o = ptemu(args);
    assert_eq!(o.status.code(), Some(0), "{args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    stdout(&o).trim_end().to_string()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).expect("one JSON object")
}

/// Exit status 2 and exactly one line on stderr.
fn usage_error(args: &[&str]) -> String {
    let o = ptemu(args);
    assert_eq!(o.status.code(), Some(2), "{args:?} should be an input error");
    assert!(o.stdout.is_empty(), "{args:?} printed to stdout");
    let err = String::from_utf8(o.stderr).expect("utf-8");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err:?}");
    err
}

#[test]
fn swap_vectors_both_formats() {
    assert_eq!(ok(&["pte", "swap", "0", "0"]), "0x07fffffffffffe00");
    assert_eq!(ok(&["pte", "swap", "0", "1"]), "0x07fffffffffffc00");
    assert_eq!(ok(&["pte", "swap", "3", "0x12345"]), "0x1ffffffffdb97400");
    assert_eq!(ok(&["pte", "swap", "3", "74565", "--format", "l1tf"]), "0x1ffffffffdb97400");
    assert_eq!(ok(&["pte", "swap", "0", "1", "--format", "classic"]), "0x0000000000000200");
    assert_eq!(ok(&["pte", "swap", "3", "0x12345", "--format", "classic"]), "0x0000000002468a06");
    assert_eq!(
        ok(&["pte", "swap", "3", "0x12345", "--exclusive", "--soft-dirty", "--uffd-wp"]),
        "0x1ffffffffdb9740e"
    );
    assert_eq!(ok(&["pte", "swap", "31", "0x3ffffffffffff"]), "0xf800000000000000");
}

#[test]
fn decode_swap_json() {
    let v = json(&["pte", "decode", "0x1ffffffffdb9740e", "--json"]);
    assert_eq!(v["kind"], "swap");
    assert_eq!(v["type"], 3);
    assert_eq!(v["offset"], 0x12345);
    assert_eq!(v["exclusive"], true);
    assert_eq!(v["soft_dirty"], true);
    assert_eq!(v["uffd_wp"], true);
    let v = json(&["pte", "decode", "0x2468a06", "--json", "--format", "classic"]);
    assert_eq!(
        (v["kind"].as_str(), v["type"].as_u64(), v["offset"].as_u64()),
        (Some("swap"), Some(3), Some(0x12345))
    );
    assert_eq!(v["exclusive"], false);
}

#[test]
fn decode_present_none_protnone() {
    let v = json(&["pte", "decode", "0x8000000012345867", "--json"]);
    assert_eq!(v["kind"], "present");
    assert_eq!(v["pfn"], 0x12345);
    assert_eq!(
        v["flags"],
        serde_json::json!(["PRESENT", "WRITABLE", "USER", "ACCESSED", "DIRTY", "SOFT_DIRTY", "NX"])
    );
    // A 2 MiB leaf: bit 7 is PS, bit 12 PAT_LARGE, and the frame is 2 MiB aligned.
    let v = json(&["pte", "decode", "--level", "2", "0x402010e7", "--json"]);
    assert_eq!(v["pfn"], 0x40200);
    assert_eq!(v["leaf"], true);
    assert_eq!(
        v["flags"],
        serde_json::json!(["PRESENT", "WRITABLE", "USER", "ACCESSED", "DIRTY", "PS", "PAT_LARGE"])
    );
    assert_eq!(json(&["pte", "decode", "0", "--json"])["kind"], "none");
    // Modern pte_none ignores A and D; classic does not.
    assert_eq!(json(&["pte", "decode", "0x60", "--json"])["kind"], "none");
    assert_eq!(json(&["pte", "decode", "0x20", "--json", "--format", "classic"])["kind"], "swap");
    // PROT_NONE: the real frame number, un-inverted in the L1TF format.
    let v = json(&["pte", "decode", "0x000ffffffedcb120", "--json"]);
    assert_eq!((v["kind"].as_str(), v["pfn"].as_u64()), (Some("protnone"), Some(0x1234)));
    let v = json(&["pte", "decode", "0x1234120", "--json", "--format", "classic"]);
    assert_eq!((v["kind"].as_str(), v["pfn"].as_u64()), (Some("protnone"), Some(0x1234)));
}

#[test]
fn decode_text() {
    let t = ok(&["pte", "decode", "0x07fffffffffffc00"]);
    assert!(t.contains("swap entry") && t.contains("offset 0x1"), "{t}");
    let t = ok(&["pte", "decode", "--level", "4", "0x83"]);
    assert!(t.contains("reserved bits set: 0x80"), "{t}");
    let t = ok(&["pte", "decode", "--level", "3", "0x40000083"]);
    assert!(t.contains("1 GiB page at frame 0x40000"), "{t}");
}

#[test]
fn bad_input_is_exit_2_one_line() {
    let e = usage_error(&["pte", "swap", "32", "0"]);
    assert!(e.contains("swap type 32"), "{e}");
    let e = usage_error(&["pte", "swap", "300", "0"]);
    assert!(e.contains("300"), "{e}");
    let e = usage_error(&["pte", "swap", "0", "0x4000000000000"]);
    assert!(e.contains("0x4000000000000"), "{e}");
    usage_error(&["pte", "swap", "0", "1", "--format", "classic", "--exclusive"]);
    let e = usage_error(&["pte", "swap", "x", "1"]);
    assert!(e.contains("\"x\""), "{e}");
    usage_error(&["pte", "decode", "0x10000000000000000"]);
    usage_error(&["pte", "decode", "--level", "5", "1"]);
    usage_error(&["pte", "decode", "--level", "0", "1"]);
    usage_error(&["pte", "decode", "12abc"]);
    // A classic nonlinear file PTE is not an anonymous entry.
    let e = usage_error(&["pte", "decode", "0x1040", "--format", "classic"]);
    assert!(e.contains("_PAGE_FILE"), "{e}");
    // Unknown flag or format: clap's own error, still exit 2.
    let o = ptemu(&["pte", "swap", "0", "1", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    let o = ptemu(&["pte", "swap", "0", "1", "--format", "vintage"]);
    assert_eq!(o.status.code(), Some(2));
}
