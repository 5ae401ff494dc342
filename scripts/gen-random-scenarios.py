#!/usr/bin/env python3
"""Random scenarios of the kind issue 13 found ptemu stopping on.

Each scenario has up to six processes (spawn and fork), 25-50 operations,
mmap (now and then over an existing mapping: EEXIST), writes and reads,
mprotect, munmap and madvise(DONTNEED) over partial ranges that often
cross holes, ranged reclaim (some with keep-cache), exit and execve; one in
five runs in 256K of memory so that reclaim also happens under pressure.

The expectations come from a small model of what Linux does, written from
the kernel's rules, not from ptemu:
- mmap over any mapped page is EEXIST and changes nothing;
- munmap succeeds whatever the range holds;
- mprotect starting in a hole is ENOMEM and changes nothing; otherwise it
  changes the mapped pages from the start up to the first hole and is
  ENOMEM if it met one (do_mprotect_pkey);
- madvise(DONTNEED) zaps every mapped page of the range and is ENOMEM if
  any page of the range is unmapped (madvise_walk_vmas);
- a read returns the last byte written in that process (fork copies, a zap
  or a new mapping gives 0), and an access with no mapping, a read of a
  PROT_NONE page or a write to a page without write permission is SIGSEGV.
Every failing call states its errno (`= ENOMEM`), as the contract requires;
some successful ones state `= 0`. Every read states its value, every
faulting access `expect segv`, and every file ends with `expect clean` and
`expect no-leaks`. Which pages reclaim takes is not modelled: nothing the
expectations say depends on it.

The files are meaningful for the modern kernel only (`era 6.18`): their
whole point is to be run against the host kernel with `ptemu oracle`.

Deterministic: the same --seed and --count give the same files, byte for
byte. Usage:

    scripts/gen-random-scenarios.py --seed 13 --count 40 --out fixtures/random
"""

import argparse
import os
import random
import sys

PAGE = 4096
BASE = 0x7F0000000000
REGIONS = 3
REGION_STRIDE = 0x100000
REGION_PAGES = 16
PROTS = ["none", "r", "rw", "rx", "rwx"]
NAMES = ["A", "B", "C", "D", "E", "F"]
MAX_PROCS = 6


def page_addr(region, index):
    return BASE + region * REGION_STRIDE + index * PAGE


