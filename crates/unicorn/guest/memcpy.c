/* Page-by-page memset and memcpy over several MiB: every page faulted in
 * by a write (do_anonymous_page), read back through a copy, and checked
 * byte by byte. */
#define PTEMU_RT_IMPL
#include "rt.h"

#define MIB (1024UL * 1024)
#define LEN (6 * MIB)

int main(void)
{
	u8 *a = sys_mmap(0x100000000000UL, LEN, PROT_READ | PROT_WRITE);
	u8 *b = sys_mmap(0x100001000000UL, LEN, PROT_READ | PROT_WRITE);
	if ((i64)a < 0 || (i64)b < 0) {
		put("mmap failed\n");
		return 1;
	}
	for (u64 p = 0; p < LEN / PAGE; p++)
		memset(a + p * PAGE, (int)(p * 7 + 1), PAGE);
	for (u64 p = 0; p < LEN / PAGE; p++)
		memcpy(b + (LEN / PAGE - 1 - p) * PAGE, a + p * PAGE, PAGE);
	u64 bad = 0;
	for (u64 p = 0; p < LEN / PAGE; p++) {
		u8 want = (u8)((LEN / PAGE - 1 - p) * 7 + 1);
		for (u64 i = 0; i < PAGE; i++)
			bad += b[p * PAGE + i] != want;
	}
	put_kv("bad", bad);
	put_kv("fnv-a", fnv(FNV0, a, LEN));
	put_kv("fnv-b", fnv(FNV0, b, LEN));
	/* A read of a never-written page maps the zero page. */
	u8 *z = sys_mmap(0, 4 * PAGE, PROT_READ | PROT_WRITE);
	put_kv("zero", z[3 * PAGE + 5]);
	sys_munmap(a, LEN);
	sys_munmap(b, LEN);
	return bad ? 2 : 0;
}
