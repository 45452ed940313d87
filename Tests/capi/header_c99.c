/* The public header must compile on its own as strict C99:
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -c header_c99.c */
#include "flamingo.h"

/* Use every type once so that a broken declaration cannot hide. */
size_t flamingo_header_c99_probe(void);
size_t flamingo_header_c99_probe(void) {
    flamingo_status s = FLAMINGO_OK;
    flamingo_log_level l = FLAMINGO_LOG_NONE;
    flamingo_log_callback cb = 0;
    flamingo_backend b = FLAMINGO_BACKEND_OPENCL;
    flamingo_device_type t = FLAMINGO_DEVICE_OTHER;
    flamingo_model *m = 0;
    (void)cb; (void)m;
    return sizeof(flamingo_device_info) + sizeof(flamingo_model_params) +
           sizeof(flamingo_model_info) + (size_t)s + (size_t)l + (size_t)b + (size_t)t;
}