class Proc:
    def __init__(self, name):
        self.name = name
        self.prot = {}  # page address -> prot
        self.val = {}  # page address -> last byte written (absent: 0)

    def fork(self, name):
        c = Proc(name)
        c.prot = dict(self.prot)
        c.val = dict(self.val)
        return c


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.lines = []
        self.procs = {}  # name -> Proc (live)
        self.created = 0
        self.ops = 0

    def emit(self, text):
        self.lines.append(text)

    def op(self, text):
        self.emit(text)
        self.ops += 1

    def new_name(self):
        name = NAMES[self.created]
        self.created += 1
        return name

    def some_proc(self):
        return self.procs[self.rng.choice(sorted(self.procs))]

    def result(self, err):
        if err:
            return f" = {err}"
        return " = 0" if self.rng.random() < 0.3 else ""

    def any_page(self, p, mapped_bias=0.85):
        """A page address: usually one p maps, else any page of the arena."""
        mapped = sorted(p.prot)
        if mapped and self.rng.random() < mapped_bias:
            return self.rng.choice(mapped)
        return page_addr(self.rng.randrange(REGIONS), self.rng.randrange(REGION_PAGES))

    def range_pages(self, start, n):
        return [start + i * PAGE for i in range(n)]

    # --- operations -----------------------------------------------------

    def do_mmap(self, p, allow_eexist=True):
        for _ in range(20):
            region = self.rng.randrange(REGIONS)
            first = self.rng.randrange(REGION_PAGES - 1)
            n = self.rng.randint(1, min(6, REGION_PAGES - first))
            pages = self.range_pages(page_addr(region, first), n)
            clash = any(a in p.prot for a in pages)
            if clash and not (allow_eexist and self.rng.random() < 0.15):
                continue
            prot = self.rng.choices(PROTS, weights=[1, 2, 8, 1, 1])[0]
            if clash:
                self.op(f"{p.name} mmap {pages[0]:#x} {n * 4}K {prot}{self.result('EEXIST')}")
            else:
                for a in pages:
                    p.prot[a] = prot
                    p.val.pop(a, None)
                self.op(f"{p.name} mmap {pages[0]:#x} {n * 4}K {prot}{self.result(None)}")
            return True
        return False

    def do_write(self, p):
        a = self.any_page(p)
        v = self.rng.randint(1, 255)
        self.op(f"{p.name} write {a:#x} {v:#04x}")
        if p.prot.get(a) in ("rw", "rwx"):
            p.val[a] = v
        else:
            self.emit("expect segv")

    def do_read(self, p):
        a = self.any_page(p)
        if p.prot.get(a) in ("r", "rw", "rx", "rwx"):
            self.op(f"{p.name} read {a:#x} = {p.val.get(a, 0):#04x}")
        else:
            self.op(f"{p.name} read {a:#x}")
            self.emit("expect segv")

    def ranged(self, p):
        start = self.any_page(p, mapped_bias=0.8)
        # Start a page or two early now and then, so the range opens on a hole.
        if self.rng.random() < 0.2:
            start -= PAGE * self.rng.randint(1, 2)
        n = self.rng.randint(1, 8)
        return start, n, self.range_pages(start, n)

    def do_mprotect(self, p):
        start, n, pages = self.ranged(p)
        prot = self.rng.choices(PROTS, weights=[2, 3, 4, 1, 1])[0]
        err = None
        for a in pages:
            if a not in p.prot:
                err = "ENOMEM"
                break
            p.prot[a] = prot
        self.op(f"{p.name} mprotect {start:#x} {n * 4}K {prot}{self.result(err)}")

    def do_munmap(self, p):
        start, n, pages = self.ranged(p)
        for a in pages:
            p.prot.pop(a, None)
            p.val.pop(a, None)
        self.op(f"{p.name} munmap {start:#x} {n * 4}K{self.result(None)}")

    def do_madvise(self, p):
        start, n, pages = self.ranged(p)
        err = None
        for a in pages:
            if a in p.prot:
                p.val.pop(a, None)
            else:
                err = "ENOMEM"
        self.op(f"{p.name} madvise {start:#x} {n * 4}K dontneed{self.result(err)}")

    def do_reclaim(self, p):
        start, n, _ = self.ranged(p)
        keep = " keep-cache" if self.rng.random() < 0.15 else ""
        self.op(f"reclaim {p.name} {start:#x} {n * 4}K{keep}")

    def do_fork(self, p):
        name = self.new_name()
        self.procs[name] = p.fork(name)
        self.op(f"{p.name} fork {name}")

    def do_exit(self, p):
        del self.procs[p.name]
        self.op(f"{p.name} exit")

    def do_execve(self, p):
        p.prot.clear()
        p.val.clear()
        self.op(f"{p.name} execve")

    def do_spawn(self):
        name = self.new_name()
        self.procs[name] = Proc(name)
        self.op(f"spawn {name}")
        self.do_mmap(self.procs[name], allow_eexist=False)

    # --- a scenario ----------------------------------------------------

    def scenario(self, title, index):
        rng = self.rng
        target = rng.randint(25, 50)
        pressure = index % 5 == 4
        self.emit(f"# {title}")
        self.emit("# Generated by scripts/gen-random-scenarios.py; do not edit by hand.")
        self.emit("# Expectations from the generator's model of Linux (see the script).")
        self.emit("era 6.18")
        if pressure:
            self.emit("memory 256K")
            self.emit("swap 1M")
        elif rng.random() < 0.3:
            self.emit("swap 16M")
        self.do_spawn()
        while self.ops < target:
            p = self.some_proc()
            r = rng.random()
            if r < 0.12:
                self.do_mmap(p)
            elif r < 0.34:
                self.do_write(p)
            elif r < 0.50:
                self.do_read(p)
            elif r < 0.61:
                self.do_mprotect(p)
            elif r < 0.67:
                self.do_munmap(p)
            elif r < 0.74:
                self.do_madvise(p)
            elif r < 0.84:
                self.do_reclaim(p)
            elif r < 0.92:
                if self.created < MAX_PROCS:
                    self.do_fork(p)
            elif r < 0.96:
                if len(self.procs) > 1:
                    self.do_exit(p)
                elif self.created < MAX_PROCS:
                    self.do_spawn()
            else:
                self.do_execve(p)
                self.do_mmap(p, allow_eexist=False)
        self.emit("expect clean")
        self.emit("expect no-leaks")
        return "\n".join(self.lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--out", default="fixtures/random")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for i in range(args.count):
        seed = args.seed * 1000 + i
        title = f"random scenario {i + 1} of {args.count} (seed {args.seed}, scenario seed {seed})"
        text = Gen(seed).scenario(title, i)
        path = os.path.join(args.out, f"random-{i + 1:02d}.scn")
        with open(path, "w", encoding="ascii") as f:
            f.write(text)
    print(f"wrote {args.count} scenarios to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
