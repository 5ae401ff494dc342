/* The guest's whole runtime: raw Linux x86-64 syscalls, so that the same
 * source runs under ptemu-unicorn (flat image, ptemu as kernel) and
 * natively (static freestanding ELF on the host kernel). */
#ifndef PTEMU_RT_H
#define PTEMU_RT_H

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;
typedef long i64;

#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED_NOREPLACE 0x100000
#define MADV_DONTNEED 4
#define MADV_PAGEOUT 21
#define PAGE 4096UL
#define SYS_PTEMU_RECLAIM 0x50540001L

static inline i64 sc(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e, i64 f)
{
	i64 ret;
	register i64 r10 __asm__("r10") = d;
	register i64 r8 __asm__("r8") = e;
	register i64 r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

static inline void *sys_mmap(u64 addr, u64 len, int prot)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | (addr ? MAP_FIXED_NOREPLACE : 0);
	return (void *)sc(9, addr, len, prot, flags, -1, 0);
}
static inline i64 sys_munmap(void *a, u64 len) { return sc(11, (i64)a, len, 0, 0, 0, 0); }
static inline i64 sys_mprotect(void *a, u64 len, int prot) { return sc(10, (i64)a, len, prot, 0, 0, 0); }
static inline i64 sys_madvise(void *a, u64 len, int adv) { return sc(28, (i64)a, len, adv, 0, 0, 0); }
static inline i64 sys_fork(void) { return sc(57, 0, 0, 0, 0, 0, 0); }
static inline i64 sys_yield(void) { return sc(24, 0, 0, 0, 0, 0, 0); }
static inline i64 sys_write(int fd, const void *b, u64 n) { return sc(1, fd, (i64)b, n, 0, 0, 0); }
static inline i64 sys_wait(i64 pid, int *status) { return sc(61, pid, (i64)status, 0, 0, 0, 0); }
static inline __attribute__((noreturn)) void sys_exit(int code)
{
	sc(231, code, 0, 0, 0, 0, 0);
	for (;;)
		;
}

/* Page the range out: ptemu's reclaim request under ptemu-unicorn,
 * MADV_PAGEOUT on the host (which may or may not swap: the program's
 * results must not depend on it). */
static inline i64 sys_reclaim(void *a, u64 len)
{
#ifdef PTEMU_NATIVE
	sc(28, (i64)a, len, MADV_PAGEOUT, 0, 0, 0);
	return 0;
#else
	return sc(SYS_PTEMU_RECLAIM, (i64)a, len, 0, 0, 0, 0);
#endif
}

static inline u64 str_len(const char *s)
{
	u64 n = 0;
	while (s[n])
		n++;
	return n;
}
static inline void put(const char *s) { sys_write(1, s, str_len(s)); }
static inline void put_hex(u64 v)
{
	char b[19];
	b[0] = '0';
	b[1] = 'x';
	for (int i = 0; i < 16; i++)
		b[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
	b[18] = 0;
	put(b);
}
static inline void put_kv(const char *k, u64 v)
{
	put(k);
	put(" ");
	put_hex(v);
	put("\n");
}

/* FNV-1a over a buffer, 8 bytes at a time folded bytewise. */
static inline u64 fnv(u64 h, const u8 *p, u64 n)
{
	for (u64 i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3UL;
	}
	return h;
}
#define FNV0 0xcbf29ce484222325UL

int main(void);

/* The compiler may emit calls to these for loops and struct copies. */
void *memset(void *d, int c, u64 n);
void *memcpy(void *d, const void *s, u64 n);

#ifdef PTEMU_RT_IMPL
void *memset(void *d, int c, u64 n)
{
	u8 *p = d;
	for (u64 i = 0; i < n; i++)
		p[i] = (u8)c;
	return d;
}
void *memcpy(void *d, const void *s, u64 n)
{
	u8 *p = d;
	const u8 *q = s;
	for (u64 i = 0; i < n; i++)
		p[i] = q[i];
	return d;
}
__attribute__((section(".text.start"), naked, noreturn)) void _start(void)
{
	__asm__ volatile("and $-16, %rsp\n\t"
			 "call main\n\t"
			 "mov %eax, %edi\n\t"
			 "mov $231, %eax\n\t"
			 "syscall\n\t"
			 "hlt");
}
#endif
#endif
