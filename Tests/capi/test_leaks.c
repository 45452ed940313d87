/* Nothing accumulates: repeated loads and frees, sessions, generation, detokenizers, failed
 * loads and failed calls leave the process's heap where it was. LeakSanitizer (tools/
 * sanitize.sh) finds memory nobody points to; this finds memory still pointed to but never
 * given back (a cache or registry that grows with every handle), by comparing glibc's count
 * of bytes in use after a warm-up and after many more rounds.
 *
 *   test_leaks LIBRARY IMAGE MODEL_DIR [MODEL_DIR ...]
 */
#define _GNU_SOURCE
#include "common.h"

#include <malloc.h>

enum { WARMUP = 3, ROUNDS = 30 }; /* FLAMINGO_LEAK_ROUNDS overrides ROUNDS */
/* Bytes the heap may grow by per ROUNDS rounds (measured: +0.6 to +12 KB after 30 rounds and
 * +16 KB after 120, one-time caches rather than growth): well below one leaked tensor, session or
 * model (each is kilobytes or more), above glibc's own bookkeeping noise. */
#define SLACK (64 * 1024)

static const char *image_path;

static size_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void one_round(const char *dir, int *errors) {
    flamingo_model *m = NULL;
    if (F.model_load(dir, NULL, &m) != FLAMINGO_OK) { (*errors)++; return; }
    flamingo_session *s = NULL, *copy = NULL;
    flamingo_media media;
    memset(&media, 0, sizeof media);
    media.struct_size = sizeof media;
    media.kind = FLAMINGO_MEDIA_FILE;
    media.path = image_path;
    int32_t out[8];
    size_t n = 0;
    if (F.session_init(m, NULL, &s) != FLAMINGO_OK) (*errors)++;
    if (F.session_set_prompt(s, "<image>A photo of", &media, 1, NULL, 0) != FLAMINGO_OK) (*errors)++;
    if (F.session_copy(s, &copy) != FLAMINGO_OK) (*errors)++;
    flamingo_generate_params p;
    F.generate_default_params(&p, sizeof p);
    p.max_new_tokens = 4;
    if (F.session_generate(s, &p, out, 8, &n, NULL) != FLAMINGO_OK) (*errors)++;
    p.num_beams = 2;
    if (F.session_generate(copy, &p, out, 8, &n, NULL) != FLAMINGO_OK) (*errors)++;
    /* Failing calls on live handles. */
    if (F.session_set_prompt(s, "<image><image>", &media, 1, NULL, 0) == FLAMINGO_OK) (*errors)++;
    media.path = "/nonexistent.jpg";
    if (F.session_set_prompt(s, "<image>x", &media, 1, NULL, 0) == FLAMINGO_OK) (*errors)++;
    F.session_free(copy);
    F.session_free(s);
    flamingo_detokenizer *d = NULL;
    char text[64];
    size_t len = 0;
    if (F.detokenizer_init(m, 0, &d) != FLAMINGO_OK) (*errors)++;
    for (int k = 0; k < 20; k++) F.detokenizer_push(d, k * 17 % 400, text, sizeof text, &len);
    F.detokenizer_free(d);
    int32_t ids[32];
    F.tokenize(m, "A photo of a cat.", 17, 0, ids, 32, &n);
    F.model_free(m);
    /* Failed loads. */
    flamingo_model *bad = NULL;
    if (F.model_load("/nonexistent/flamingo-model", NULL, &bad) == FLAMINGO_OK) (*errors)++;
    if (F.model_load(image_path, NULL, &bad) == FLAMINGO_OK) (*errors)++; /* a file, not a directory */
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s LIBRARY IMAGE MODEL_DIR [MODEL_DIR ...]\n", argv[0]);
        return 2;
    }
    mallopt(M_ARENA_MAX, 1); /* every thread's allocations in the arena mallinfo2 counts */
    void *lib = open_api(argv[1], "leaks");
    if (!lib) return 1;
    image_path = argv[2];
    F.log_set_level(FLAMINGO_LOG_NONE); /* the failing calls are expected */
    int rounds = getenv("FLAMINGO_LEAK_ROUNDS") ? atoi(getenv("FLAMINGO_LEAK_ROUNDS")) : ROUNDS;
    for (int a = 3; a < argc; a++) {
        int errors = 0;
        for (int r = 0; r < WARMUP; r++) one_round(argv[a], &errors);
        size_t before = heap_in_use();
        for (int r = 0; r < rounds; r++) one_round(argv[a], &errors);
        size_t after = heap_in_use();
        CHECK(errors == 0, "%s: %d calls did not return what they should", argv[a], errors);
        if (before == 0 && after == 0) { /* a sanitizer's allocator: LeakSanitizer checks instead */
            printf("leaks: %s: heap statistics unavailable (sanitizer allocator)\n", argv[a]);
            continue;
        }
        long grew = (long)after - (long)before;
        CHECK(grew <= SLACK * ((rounds + ROUNDS - 1) / ROUNDS),
              "%s: the heap grew by %ld bytes over %d rounds of load/session/generate/free", argv[a], grew, rounds);
        printf("leaks: %s: heap %+ld bytes over %d rounds\n", argv[a], grew, rounds);
    }
    F.log_set_level(FLAMINGO_LOG_WARN);
    if (dlclose(lib) != 0) fprintf(stderr, "note: dlclose: %s\n", dlerror());
    printf("leaks: %d passed, %d failed\n", n_passed, n_failed);
    return n_failed == 0 ? 0 : 1;
}
