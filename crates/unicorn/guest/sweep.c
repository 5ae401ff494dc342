/* The memory-bound loop of the `unicorn` criterion group: one load per
 * page over 16 MiB, four rounds, then hlt (which ends Unicorn's run). The
 * bench maps the data and faults it in beforehand, so the loop's cost is
 * its loads and the emulated TLB's fills, nothing else. */
typedef unsigned long u64;

#define DATA 0x100000000000UL
#define PAGES 4096UL
#define ROUNDS 4

__attribute__((section(".text.start"), noreturn)) void _start(void)
{
	volatile u64 *p = (volatile u64 *)DATA;
	u64 sum = 0;
	for (int r = 0; r < ROUNDS; r++)
		for (u64 i = 0; i < PAGES; i++)
			sum += p[i * 512 + (i & 511)];
	__asm__ volatile("hlt" : : "a"(sum));
	for (;;)
		;
}
