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
};
} // namespace

extern "C" const void *flamingo_header_cxx_probe();
extern "C" const void *flamingo_header_cxx_probe() {
    static const Table t = {
        flamingo_version, flamingo_abi_version, flamingo_status_string, flamingo_last_error,
        flamingo_log_set, flamingo_log_set_level, flamingo_device_count, flamingo_device_get_info,
        flamingo_model_default_params, flamingo_model_load, flamingo_model_free,
        flamingo_model_get_info,
    };
    return &t;
}
