/* fork, copy-on-write and swap together: the parent fills 1 MiB, forks;
 * the child overwrites every other page (COW) while both ask for the
 * whole region to be paged out between steps; each side then checks every
 * byte it should see. Only the parent prints; the child reports through
 * its exit status, so the output is the same whatever the scheduler. */
#define PTEMU_RT_IMPL
#include "rt.h"

#define LEN (1UL << 20)
#define PAGES (LEN / PAGE)

static u8 parent_byte(u64 p, u64 i) { return (u8)(p * 31 + i * 7 + 1); }
static u8 child_byte(u64 p, u64 i) { return (u8)(p * 17 + i * 3 + 101); }

/* Bytes of page p that differ from what `who` should see there. */
static u64 check(const u8 *r, int child)
{
	u64 bad = 0;
	for (u64 p = 0; p < PAGES; p++)
		for (u64 i = 0; i < PAGE; i++) {
			u8 want = child && p % 2 == 0 ? child_byte(p, i) : parent_byte(p, i);
			bad += r[p * PAGE + i] != want;
		}
	return bad;
}

int main(void)
{
	u8 *r = sys_mmap(0x300000000000UL, LEN, PROT_READ | PROT_WRITE);
	if ((i64)r < 0)
		return 1;
	for (u64 p = 0; p < PAGES; p++)
		for (u64 i = 0; i < PAGE; i++)
			r[p * PAGE + i] = parent_byte(p, i);
	/* Half the region out before the fork: the child inherits swap
	 * entries as well as shared present pages. */
	sys_reclaim(r, LEN / 2);
	i64 pid = sys_fork();
	if (pid < 0)
		return 3;
	if (pid == 0) {
		for (u64 p = 0; p < PAGES; p += 2)
			for (u64 i = 0; i < PAGE; i++)
				r[p * PAGE + i] = child_byte(p, i);
		sys_reclaim(r, LEN);
		sys_yield();
		u64 bad = check(r, 1);
		sys_reclaim(r + LEN / 4, LEN / 2);
		sys_yield();
		bad += check(r, 1);
		sys_exit(bad ? 10 : 0);
	}
	sys_yield();
	u64 bad = check(r, 0);
	sys_reclaim(r, LEN);
	/* The parent writes too: pages still shared with the child COW,
	 * pages swapped in by the child come from the swap cache. */
	for (u64 p = 1; p < PAGES; p += 4)
		r[p * PAGE] = parent_byte(p, 0);
	sys_yield();
	bad += check(r, 0);
	int status = -1;
	i64 w = sys_wait(pid, &status);
	put_kv("waited", w == pid);
	put_kv("child-status", (u64)status);
	bad += check(r, 0);
	put_kv("parent-bad", bad);
	put_kv("fnv", fnv(FNV0, r, LEN));
	return bad || status ? 2 : 0;
}
