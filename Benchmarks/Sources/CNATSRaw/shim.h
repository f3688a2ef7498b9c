#ifndef CNATSRAW_SHIM_H
#define CNATSRAW_SHIM_H

// cnats (Debian libnats-dev 3.4.x), called directly by the raw baselines of the benchmarks.
#include <nats/nats.h>

#ifdef __linux__
// malloc_trim, for the memory benchmark's setup.
#include <malloc.h>
#endif

#endif
