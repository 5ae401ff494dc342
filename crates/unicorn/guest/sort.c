/* A sieve of Eratosthenes over an 8 MiB byte array and a heapsort of 4 MiB
 * of pseudo-random words: large arrays touched in strided and random
 * orders. Prints the prime count, checksums and whether the sort holds. */
#define PTEMU_RT_IMPL
#include "rt.h"

#define SIEVE (8UL << 20)
#define WORDS (512UL << 10)

static void sift(u64 *a, u64 root, u64 n)
{
	for (;;) {
		u64 c = 2 * root + 1;
		if (c >= n)
			return;
		if (c + 1 < n && a[c + 1] > a[c])
			c++;
		if (a[root] >= a[c])
			return;
		u64 t = a[root];
		a[root] = a[c];
		a[c] = t;
		root = c;
	}
}

int main(void)
{
	u8 *s = sys_mmap(0x200000000000UL, SIEVE, PROT_READ | PROT_WRITE);
	u64 *w = sys_mmap(0x200001000000UL, WORDS * 8, PROT_READ | PROT_WRITE);
	if ((i64)s < 0 || (i64)w < 0)
		return 1;
	/* s[i] = 1 marks a composite; the fresh mapping reads as zeros. */
	for (u64 i = 2; i * i < SIEVE; i++)
		if (!s[i])
			for (u64 j = i * i; j < SIEVE; j += i)
				s[j] = 1;
	u64 primes = 0, last = 0;
	for (u64 i = 2; i < SIEVE; i++)
		if (!s[i]) {
			primes++;
			last = i;
		}
	put_kv("primes", primes);
	put_kv("largest", last);
	put_kv("fnv-sieve", fnv(FNV0, s, SIEVE));

	u64 x = 0x9e3779b97f4a7c15UL;
	u64 sum = 0;
	for (u64 i = 0; i < WORDS; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
		sum += x;
	}
	for (u64 i = WORDS / 2; i-- > 0;)
		sift(w, i, WORDS);
	for (u64 n = WORDS; n-- > 1;) {
		u64 t = w[0];
		w[0] = w[n];
		w[n] = t;
		sift(w, 0, n);
	}
	u64 sorted = 1, sum2 = 0;
	for (u64 i = 0; i < WORDS; i++) {
		sum2 += w[i];
		if (i && w[i - 1] > w[i])
			sorted = 0;
	}
	put_kv("sorted", sorted);
	put_kv("sum-kept", sum == sum2);
	put_kv("fnv-sorted", fnv(FNV0, (u8 *)w, WORDS * 8));
	return sorted && sum == sum2 ? 0 : 2;
}
