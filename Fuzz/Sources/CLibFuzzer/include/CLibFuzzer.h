// libFuzzer's entry point for programs that have their own main (compiler-rt,
// FuzzerInterface.h). SwiftPM gives every executable a main of its own, so the fuzz targets call
// this instead of linking libFuzzer's main.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
