/* The Flamingo-paper configuration through the C ABI: an NFNet encoder and a
 * resampler with frame and media-time embeddings (Tests/Fixtures/
 * flamingo_paper_tiny, from timm + open_flamingo), a prompt with two images
 * and one 8-frame video given as FLAMINGO_MEDIA_FRAMES.
 *
 *   test_video LIBRARY MODEL_DIR REFERENCE_DIR
 *
 * REFERENCE_DIR holds the fixture's reference tensors as raw files
 * (Tests/capi/dump_tensors.py). Checks the prompt's logits (max|Δ|/max|ref| ≤
 * 1e-4), the greedy continuation (exact), the visual tokens of
 * flamingo_model_encode_images for the two images, and the frame-count and
 * frame-kind errors; then, when an OpenCL device exists, the same prompt on
 * FLAMINGO_BACKEND_OPENCL (logits within 1e-3 of the reference, identical
 * greedy tokens). Last line "capi: N passed, M failed".
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <dlfcn.h>
#include <stdint.h>


#define FRAMES 10        /* image, image, 8 video frames */
#define VIDEO_FRAMES 8
#define STEPS 8

static char *read_text(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) { perror(p); exit(2); }
    char *buf = xmalloc(4096);
    size_t n = fread(buf, 1, 4095, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Evaluates the prompt on a new session of `model` and generates STEPS
 * greedy tokens: checks them against the reference within `tol`. */
static void check_prompt(flamingo_model *model, const char *prompt, const flamingo_media *media, size_t vocab,
                         const float *want, const int32_t *greedy, double tol, const char *backend) {
    flamingo_session *session = NULL;
    CHECK_STATUS(F.session_init(model, NULL, &session), FLAMINGO_OK, "session_init");
    if (!session) return;
    float *logits = xmalloc(vocab * sizeof(float));
    CHECK_STATUS(F.session_set_prompt(session, prompt, media, 3, logits, vocab), FLAMINGO_OK, "set_prompt");
    double err = rel_err(logits, want, vocab);
    CHECK(err <= tol, "%s: prompt logits: max|d|/max|ref| %.3g", backend, err);
    flamingo_generate_params gp;
    CHECK_STATUS(F.generate_default_params(&gp, sizeof gp), FLAMINGO_OK, "generate_default_params");
    gp.max_new_tokens = STEPS;
    gp.stop_at_endofchunk = 0;
    int32_t out[STEPS];
    size_t n = 0;
    flamingo_stop_reason why;
    CHECK_STATUS(F.session_generate(session, &gp, out, STEPS, &n, &why), FLAMINGO_OK, "generate");
    CHECK(n == STEPS && memcmp(out, greedy, sizeof out) == 0, "%s: greedy continuation differs from the reference", backend);
    F.session_free(session);
    free(logits);
}

static flamingo_media pixels_item(const float *px, size_t count) {
    flamingo_media m;
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    m.kind = FLAMINGO_MEDIA_PIXELS;
    m.data = px;
    m.size = count;
    return m;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s LIBRARY MODEL_DIR REFERENCE_DIR\n", argv[0]);
        return 2;
    }
    void *lib = open_api(argv[1], "capi");
    if (!lib) return 1;
    current_fixture = argv[2];

    flamingo_model *model = NULL;
    CHECK_STATUS(F.model_load(argv[2], NULL, &model), FLAMINGO_OK, "model_load");
    if (!model) return 1;
    flamingo_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_STATUS(F.model_get_info(model, &info), FLAMINGO_OK, "model_get_info");
    const size_t s = info.image_size, frame = 3 * s * s, vocab = info.vocab_size;
    CHECK(s == 64 && info.vision_tokens == 4, "NFNet geometry: image %zu, tokens %u", s, info.vision_tokens);

    const char *ref = argv[3];
    char *prompt = read_text(ref, "prompt.txt");
    float *pixels = read_bin(ref, "input.pixels.f32", FRAMES * frame * sizeof(float));
    int32_t *greedy = read_bin(ref, "greedy.ids.i32", STEPS * sizeof(int32_t));
    /* input_ids length from shapes.txt is not needed: logits.f32 is [L][vocab]; read its last row */
    char p[1024];
    snprintf(p, sizeof p, "%s/logits.f32", ref);
    FILE *lf = fopen(p, "rb");
    if (!lf || fseek(lf, -(long)(vocab * sizeof(float)), SEEK_END) != 0) { perror(p); return 2; }
    float *want = xmalloc(vocab * sizeof(float));
    if (fread(want, sizeof(float), vocab, lf) != vocab) { perror(p); return 2; }
    fclose(lf);

    flamingo_media frames[VIDEO_FRAMES], media[3];
    for (int f = 0; f < VIDEO_FRAMES; f++) frames[f] = pixels_item(pixels + (2 + f) * frame, frame);
    media[0] = pixels_item(pixels, frame);
    media[1] = pixels_item(pixels + frame, frame);
    memset(&media[2], 0, sizeof media[2]);
    media[2].struct_size = sizeof media[2];
    media[2].kind = FLAMINGO_MEDIA_FRAMES;
    media[2].data = frames;
    media[2].size = VIDEO_FRAMES;

    check_prompt(model, prompt, media, vocab, want, greedy, 1e-4, "cpu");
    flamingo_session *session = NULL;
    CHECK_STATUS(F.session_init(model, NULL, &session), FLAMINGO_OK, "session_init");
    CHECK_STATUS(F.session_set_prompt(session, prompt, media, 3, NULL, 0), FLAMINGO_OK, "set_prompt");

    /* Errors leave the session as it was. */
    size_t before = 0, after = 0;
    CHECK_STATUS(F.session_length(session, &before), FLAMINGO_OK, "length");
    flamingo_media nine[VIDEO_FRAMES + 1], too_long = media[2];
    for (int f = 0; f <= VIDEO_FRAMES; f++) nine[f] = frames[f % VIDEO_FRAMES];
    too_long.data = nine;
    too_long.size = VIDEO_FRAMES + 1;
    CHECK_STATUS(F.session_set_prompt(session, "<image>x", &too_long, 1, NULL, 0), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "9 frames > max_num_frames");
    flamingo_media nested = media[2];
    nested.data = &media[2];
    nested.size = 1;
    CHECK_STATUS(F.session_set_prompt(session, "<image>x", &nested, 1, NULL, 0), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "a video as a frame");
    flamingo_media empty = media[2];
    empty.data = NULL;
    empty.size = 0;
    CHECK_STATUS(F.session_set_prompt(session, "<image>x", &empty, 1, NULL, 0), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "a video without frames");
    CHECK_STATUS(F.session_length(session, &after), FLAMINGO_OK, "length");
    CHECK(before == after, "a failed set_prompt changed the session (%zu -> %zu)", before, after);

    F.session_free(session);
    F.model_free(model);

    size_t devices = 0;
    CHECK_STATUS(F.device_count(&devices), FLAMINGO_OK, "device_count");
    if (devices > 1) {
        flamingo_model_params mp;
        CHECK_STATUS(F.model_default_params(&mp, sizeof mp), FLAMINGO_OK, "model_default_params");
        mp.backend = FLAMINGO_BACKEND_OPENCL;
        flamingo_model *dev = NULL;
        CHECK_STATUS(F.model_load(argv[2], &mp, &dev), FLAMINGO_OK, "model_load (OpenCL)");
        if (dev) check_prompt(dev, prompt, media, vocab, want, greedy, 1e-3, "opencl");
        F.model_free(dev);
        mp.device_index = 0; /* the CPU device is not an OpenCL device */
        dev = NULL;
        CHECK_STATUS(F.model_load(argv[2], &mp, &dev), FLAMINGO_ERROR_INVALID_ARGUMENT, "OpenCL on device 0");
        CHECK(dev == NULL, "a failed load set *out_model");
    } else {
        printf("skip: no OpenCL device for the OpenCL half\n");
    }
    free(prompt); free(pixels); free(greedy); free(want);
    printf("capi: %d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
