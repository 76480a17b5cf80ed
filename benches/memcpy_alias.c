/* How glibc's memcpy speed depends on where the destination sits relative to the source
 * (benches/RESULTS.md, "Copies that avoid glibc's page-aliasing rep movsb path").
 *
 *   gcc -O2 benches/memcpy_alias.c -o /tmp/memcpy_alias && taskset -c 0 /tmp/memcpy_alias
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Best of 10 copies of `n` bytes, in microseconds. */
static double best_us(char *dst, const char *src, size_t n) {
    double best = 1e9;
    for (int round = 0; round < 10; round++) {
        double start = seconds();
        memcpy(dst, src, n);
        __asm__ volatile("" ::"r"(dst) : "memory");
        double elapsed = seconds() - start;
        if (elapsed < best) best = elapsed;
    }
    return best * 1e6;
}

int main(void) {
    size_t cap = 4 << 20;
    char *src = aligned_alloc(4096, cap), *dst = aligned_alloc(4096, cap);
    memset(src, 1, cap);
    memset(dst, 2, cap);
    int aheads[] = {0, 1, 3, 16, 31, 32, 63, 64, 100, 2048, 4064, 4095};
    size_t sizes[] = {2048, 2112, 3072, 4096, 65536, 262144, 524288, 1048576};
    printf("bytes ahead (mod 4 KiB):");
    for (size_t a = 0; a < sizeof aheads / sizeof *aheads; a++) printf(" %7d", aheads[a]);
    printf("\n");
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        printf("%8zu bytes, µs:     ", sizes[s]);
        for (size_t a = 0; a < sizeof aheads / sizeof *aheads; a++)
            printf(" %7.2f", best_us(dst + aheads[a], src, sizes[s]));
        printf("\n");
    }
    return 0;
}
