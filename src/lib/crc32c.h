#ifndef TANDEM_LIB_CRC32C_H
#define TANDEM_LIB_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI and ext4.
 * Chainable: crc32c(crc32c(0, a, n), b, m) == crc32c(0, a || b, n + m).
 * crc32c() uses the SSE4.2 instruction when the CPU has it and the table otherwise;
 * both are exported so tests can check them against each other.
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* Only call when crc32c_hw_available() is true. */
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool crc32c_hw_available(void);

#endif
