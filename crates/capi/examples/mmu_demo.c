/* A C emulator's use of ptemu's MMU, checked end to end.
 *
 * The "guest" builds 4-level page tables by hand in its physical memory (a
 * flat buffer, then the same memory behind callbacks); the emulator
 * translates, reads and writes guest-virtual addresses, handles #PF and
 * #GP, and invalidates on INVLPG and MOV to CR3, as its instruction
 * handlers would. Every outcome is checked; the exit status is 0 only if
 * all checks pass.
 *
 * Built and run by `cargo test -p ptemu-capi --test c_example`, or by hand:
 *   cargo build -p ptemu-capi
 *   cc -std=c11 -Wall -Wextra -I crates/capi/include \
 *      crates/capi/examples/mmu_demo.c target/debug/libptemu_capi.a \
 *      -lpthread -ldl -lm -o mmu_demo && ./mmu_demo
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ptemu.h"

static int checks, failures;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        checks++;                                          \
        if (cond) {                                        \
            printf("ok   ");                               \
        } else {                                           \
            failures++;                                    \
            printf("FAIL ");                               \
        }                                                  \
        printf(__VA_ARGS__);                               \
        printf("\n");                                      \
    } while (0)

#define MEM_SIZE (2u << 20)
#define PML4 0x1000u
#define PDPT 0x2000u
#define PD 0x3000u
#define PT 0x4000u
#define VA 0x00007f0000000000ull /* PML4 index 254, the rest 0 */

#define P 0x1ull
#define RW 0x2ull
#define US 0x4ull
#define ACCESSED 0x20ull
#define DIRTY 0x40ull
#define TABLE (P | RW | US)

static uint64_t *word(uint8_t *mem, uint64_t pa) { return (uint64_t *)(mem + pa); }

/* The guest's tables: page 0 -> 0x10000, page 1 -> 0x20000 (user RW),
 * page 2 -> 0x30000 (user read-only), page 3 not present. Table entries
 * have A clear, so the walk sets it. */
static void build_tables(uint8_t *mem) {
    memset(mem, 0, MEM_SIZE);
    *word(mem, PML4 + 8 * 254) = PDPT | TABLE;
    *word(mem, PDPT) = PD | TABLE;
    *word(mem, PD) = PT | TABLE;
    *word(mem, PT + 0) = 0x10000 | P | RW | US;
    *word(mem, PT + 8) = 0x20000 | P | RW | US;
    *word(mem, PT + 16) = 0x30000 | P | US;
    memset(mem + 0x40000, 0x44, 4096);
    memset(mem + 0x50000, 0x55, 4096);
}

static PtemuFault fault_of(PtemuMmu *mmu) {
    PtemuFault f;
    memset(&f, 0xff, sizeof f);
    ptemu_last_fault(mmu, &f);
    return f;
}

