/*
 * mmhost: the host kernel doing the work of ptemu's `mm` benchmarks, so
 * that criterion can compare the two in the same run.
 *
 * Usage: mmhost MODE PAGES ITERS
 *   anon_write_fault  write one byte to each of ITERS fresh pages
 *   cow_fault         populate PAGES, fork, the child writes ITERS of them
 *   fork              populate PAGES, time ITERS fork() calls
 *   swap_out_in       populate ITERS pages, MADV_PAGEOUT each and read it
 *                     back (needs active swap; exits 3 when a page did not
 *                     reach swap)
 *   munmap            ITERS times: populate PAGES, time their munmap
 *   page_fault1       ITERS times will-it-scale's page_fault1 loop: mmap
 *                     PAGES, write one byte to each page, munmap (all timed)
 * Prints "ns=N": the time spent in the measured operations only, on the
 * calling thread's CPU-time clock (user and kernel time; a child times
 * itself), or on CLOCK_MONOTONIC when MMHOST_CLOCK=wall.
 *
 * Regions are MADV_NOHUGEPAGE so every fault is a 4 KiB one, as in ptemu.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

static clockid_t clock_id = CLOCK_THREAD_CPUTIME_ID;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(clock_id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static volatile char *region(size_t pages)
{
	void *p = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	madvise(p, pages * 4096, MADV_NOHUGEPAGE);
	return p;
}

static void populate(volatile char *r, size_t pages)
{
	for (size_t i = 0; i < pages; i++)
		r[i * 4096] = (char)i;
}

/* Whether the page at addr is swapped, from /proc/self/pagemap bit 62. */
static int swapped(volatile char *addr)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e = 0;
	if (fd < 0)
		return -1;
	if (pread(fd, &e, 8, ((uintptr_t)addr / 4096) * 8) != 8)
		e = 0;
	close(fd);
	return (e >> 62) & 1;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: mmhost MODE PAGES ITERS\n");
		return 2;
	}
	const char *mode = argv[1];
	size_t pages = strtoull(argv[2], NULL, 0);
	size_t iters = strtoull(argv[3], NULL, 0);
	uint64_t total = 0;
	const char *clk = getenv("MMHOST_CLOCK");
	if (clk && !strcmp(clk, "wall"))
		clock_id = CLOCK_MONOTONIC;

	if (!strcmp(mode, "anon_write_fault")) {
		volatile char *r = region(iters);
		uint64_t t = now_ns();
		for (size_t i = 0; i < iters; i++)
			r[i * 4096] = 1;
		total = now_ns() - t;
		munmap((void *)r, iters * 4096);
	} else if (!strcmp(mode, "cow_fault")) {
		if (iters > pages)
			iters = pages;
		volatile char *r = region(pages);
		int fds[2];
		populate(r, pages);
		if (pipe(fds)) {
			perror("pipe");
			return 2;
		}
		pid_t c = fork();
		if (c == 0) {
			uint64_t t = now_ns();
			for (size_t i = 0; i < iters; i++)
				r[i * 4096] = 2;
			t = now_ns() - t;
			if (write(fds[1], &t, 8) != 8)
				_exit(1);
			_exit(0);
		}
		if (read(fds[0], &total, 8) != 8) {
			fprintf(stderr, "child failed\n");
			return 2;
		}
		waitpid(c, NULL, 0);
	} else if (!strcmp(mode, "fork")) {
		volatile char *r = region(pages);
		populate(r, pages);
		for (size_t i = 0; i < iters; i++) {
			uint64_t t = now_ns();
			pid_t c = fork();
			if (c == 0)
				_exit(0);
			total += now_ns() - t;
			waitpid(c, NULL, 0);
		}
	} else if (!strcmp(mode, "swap_out_in")) {
		volatile char *r = region(iters);
		populate(r, iters);
		volatile char sink = 0;
		for (size_t i = 0; i < iters; i++) {
			volatile char *p = r + i * 4096;
			uint64_t t = now_ns();
			madvise((void *)p, 4096, MADV_PAGEOUT);
			uint64_t mid = now_ns();
			total += mid - t;
			if (i == 0 && swapped(p) != 1) {
				fprintf(stderr, "MADV_PAGEOUT did not swap the page out\n");
				return 3;
			}
			t = now_ns();
			sink += *p;
			total += now_ns() - t;
		}
		(void)sink;
	} else if (!strcmp(mode, "munmap")) {
		for (size_t i = 0; i < iters; i++) {
			volatile char *r = region(pages);
			populate(r, pages);
			uint64_t t = now_ns();
			munmap((void *)r, pages * 4096);
			total += now_ns() - t;
		}
	} else if (!strcmp(mode, "page_fault1")) {
		uint64_t t = now_ns();
		for (size_t i = 0; i < iters; i++) {
			volatile char *r = region(pages);
			for (size_t k = 0; k < pages; k++)
				r[k * 4096] = 0;
			munmap((void *)r, pages * 4096);
		}
		total = now_ns() - t;
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	printf("ns=%llu\n", (unsigned long long)total);
	return 0;
}
