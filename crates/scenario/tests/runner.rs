//! Behaviour of the runner: expectations that do not hold fail with their
//! line, unexpected oopses and violations stop the run where they appear,
//! expected violations are not reported again while they persist.

use ptemu_scenario::{EraRun, parse_str, run_era};

const SEED: &str = "\
eras 2.6.34-rc3 2.6.34
memory 4M
swap 1M
spawn A
A mmap 0x7f0000000000 4K rw
A write 0x7f0000000000 0xaa
A fork B
reclaim A 0x7f0000000000
B read 0x7f0000000000
A read 0x7f0000000000
";

fn run(text: &str, era: &str) -> EraRun {
    let scn = parse_str("t.scn", text).unwrap_or_else(|e| panic!("{e}"));
    run_era(&scn, era, None).0
}

fn stopped_line(r: &EraRun) -> Option<u32> {
    r.stopped.as_ref().map(|f| f.line)
}

#[test]
fn a_wrong_entry_value_fails_at_its_line_and_the_run_goes_on() {
    let text = "spawn A\nA mmap 0x7f0000000000 4K rw\nA write 0x7f0000000000 1\n\
                expect A 0x7f0000000000 pte=0x8000000000000063|pfn\n\
                expect A 0x7f0000000000 present mapcount=1\n";
    let r = run(text, "6.18");
    assert!(!r.passed());
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].line, 4);
    assert!(r.failures[0].message.contains("expected 0x8"), "{}", r.failures[0].message);
    assert_eq!(r.held, 1);
    assert!(r.stopped.is_none());
}

#[test]
fn the_exact_write_fault_entry_holds() {
    let text = "spawn A\nA mmap 0x7f0000000000 4K rw\nA write 0x7f0000000000 1\n\
                expect A 0x7f0000000000 pte=0x8000000000000067|pfn writable=yes dirty=yes accessed=yes\n";
    let r = run(text, "6.18");
    assert!(r.passed(), "{:?}", r.failures);
    assert_eq!(r.held, 1);
}

#[test]
fn an_unexpected_violation_stops_the_run_where_it_appears() {
    let r = run(SEED, "2.6.34-rc3");
    assert_eq!(stopped_line(&r), Some(10));
    let msg = &r.stopped.as_ref().map(|f| f.message.clone()).unwrap_or_default();
    assert!(msg.contains("rmap-unreachable"), "{msg}");
    // The fixed era sees nothing wrong.
    let r = run(SEED, "2.6.34");
    assert!(r.passed(), "{:?} {:?}", r.failures, r.stopped);
}

#[test]
fn an_expected_violation_is_not_reported_again_while_it_persists() {
    let text = format!(
        "{SEED}expect [2.6.34-rc3] invariant rmap-unreachable\nA read 0x7f0000000000\nB read 0x7f0000000000\n"
    );
    let r = run(&text, "2.6.34-rc3");
    assert!(r.passed(), "{:?} {:?}", r.failures, r.stopped);
    // ...but `expect clean` still sees it.
    let text =
        format!("{SEED}expect invariant rmap-unreachable\nA read 0x7f0000000000\nexpect clean\n");
    let r = run(&text, "2.6.34-rc3");
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].line, 13);
}

#[test]
fn an_expectation_of_a_violation_that_is_not_there_fails() {
    let text = format!("{SEED}expect invariant rmap-unreachable\n");
    let r = run(&text, "2.6.34");
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].line, 11);
}

#[test]
fn an_unexpected_oops_stops_the_run() {
    let text = format!(
        "{SEED}expect invariant rmap-unreachable\nB exit\nexpect invariant mapping-freed\n\
         rmap-walk A 0x7f0000000000\nexpect anon-vmas 1\n"
    );
    let r = run(&text, "2.6.34-rc3");
    assert_eq!(stopped_line(&r), Some(14));
    let msg = r.stopped.as_ref().map(|f| f.message.clone()).unwrap_or_default();
    assert!(msg.contains("anon-vma-use-after-free"), "{msg}");
    // The expectation after the oops still ran; nothing after it did.
    assert_eq!(r.held, 3);
}

#[test]
fn era_filters_skip_and_count() {
    let text = "spawn A\nexpect [2.6.33] anon-vmas 5\nexpect [6.18] anon-vmas 0\n";
    let r = run(text, "6.18");
    assert!(r.passed());
    assert_eq!((r.held, r.skipped), (1, 1));
    let r = run(text, "2.6.33");
    assert!(!r.passed());
    assert_eq!(r.failures[0].line, 2);
}