/* The checks both memories must pass. */
static void exercise(PtemuMmu *mmu, uint8_t *mem, const char *what) {
    printf("-- %s\n", what);
    PtemuRegs regs = ptemu_regs_long_mode(PML4);
    regs.cpl = 3;
    CHECK(ptemu_set_regs(mmu, &regs) == PTEMU_STATUS_OK, "%s: long mode, CPL 3", what);

    /* A write across the page 0 / page 1 boundary lands in both frames. */
    uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(ptemu_write(mmu, VA + 0xffc, data, 8) == PTEMU_STATUS_OK, "%s: split write", what);
    CHECK(memcmp(mem + 0x10ffc, data, 4) == 0 && memcmp(mem + 0x20000, data + 4, 4) == 0,
          "%s: bytes at 0x10ffc and 0x20000", what);
    uint8_t back[8] = {0};
    CHECK(ptemu_read(mmu, VA + 0xffc, back, 8) == PTEMU_STATUS_OK && memcmp(back, data, 8) == 0,
          "%s: split read returns them", what);

    /* The walk set A on every level and A|D on the written leaves. */
    CHECK((*word(mem, PT) & (ACCESSED | DIRTY)) == (ACCESSED | DIRTY) &&
              (*word(mem, PT + 8) & (ACCESSED | DIRTY)) == (ACCESSED | DIRTY),
          "%s: leaves have A and D (%#llx, %#llx)", what,
          (unsigned long long)*word(mem, PT), (unsigned long long)*word(mem, PT + 8));
    CHECK((*word(mem, PML4 + 8 * 254) & ACCESSED) && (*word(mem, PD) & ACCESSED),
          "%s: table entries have A", what);

    /* Translation. */
    uint64_t pa = 0;
    CHECK(ptemu_translate(mmu, VA + 0x2010, PTEMU_ACCESS_READ, &pa) == PTEMU_STATUS_OK &&
              pa == 0x30010,
          "%s: translate read -> %#llx", what, (unsigned long long)pa);

    /* #PF: user write to a read-only page (error code P|W|U). */
    CHECK(ptemu_write(mmu, VA + 0x2010, data, 1) == PTEMU_STATUS_PAGE_FAULT,
          "%s: write to read-only page faults", what);
    PtemuFault f = fault_of(mmu);
    CHECK(f.vector == 14 && f.error_code == 0x7 && f.cr2 == VA + 0x2010,
          "%s: #PF error code %#x, CR2 %#llx", what, f.error_code, (unsigned long long)f.cr2);
    CHECK(mem[0x30010] == 0, "%s: nothing written", what);

    /* #PF on the second page of a split read: CR2 is that page's first byte. */
    CHECK(ptemu_read(mmu, VA + 0x2ffe, back, 4) == PTEMU_STATUS_PAGE_FAULT,
          "%s: read into a non-present page faults", what);
    f = fault_of(mmu);
    CHECK(f.error_code == 0x4 && f.cr2 == VA + 0x3000,
          "%s: #PF error code %#x, CR2 %#llx", what, f.error_code, (unsigned long long)f.cr2);
    CHECK(ptemu_read(mmu, VA, back, 1) == PTEMU_STATUS_OK && fault_of(mmu).vector == 0,
          "%s: a good access clears the fault record", what);

    /* The guest repoints page 0 without INVLPG: the TLB keeps the old
     * translation, as a CPU may. INVLPG makes the new one visible. */
    uint8_t b = 0;
    *word(mem, PT) = 0x40000 | P | RW | US | ACCESSED | DIRTY;
    CHECK(ptemu_read(mmu, VA + 0x100, &b, 1) == PTEMU_STATUS_OK && b == 0,
          "%s: stale entry still maps the old frame", what);
    CHECK(ptemu_invlpg(mmu, VA) == PTEMU_STATUS_OK, "%s: INVLPG", what);
    CHECK(ptemu_read(mmu, VA + 0x100, &b, 1) == PTEMU_STATUS_OK && b == 0x44,
          "%s: after INVLPG the new frame (%#x)", what, b);

    /* MOV to CR3 (PCIDE=0) drops the non-global entries. */
    *word(mem, PT) = 0x50000 | P | RW | US | ACCESSED | DIRTY;
    CHECK(ptemu_read(mmu, VA + 0x100, &b, 1) == PTEMU_STATUS_OK && b == 0x44,
          "%s: stale again before the CR3 write", what);
    CHECK(ptemu_write_cr3(mmu, PML4) == PTEMU_STATUS_OK, "%s: MOV to CR3", what);
    CHECK(ptemu_read(mmu, VA + 0x100, &b, 1) == PTEMU_STATUS_OK && b == 0x55,
          "%s: after MOV to CR3 the new frame (%#x)", what, b);

    /* #GP and argument errors, with messages. */
    CHECK(ptemu_read(mmu, 0x0000800000000000ull, &b, 1) == PTEMU_STATUS_GENERAL_PROTECTION &&
              fault_of(mmu).vector == 13,
          "%s: non-canonical address is #GP (%s)", what, ptemu_last_error());
    CHECK(ptemu_read(mmu, VA, back, 65) == PTEMU_STATUS_BAD_SIZE &&
              strstr(ptemu_last_error(), "65") != NULL,
          "%s: 65-byte access refused (%s)", what, ptemu_last_error());
    CHECK(ptemu_translate(mmu, VA, 7, &pa) == PTEMU_STATUS_INVALID_ARGUMENT,
          "%s: access kind 7 refused (%s)", what, ptemu_last_error());
    CHECK(ptemu_invpcid(mmu, 1, 5, 0) == PTEMU_STATUS_GENERAL_PROTECTION,
          "%s: INVPCID of PCID 5 with PCIDE=0 is #GP (%s)", what, ptemu_last_error());
    CHECK(ptemu_invpcid(mmu, 2, 0, 0) == PTEMU_STATUS_OK, "%s: INVPCID type 2", what);

    /* Counters. */
    PtemuStats s;
    CHECK(ptemu_get_stats(mmu, &s) == PTEMU_STATUS_OK && s.hits > 0 && s.fills >= 4 &&
              s.flush_invlpg == 1 && s.flush_cr3 == 1 && s.flush_invpcid[2] == 1 &&
              s.faults >= 2,
          "%s: stats hits=%llu misses=%llu fills=%llu faults=%llu invlpg=%llu cr3=%llu", what,
          (unsigned long long)s.hits, (unsigned long long)s.misses,
          (unsigned long long)s.fills, (unsigned long long)s.faults,
          (unsigned long long)s.flush_invlpg, (unsigned long long)s.flush_cr3);
}

