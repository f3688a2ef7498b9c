#ifndef CNATS_SHIM_H
#define CNATS_SHIM_H

// The cnats client (Debian libnats-dev 3.4.x). Only Sources/NATS/Native/ imports this module.
#include <nats/nats.h>
// OpenSSL's libcrypto, which cnats itself links for TLS: Ed25519 signatures for NKey seeds given
// as values (cnats 3.4 signs only with a seed it reads from a file).
#include <openssl/evp.h>
#include <openssl/crypto.h>

#endif
