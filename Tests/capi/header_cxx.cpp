// The public header must compile on its own as C++11 (extern "C" linkage):
//   c++ -std=c++11 -Wall -Wextra -Werror -c header_cxx.cpp
#include "flamingo.h"

namespace {
// Taking the address of every function checks each declaration parses as C++.
struct Table {
    const char *(*version)(void);
    uint32_t (*abi_version)(void);
    const char *(*status_string)(flamingo_status);
    const char *(*last_error)(void);
    void (*log_set)(flamingo_log_callback, void *);
    void (*log_set_level)(flamingo_log_level);
    flamingo_status (*device_count)(size_t *);
    flamingo_status (*device_get_info)(size_t, flamingo_device_info *);
    flamingo_status (*model_default_params)(flamingo_model_params *, size_t);
    flamingo_status (*model_load)(const char *, const flamingo_model_params *, flamingo_model **);
    void (*model_free)(flamingo_model *);
    flamingo_status (*model_get_info)(const flamingo_model *, flamingo_model_info *);
    flamingo_status (*model_encode_images)(const flamingo_model *, const float *, size_t, float *, size_t);
    flamingo_status (*session_default_params)(flamingo_session_params *, size_t);
    flamingo_status (*session_init)(flamingo_model *, const flamingo_session_params *, flamingo_session **);
    void (*session_free)(flamingo_session *);
    flamingo_status (*session_copy)(const flamingo_session *, flamingo_session **);
    flamingo_status (*session_set_media)(flamingo_session *, const float *, size_t);
    flamingo_status (*session_set_images)(flamingo_session *, const float *, size_t);
    flamingo_status (*session_eval)(flamingo_session *, const int32_t *, size_t, uint32_t, float *, size_t);
    flamingo_status (*session_length)(const flamingo_session *, size_t *);
    flamingo_status (*session_truncate)(flamingo_session *, size_t);
    flamingo_status (*generate_default_params)(flamingo_generate_params *, size_t);
    flamingo_status (*session_generate)(flamingo_session *, const flamingo_generate_params *, int32_t *, size_t,
                                        size_t *, flamingo_stop_reason *);
};

extern "C" int32_t probe_token(int32_t token, void *) { return token < 0; }
} // namespace

extern "C" const void *flamingo_header_cxx_probe();
extern "C" const void *flamingo_header_cxx_probe() {
    static const Table t = {
        flamingo_version, flamingo_abi_version, flamingo_status_string, flamingo_last_error,
        flamingo_log_set, flamingo_log_set_level, flamingo_device_count, flamingo_device_get_info,
        flamingo_model_default_params, flamingo_model_load, flamingo_model_free,
        flamingo_model_get_info, flamingo_model_encode_images, flamingo_session_default_params,
        flamingo_session_init, flamingo_session_free, flamingo_session_copy, flamingo_session_set_media,
        flamingo_session_set_images, flamingo_session_eval, flamingo_session_length,
        flamingo_session_truncate, flamingo_generate_default_params, flamingo_session_generate,
    };
    static flamingo_generate_params g;
    g.callback = probe_token;
    g.seed = 1u | (static_cast<uint64_t>(FLAMINGO_EVAL_ALL_LOGITS) << 40);
    (void)g;
    return &t;
}