/* Callback memory over a buffer, with a hole at [1 MiB, 2 MiB) and call
 * counts. */
struct cbmem {
    uint8_t *mem;
    unsigned reads, writes, cmpxchgs;
};

static int in_hole(uint64_t pa, size_t len) { return pa + len > (1u << 20); }

static int32_t cb_read(void *ctx, uint64_t pa, uint64_t *out) {
    struct cbmem *m = ctx;
    if (in_hole(pa, 8)) return -1;
    m->reads++;
    *out = __atomic_load_n(word(m->mem, pa), __ATOMIC_ACQUIRE);
    return 0;
}

static int32_t cb_write(void *ctx, uint64_t pa, uint64_t value) {
    struct cbmem *m = ctx;
    if (in_hole(pa, 8)) return -1;
    m->writes++;
    __atomic_store_n(word(m->mem, pa), value, __ATOMIC_RELEASE);
    return 0;
}

static int32_t cb_cmpxchg(void *ctx, uint64_t pa, uint64_t expected, uint64_t desired,
                          uint64_t *actual) {
    struct cbmem *m = ctx;
    if (in_hole(pa, 8)) return -1;
    m->cmpxchgs++;
    uint64_t e = expected;
    __atomic_compare_exchange_n(word(m->mem, pa), &e, desired, 0, __ATOMIC_ACQ_REL,
                                __ATOMIC_ACQUIRE);
    *actual = e; /* the value found: `expected` on success */
    return 0;
}

static int32_t cb_read_bytes(void *ctx, uint64_t pa, uint8_t *buf, size_t len) {
    struct cbmem *m = ctx;
    if (in_hole(pa, len)) return -1;
    memcpy(buf, m->mem + pa, len);
    return 0;
}

static int32_t cb_write_bytes(void *ctx, uint64_t pa, const uint8_t *data, size_t len) {
    struct cbmem *m = ctx;
    if (in_hole(pa, len)) return -1;
    memcpy(m->mem + pa, data, len);
    return 0;
}

