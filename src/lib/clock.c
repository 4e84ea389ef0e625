#include "lib/clock.h"

#include <time.h>

uint64_t
tdm_clock_ms(void)
{
    struct timespec ts;
    /* Cannot fail on Linux >= 2.6.39 with a valid pointer. */
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