#[test]
fn read_values_segv_and_counts() {
    let text = "spawn A\nA mmap 0x7f0000000000 4K r\nA read 0x7f0000000000 = 1\n\
                A write 0x7f0000000000 2\nA read 0x7f0000000000\nexpect segv\n\
                expect anon-vmas <= 0\nexpect anon-vmas >= 1\n";
    let r = run(text, "6.18");
    let lines: Vec<u32> = r.failures.iter().map(|f| f.line).collect();
    // The read returned 0, the write faulted unexpectedly, the read did not
    // fault, and there is no anon_vma.
    assert_eq!(lines, vec![3, 4, 6, 8], "{:?}", r.failures);
}

#[test]
fn an_operation_on_an_unknown_process_stops_with_its_line() {
    let r = run("spawn A\nB exit\nexpect clean\n", "6.18");
    assert_eq!(stopped_line(&r), Some(2));
    assert_eq!(r.held, 0);
    let r = run("spawn A\nspawn A\n", "6.18");
    assert_eq!(stopped_line(&r), Some(2));
}

#[test]
fn dump_prints_entries_and_stop_after_runs_a_prefix() {
    let text = "spawn A\nA mmap 0x7f0000000000 4K rw\nA write 0x7f0000000000 1\n\
                dump A 0x7f0000000000\nA exit\n";
    let r = run(text, "6.18");
    let out = r.steps.iter().find_map(|s| s.output.clone()).unwrap_or_default();
    assert!(out.contains("0x80000000000"), "{out}");
    let scn = parse_str("t.scn", text).unwrap_or_else(|e| panic!("{e}"));
    let (run, m) = run_era(&scn, "6.18", Some(3));
    assert_eq!(run.steps.iter().filter(|s| s.op_index.is_some()).count(), 3);
    let m = m.unwrap_or_else(|| panic!("machine"));
    assert_eq!(m.live_anon_vmas(), 1);
}

#[test]
fn the_step_log_shows_where_the_mapping_points() {
    let text = format!(
        "{SEED}expect [2.6.34-rc3] invariant rmap-unreachable\nB exit\nexpect [2.6.34-rc3] invariant mapping-freed\n"
    );
    let r = run(&text, "2.6.34-rc3");
    assert!(r.passed(), "{:?} {:?}", r.failures, r.stopped);
    let log = ptemu_scenario::render_run("t.scn", &r);
    assert!(log.contains("mapping=av2 (B) index"), "{log}");
    assert!(log.contains("mapping=av2 (B) [freed]"), "{log}");
    assert!(log.contains("live anon_vmas: [av1(A)]"), "{log}");
    let r = run(&text, "2.6.34");
    assert!(r.passed(), "{:?} {:?}", r.failures, r.stopped);
    let log = ptemu_scenario::render_run("t.scn", &r);
    assert!(log.contains("mapping=av1 (A)"), "{log}");
}

#[test]
fn a_failing_system_call_fails_its_line_and_the_run_goes_on() {
    let text = "spawn A\nA mmap 0x7f0000000000 8K rw\nA mmap 0x7f0000003000 4K rw\n\
                A write 0x7f0000000000 1\n\
                A mprotect 0x7f0000000000 16K r\n\
                expect maps A 0x7f0000000000-0x7f0000002000 r--p 0x7f0000003000-0x7f0000004000 rw-p\n\
                A mprotect 0x7f0000003000 4K r = 0\n\
                A munmap 0x7f0000002000 4K = ENOMEM\n\
                A read 0x7f0000000000 = 1\n\
                A madvise 0x7f0000000000 16K dontneed = ENOMEM\n\
                A read 0x7f0000000000 = 0\n";
    let r = run(text, "6.18");
    assert!(r.stopped.is_none(), "{:?}", r.stopped);
    let lines: Vec<u32> = r.failures.iter().map(|f| f.line).collect();
    // Line 5 failed with no result stated; line 8 returned 0, not ENOMEM.
    assert_eq!(lines, [5, 8], "{:?}", r.failures);
    assert!(r.failures[0].message.contains("ENOMEM (no result stated)"), "{:?}", r.failures);
    assert!(r.failures[1].message.contains("returned 0, expected ENOMEM"), "{:?}", r.failures);
    assert_eq!(r.held, 1, "the maps expectation holds");
    // The reads after the failures ran and held.
    let reads: Vec<&str> =
        r.steps.iter().filter(|s| s.text.contains(" read ")).map(|s| s.result.as_str()).collect();
    assert_eq!(reads, ["read 0x01", "read 0x00"]);
}

#[test]
fn a_wrong_maps_expectation_names_what_is_there() {
    let text = "spawn A\nA mmap 0x7f0000000000 8K rw\nA mprotect 0x7f0000001000 4K none = 0\n\
                expect maps A 0x7f0000000000-0x7f0000002000 rw-p\n";
    let r = run(text, "2.6.33");
    assert_eq!(r.failures.len(), 1);
    assert_eq!(
        r.failures[0].message,
        "A maps 0x7f0000000000-0x7f0000001000 rw-p 0x7f0000001000-0x7f0000002000 ---p, \
         expected 0x7f0000000000-0x7f0000002000 rw-p"
    );
}
