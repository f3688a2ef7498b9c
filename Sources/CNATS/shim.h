#ifndef CNATS_SHIM_H
#define CNATS_SHIM_H

// The cnats client (Debian libnats-dev 3.4.x). Only Sources/NATS/Native/ imports this module.
#include <nats/nats.h>
// OpenSSL's libcrypto, which cnats itself links for TLS: Ed25519 signatures for NKey seeds given
// as values (cnats 3.4 signs only with a seed it reads from a file).
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <stdint.h>

// The CPU's time-stamp counter on x86-64 (RDTSC, not serialising), 0 elsewhere. The connection's
// idle rule reads a clock on every publish; see NativeIdleClock.swift for when this counter is used.
static inline uint64_t cnats_shim_cycle_counter(void) {
#if defined(__x86_64__)
    return __builtin_ia32_rdtsc();
#else
    return 0;
#endif
}

#endif
