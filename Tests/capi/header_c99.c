/* The public header must compile on its own as strict C99:
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -c header_c99.c */
#include "flamingo.h"

/* Use every type once so that a broken declaration cannot hide. */
static int32_t probe_token_cb(int32_t token, void *user_data) {
    (void)user_data;
    return token < 0;
}

size_t flamingo_header_c99_probe(void);
size_t flamingo_header_c99_probe(void) {
    flamingo_status s = FLAMINGO_OK;
    flamingo_log_level l = FLAMINGO_LOG_NONE;
    flamingo_log_callback cb = 0;
    flamingo_backend b = FLAMINGO_BACKEND_OPENCL;
    flamingo_device_type t = FLAMINGO_DEVICE_OTHER;
    flamingo_model *m = 0;
    flamingo_session *session = 0;
    flamingo_token_callback tcb = probe_token_cb;
    flamingo_stop_reason r = FLAMINGO_STOP_CANCELLED;
    flamingo_generate_params g;
    uint32_t flags = FLAMINGO_EVAL_ALL_LOGITS;
    g.callback = tcb;
    g.callback_user_data = 0;
    g.seed = UINT64_MAX;
    (void)cb; (void)m; (void)session;
    return sizeof(flamingo_device_info) + sizeof(flamingo_model_params) +
           sizeof(flamingo_model_info) + sizeof(flamingo_session_params) + sizeof g +
           (size_t)s + (size_t)l + (size_t)b + (size_t)t + (size_t)r + (size_t)flags +
           (size_t)(FLAMINGO_STOP_MAX_TOKENS + FLAMINGO_STOP_TOKEN) + (size_t)(g.seed & 1u);
}
