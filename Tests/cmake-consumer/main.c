#include <flamingo.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    if (flamingo_abi_version() != FLAMINGO_ABI_VERSION || strcmp(flamingo_version(), FLAMINGO_VERSION_STRING) != 0) {
        fprintf(stderr, "version mismatch: %s / %u\n", flamingo_version(), flamingo_abi_version());
        return 1;
    }
    printf("find_package(flamingo) consumer: libflamingo %s, ABI %u\n", flamingo_version(), flamingo_abi_version());
    return 0;
}