int main(void) {
    uint8_t *mem = aligned_alloc(4096, MEM_SIZE);
    if (!mem) return 2;

    /* Argument checks need no MMU. */
    PtemuMmu *mmu = NULL;
    CHECK(ptemu_mmu_new_flat(NULL, mem + 4, 4096, &mmu) == PTEMU_STATUS_INVALID_ARGUMENT &&
              mmu == NULL,
          "misaligned buffer refused (%s)", ptemu_last_error());
    PtemuConfig cfg = ptemu_config_default();
    CHECK(cfg.entries == 256 && cfg.maxphyaddr == 52, "default config %u entries", cfg.entries);
    CHECK(cfg.pml4_cache == 4 && cfg.pdpte_cache == 4 && cfg.pde_cache == 32,
          "default paging-structure caches %u/%u/%u", cfg.pml4_cache, cfg.pdpte_cache,
          cfg.pde_cache);
    cfg.pde_cache = 48;
    CHECK(ptemu_mmu_new_flat(&cfg, mem, MEM_SIZE, &mmu) == PTEMU_STATUS_INVALID_ARGUMENT,
          "48-entry PDE cache refused (%s)", ptemu_last_error());
    cfg = ptemu_config_default();
    cfg.entries = 100;
    CHECK(ptemu_mmu_new_flat(&cfg, mem, MEM_SIZE, &mmu) == PTEMU_STATUS_INVALID_ARGUMENT,
          "100-entry TLB refused (%s)", ptemu_last_error());
    CHECK(ptemu_read(NULL, 0, mem, 1) == PTEMU_STATUS_INVALID_ARGUMENT, "NULL mmu refused");
    CHECK(strcmp(ptemu_status_name(PTEMU_STATUS_PAGE_FAULT), "page fault (#PF)") == 0,
          "status name: %s", ptemu_status_name(PTEMU_STATUS_PAGE_FAULT));

    /* Flat buffer. */
    build_tables(mem);
    cfg = ptemu_config_default();
    CHECK(ptemu_mmu_new_flat(&cfg, mem, MEM_SIZE, &mmu) == PTEMU_STATUS_OK, "flat MMU created");
    exercise(mmu, mem, "flat");
    ptemu_mmu_free(mmu);

    /* Callbacks, with and without the byte callbacks. */
    for (int bytes = 1; bytes >= 0; bytes--) {
        struct cbmem m = {mem, 0, 0, 0};
        PtemuMemOps ops = {&m, MEM_SIZE, cb_read, cb_write, cb_cmpxchg,
                           bytes ? cb_read_bytes : NULL, bytes ? cb_write_bytes : NULL};
        build_tables(mem);
        mmu = NULL;
        CHECK(ptemu_mmu_new_callbacks(NULL, &ops, &mmu) == PTEMU_STATUS_OK,
              "callback MMU created");
        const char *what = bytes ? "callbacks" : "word callbacks";
        exercise(mmu, mem, what);
        CHECK(m.cmpxchgs >= 5 && m.reads > 0,
              "%s: A/D set through cmpxchg_u64 (%u calls, %u reads, %u writes)", what,
              m.cmpxchgs, m.reads, m.writes);

        /* A leaf pointing into the hole: the callbacks refuse, the MMU
         * reports a memory error rather than inventing data. */
        *word(mem, PT + 24) = 0x180000 | P | RW | US;
        uint8_t b;
        CHECK(ptemu_read(mmu, VA + 0x3000, &b, 1) == PTEMU_STATUS_MEMORY,
              "%s: frame in a hole is a memory error (%s)", what, ptemu_last_error());
        ptemu_mmu_free(mmu);
    }

    /* A callback set without cmpxchg is refused. */
    struct cbmem m = {mem, 0, 0, 0};
    PtemuMemOps bad = {&m, MEM_SIZE, cb_read, cb_write, NULL, NULL, NULL};
    mmu = NULL;
    CHECK(ptemu_mmu_new_callbacks(NULL, &bad, &mmu) == PTEMU_STATUS_INVALID_ARGUMENT &&
              mmu == NULL,
          "missing cmpxchg_u64 refused (%s)", ptemu_last_error());

    free(mem);
    if (failures) {
        printf("%d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("all %d checks passed\n", checks);
    return 0;
}
