/* The seed's scenario (fixtures/seed-swapin.scn) as machine code: A maps
 * and writes a page, forks B, pages it out; B faults it in first, A
 * second; B exits; A asks for the page to be paged out again, which walks
 * its rmap. Under 2.6.34-rc3 page->mapping names B's freed anon_vma by
 * then and that walk is the oops; in the other eras the page goes out and
 * comes back, and the program prints what it read. */
#define PTEMU_RT_IMPL
#include "rt.h"

#define V ((volatile u8 *)0x7f0000000000UL)

int main(void)
{
	if ((i64)sys_mmap((u64)V, PAGE, PROT_READ | PROT_WRITE) < 0)
		return 1;
	V[0] = 0xaa;                          /* A write */
	i64 b = sys_fork();                   /* A fork B */
	if (b == 0) {
		u8 v = V[0];                  /* B read: B's swap-in is first */
		sys_yield();
		sys_exit(v == 0xaa ? 0 : 1);  /* B exit */
	}
	sys_reclaim((void *)V, PAGE);         /* reclaim A V */
	sys_yield();                          /* let B fault it in first */
	u8 a = V[0];                          /* A read */
	int st = -1;
	sys_wait(b, &st);                     /* B exit */
	put_kv("b-status", (u64)st);
	put_kv("a-read", a);
	sys_reclaim((void *)V, PAGE);         /* the rmap walk */
	put_kv("a-read-again", V[0]);
	return 0;
}
