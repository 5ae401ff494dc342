/* Each step would go wrong if the CPU kept a translation the kernel
 * invalidated: a write after fork must copy (the child still sees the old
 * byte), a read after reclaim must swap the page back in (not read the
 * freed frame, reused meanwhile), a read after MADV_DONTNEED must see
 * zeros, a write after mprotect(PROT_READ) must fault, and a read after
 * munmap must fault. The last two end the process with SIGSEGV, so they
 * run in children and the parent prints their statuses. */
#define PTEMU_RT_IMPL
#include "rt.h"

#define X ((volatile u8 *)0x400000000000UL)
#define FILL ((volatile u8 *)0x400001000000UL)
#define FILL_LEN (256UL << 10)

int main(void)
{
	if ((i64)sys_mmap((u64)X, 4 * PAGE, PROT_READ | PROT_WRITE) < 0)
		return 1;
	if ((i64)sys_mmap((u64)FILL, FILL_LEN, PROT_READ | PROT_WRITE) < 0)
		return 1;

	/* Write after fork: COW. */
	X[0] = 1;
	i64 pid = sys_fork();
	if (pid == 0) {
		sys_yield();
		sys_exit(X[0]); /* must still be 1 */
	}
	X[0] = 2;
	int st = -1;
	sys_wait(pid, &st);
	put_kv("child-saw", (u64)(st >> 8) & 0xff);
	put_kv("parent-has", X[0]);

	/* Read after reclaim: swap-in, even though the old frame is reused. */
	X[PAGE] = 5;
	u64 before = X[PAGE];
	sys_reclaim((void *)(X + PAGE), PAGE);
	for (u64 i = 0; i < FILL_LEN; i += PAGE)
		FILL[i] = 0xee;
	put_kv("after-reclaim", X[PAGE] + (before << 8));

	/* Read after MADV_DONTNEED: a fresh zero page. */
	X[2 * PAGE] = 9;
	sys_madvise((void *)(X + 2 * PAGE), PAGE, MADV_DONTNEED);
	for (u64 i = 0; i < FILL_LEN; i += PAGE)
		FILL[i] = 0xdd;
	put_kv("after-dontneed", X[2 * PAGE]);

	/* Write after mprotect(PROT_READ): SIGSEGV in a child. */
	X[3 * PAGE] = 7;
	pid = sys_fork();
	if (pid == 0) {
		sys_mprotect((void *)(X + 3 * PAGE), PAGE, PROT_READ);
		X[3 * PAGE] = 8;
		sys_exit(0);
	}
	sys_wait(pid, &st);
	put_kv("mprotect-child-status", (u64)st & 0x7f);

	/* Read after munmap: SIGSEGV in a child. */
	pid = sys_fork();
	if (pid == 0) {
		u8 v = X[0];
		sys_munmap((void *)X, 4 * PAGE);
		v += X[0];
		sys_exit(v);
	}
	sys_wait(pid, &st);
	put_kv("munmap-child-status", (u64)st & 0x7f);
	return 0;
}
