/* libflamingo example: prints the library version, the devices and, given a
 * model directory, the model info.
 *
 *   cc example.c $(pkg-config --cflags --libs flamingo) -o example
 *   ./example [MODEL_DIR]
 *
 * The output is byte-for-byte what `python -m flamingo info [MODEL_DIR]` and
 * `cargo run --example info -- [MODEL_DIR]` print (see compare.sh).
 */
#include <flamingo.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int fail(flamingo_status st) {
    fflush(stdout);
    fprintf(stderr, "error: %s: %s\n", flamingo_status_string(st), flamingo_last_error());
    return 1;
}

/* "  key: value", or "  key:" when the value is empty. */
static void str_line(const char *key, const char *value) {
    if (value[0]) printf("  %s: %s\n", key, value);
    else printf("  %s:\n", key);
}
static void i64_line(const char *key, int64_t v) { printf("  %s: %" PRId64 "\n", key, v); }
static void u64_line(const char *key, uint64_t v) { printf("  %s: %" PRIu64 "\n", key, v); }

static void print_float(double x) {
    if (isnan(x)) printf("nan");
    else if (isinf(x)) printf(x > 0 ? "inf" : "-inf");
    else printf("%.8f", x);
}
static void floats_line(const char *key, const float *v, int n) {
    printf("  %s:", key);
    for (int i = 0; i < n; i++) {
        putchar(' ');
        print_float((double)v[i]);
    }
    putchar('\n');
}

static const char *backend_name(int b, char *buf, size_t cap) {
    switch (b) {
    case FLAMINGO_BACKEND_CPU: return "cpu";
    case FLAMINGO_BACKEND_OPENCL: return "opencl";
    default: snprintf(buf, cap, "%d", b); return buf;
    }
}
static const char *type_name(int t, char *buf, size_t cap) {
    switch (t) {
    case FLAMINGO_DEVICE_CPU: return "cpu";
    case FLAMINGO_DEVICE_GPU: return "gpu";
    case FLAMINGO_DEVICE_ACCELERATOR: return "accelerator";
    case FLAMINGO_DEVICE_OTHER: return "other";
    default: snprintf(buf, cap, "%d", t); return buf;
    }
}

int main(int argc, char **argv) {
    if (argc > 2) {
        fprintf(stderr, "usage: %s [MODEL_DIR]\n", argv[0]);
        return 2;
    }
    printf("flamingo %s (abi %u)\n", flamingo_version(), (unsigned)flamingo_abi_version());

    size_t n = 0;
    flamingo_status st = flamingo_device_count(&n);
    if (st != FLAMINGO_OK) return fail(st);
    printf("devices: %zu\n", n);
    for (size_t i = 0; i < n; i++) {
        flamingo_device_info d;
        char buf[32];
        memset(&d, 0, sizeof d);
        d.struct_size = sizeof d;
        st = flamingo_device_get_info(i, &d);
        if (st != FLAMINGO_OK) return fail(st);
        printf("device %zu: %s\n", i, d.name);
        str_line("backend", backend_name((int)d.backend, buf, sizeof buf));
        str_line("type", type_name((int)d.type, buf, sizeof buf));
        i64_line("platform_index", d.platform_index);
        i64_line("device_index", d.device_index);
        u64_line("compute_units", d.compute_units);
        u64_line("memory_bytes", d.memory_bytes);
        str_line("platform_name", d.platform_name);
        str_line("vendor", d.vendor);
        str_line("driver_version", d.driver_version);
    }
    if (argc < 2) return 0;

    flamingo_model *model = NULL;
    st = flamingo_model_load(argv[1], NULL, &model);
    if (st != FLAMINGO_OK) return fail(st);
    flamingo_model_info m;
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    st = flamingo_model_get_info(model, &m);
    if (st != FLAMINGO_OK) {
        flamingo_model_free(model);
        return fail(st);
    }
    printf("model: %s\n", argv[1]);
    str_line("architecture", m.architecture);
    str_line("vision_kind", m.vision_kind);
    str_line("lm_family", m.lm_family);
    u64_line("image_size", m.image_size);
    u64_line("patch_size", m.patch_size);
    u64_line("vision_width", m.vision_width);
    u64_line("vision_layers", m.vision_layers);
    u64_line("vision_heads", m.vision_heads);
    u64_line("vision_tokens", m.vision_tokens);
    u64_line("resampler_depth", m.resampler_depth);
    u64_line("resampler_heads", m.resampler_heads);
    u64_line("resampler_dim_head", m.resampler_dim_head);
    u64_line("num_latents", m.num_latents);
    u64_line("hidden_size", m.hidden_size);
    u64_line("num_layers", m.num_layers);
    u64_line("num_heads", m.num_heads);
    u64_line("intermediate_size", m.intermediate_size);
    u64_line("max_seq_len", m.max_seq_len);
    u64_line("vocab_size", m.vocab_size);
    u64_line("cross_attn_every_n_layers", m.cross_attn_every_n_layers);
    u64_line("num_cross_attn_layers", m.num_cross_attn_layers);
    i64_line("image_token_id", m.image_token_id);
    i64_line("endofchunk_token_id", m.endofchunk_token_id);
    i64_line("pad_token_id", m.pad_token_id);
    i64_line("bos_token_id", m.bos_token_id);
    i64_line("eos_token_id", m.eos_token_id);
    floats_line("image_mean", m.image_mean, 3);
    floats_line("image_std", m.image_std, 3);
    u64_line("num_parameters", m.num_parameters);
    u64_line("weight_bytes", m.weight_bytes);
    u64_line("visual_dim", m.visual_dim);
    flamingo_model_free(model);
    return 0;
}
