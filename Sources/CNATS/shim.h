#ifndef CNATS_SHIM_H
#define CNATS_SHIM_H

// The cnats client (Debian libnats-dev 3.4.x). Only Sources/NATS/Native/ imports this module.
#include <nats/nats.h>

#endif
