/* Links the no_std static library and runs its self-test. */
#include <stdint.h>
#include <stdio.h>

uint32_t ptemu_no_std_selftest(void);

int main(void) {
    uint32_t r = ptemu_no_std_selftest();
    if (r != 0) {
        fprintf(stderr, "no_std self-test: check %u failed\n", r);
        return 1;
    }
    puts("no_std self-test: pgtable walked, looked up and encoded without std");
    return 0;
}
