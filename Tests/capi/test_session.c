/* C-ABI tests for images, sessions and generation in libflamingo.
 *
 *   test_session LIBRARY [MODEL_DIR REFERENCE_DIR]
 *
 * dlopen()s LIBRARY (RTLD_NOW | RTLD_LOCAL) and resolves every function of
 * include/flamingo.h. Without a model it checks the parameter structs and the
 * NULL-handle error paths. With MODEL_DIR (a fixture model directory) and
 * REFERENCE_DIR (its reference tensors as raw little-endian files, written by
 * Tests/capi/extract_reference.py) it checks, against the PyTorch reference:
 * flamingo_model_encode_images, flamingo_session_eval (all and last logits,
 * set_images and set_media), greedy and beam-search generation, the token
 * callback and cancellation, copy, truncate, sessions outliving their model,
 * concurrent sessions, and every documented error path (status, message,
 * untouched out parameters, unchanged session).
 *
 * Numbers are compared as max|got - ref| / max|ref| <= 1e-4; token ids must
 * match exactly. The last line is "capi: N passed, M failed"; the exit status
 * is 0 only when M is 0.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the library, resolved at run time ---------------------------------- */


static flamingo_session *const SESSION_SENTINEL = (flamingo_session *)(uintptr_t)0xA5A5A5A5u;

#define TOL 1e-4

static int same_ids(const int32_t *a, const int32_t *b, size_t n) {
    return n == 0 || memcmp(a, b, n * sizeof *a) == 0;
}

static void ids_str(char *buf, size_t cap, const int32_t *ids, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used + 16 < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%d", i ? " " : "", ids[i]);
}

/* ---- reference data ----------------------------------------------------- */

/* Token-id tensors that only newer fixtures have (NULL when absent). */
enum { BEAM0, BEAM1, NR2, RP15, STOP_PROMPT, STOP_GREEDY, STOP_BEAM0, STOP_BEAM1, N_OPT };
static const char *const opt_names[N_OPT] = {"beam3_lp0", "beam3_lp1", "greedy_nr2", "greedy_rp15",
                                             "stop_input_ids", "stop_greedy", "stop_beam3_lp0", "stop_beam3_lp1"};

typedef struct {
    size_t n_images, image_size, n_tokens, vocab, latents, dim;
    size_t n_greedy;
    float *pixels, *logits, *resampler;
    int32_t *ids, *greedy;
    size_t n_opt[N_OPT];
    int32_t *opt[N_OPT];
} refdata;

static void load_ref(const char *dir, refdata *r) {
    memset(r, 0, sizeof *r);
    char p[1024], key[64];
    size_t v;
    snprintf(p, sizeof p, "%s/meta.txt", dir);
    FILE *f = fopen(p, "r");
    if (!f) { perror(p); exit(2); }
    while (fscanf(f, "%63s %zu", key, &v) == 2) {
        if (!strcmp(key, "n_images")) r->n_images = v;
        else if (!strcmp(key, "image_size")) r->image_size = v;
        else if (!strcmp(key, "n_tokens")) r->n_tokens = v;
        else if (!strcmp(key, "vocab")) r->vocab = v;
        else if (!strcmp(key, "latents")) r->latents = v;
        else if (!strcmp(key, "dim")) r->dim = v;
        else if (!strcmp(key, "greedy")) r->n_greedy = v;
        else
            for (int k = 0; k < N_OPT; k++)
                if (!strcmp(key, opt_names[k])) r->n_opt[k] = v;
    }
    fclose(f);
    if (!r->n_images || !r->image_size || !r->n_tokens || !r->vocab || !r->latents || !r->dim || !r->n_greedy) {
        fprintf(stderr, "%s: incomplete meta.txt\n", dir);
        exit(2);
    }
    r->pixels = read_bin(dir, "pixels.f32", r->n_images * 3 * r->image_size * r->image_size * sizeof(float));
    r->ids = read_bin(dir, "input_ids.i32", r->n_tokens * sizeof(int32_t));
    r->logits = read_bin(dir, "logits.f32", r->n_tokens * r->vocab * sizeof(float));
    r->resampler = read_bin(dir, "resampler.f32", r->n_images * r->latents * r->dim * sizeof(float));
    r->greedy = read_bin(dir, "greedy.i32", r->n_greedy * sizeof(int32_t));
    for (int k = 0; k < N_OPT; k++) {
        if (!r->n_opt[k]) continue;
        snprintf(p, sizeof p, "%s.i32", opt_names[k]);
        r->opt[k] = read_bin(dir, p, r->n_opt[k] * sizeof(int32_t));
    }
}

static void free_ref(refdata *r) {
    free(r->pixels); free(r->ids); free(r->logits); free(r->resampler); free(r->greedy);
    for (int k = 0; k < N_OPT; k++) free(r->opt[k]);
}

/* ---- token callback ----------------------------------------------------- */

#define MAX_RECORDED 256
typedef struct {
    int32_t tokens[MAX_RECORDED];
    size_t n;
    size_t stop_after; /* return non-zero once this many tokens were seen; 0 = never */
} recorder;

static int32_t record_cb(int32_t token, void *user_data) {
    recorder *r = user_data;
    if (r->n < MAX_RECORDED) r->tokens[r->n] = token;
    r->n++;
    return (r->stop_after && r->n >= r->stop_after) ? 1 : 0;
}

static flamingo_generate_params gparams(uint32_t max_new_tokens, recorder *rec) {
    flamingo_generate_params p;
    fill(&p, sizeof p);
    if (F.generate_default_params(&p, sizeof p) != FLAMINGO_OK) {
        fprintf(stderr, "generate_default_params failed: %s\n", F.last_error());
        exit(2);
    }
    p.max_new_tokens = max_new_tokens;
    p.stop_at_endofchunk = 1;
    if (rec) {
        memset(rec, 0, sizeof *rec);
        p.callback = record_cb;
        p.callback_user_data = rec;
    }
    return p;
}

static size_t session_len(const flamingo_session *s) {
    size_t n = (size_t)-1;
    flamingo_status st = F.session_length(s, &n);
    CHECK(st == FLAMINGO_OK, "session_length: %s: %s", sname(st), F.last_error());
    return n;
}

/* ---- tests without a model ---------------------------------------------- */

static void test_session_default_params(void) {
    flamingo_session_params p;
    CHECK_STATUS(F.session_default_params(NULL, sizeof p), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "session_default_params(NULL)");
    const size_t small[] = {0, 4, sizeof p - 1};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        char what[64];
        snprintf(what, sizeof what, "session_default_params(size=%zu)", small[i]);
        fill(&p, sizeof p);
        CHECK_STATUS(F.session_default_params(&p, small[i]), FLAMINGO_ERROR_INVALID_ARGUMENT, what);
        CHECK(untouched(&p, sizeof p), "%s: params modified on error", what);
    }
#if SIZE_MAX > 0xFFFFFFFFu
    fill(&p, sizeof p);
    CHECK_STATUS(F.session_default_params(&p, (size_t)UINT32_MAX + 1), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "session_default_params(size=2^32)");
    CHECK(untouched(&p, sizeof p), "session_default_params(size=2^32): params modified on error");
#endif
    fill(&p, sizeof p);
    CHECK_STATUS(F.session_default_params(&p, sizeof p), FLAMINGO_OK, "session_default_params");
    CHECK(p.struct_size == sizeof p, "session params: struct_size %u", p.struct_size);
    CHECK(p.n_ctx == 0, "session params: default n_ctx %u, want 0", p.n_ctx);

    /* A newer caller's larger struct: known fields written, the tail alone. */
    struct {
        flamingo_session_params p;
        unsigned char tail[32];
    } big;
    fill(&big, sizeof big);
    CHECK_STATUS(F.session_default_params(&big.p, sizeof big), FLAMINGO_OK, "session_default_params(larger)");
    CHECK(big.p.struct_size == sizeof big && big.p.n_ctx == 0, "session_default_params(larger): struct_size %u n_ctx %u",
          big.p.struct_size, big.p.n_ctx);
    CHECK(untouched(big.tail, sizeof big.tail), "session_default_params wrote past sizeof(flamingo_session_params)");
}

static void test_generate_default_params(void) {
    flamingo_generate_params p;
    CHECK_STATUS(F.generate_default_params(NULL, sizeof p), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "generate_default_params(NULL)");
    const size_t small[] = {0, 4, offsetof(flamingo_generate_params, seed), sizeof p - 1};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        char what[64];
        snprintf(what, sizeof what, "generate_default_params(size=%zu)", small[i]);
        fill(&p, sizeof p);
        CHECK_STATUS(F.generate_default_params(&p, small[i]), FLAMINGO_ERROR_INVALID_ARGUMENT, what);
        CHECK(untouched(&p, sizeof p), "%s: params modified on error", what);
    }
    fill(&p, sizeof p);
    CHECK_STATUS(F.generate_default_params(&p, sizeof p), FLAMINGO_OK, "generate_default_params");
    CHECK(p.struct_size == sizeof p, "generate params: struct_size %u", p.struct_size);
    CHECK(p.max_new_tokens == 20, "default max_new_tokens %u", p.max_new_tokens);
    CHECK(p.min_new_tokens == 0, "default min_new_tokens %u", p.min_new_tokens);
    CHECK(p.do_sample == 0, "default do_sample %u", p.do_sample);
    CHECK(p.temperature == 1.0f, "default temperature %g", (double)p.temperature);
    CHECK(p.top_k == 0, "default top_k %u", p.top_k);
    CHECK(p.top_p == 1.0f, "default top_p %g", (double)p.top_p);
    CHECK(p.num_beams == 1, "default num_beams %u", p.num_beams);
    CHECK(p.length_penalty == 1.0f, "default length_penalty %g", (double)p.length_penalty);
    CHECK(p.early_stopping == 0, "default early_stopping %u", p.early_stopping);
    CHECK(p.no_repeat_ngram_size == 0, "default no_repeat_ngram_size %u", p.no_repeat_ngram_size);
    CHECK(p.repetition_penalty == 1.0f, "default repetition_penalty %g", (double)p.repetition_penalty);
    CHECK(p.stop_at_endofchunk == 1, "default stop_at_endofchunk %u", p.stop_at_endofchunk);
    CHECK(p.stop_at_eos == 1, "default stop_at_eos %u", p.stop_at_eos);
    CHECK(p.seed == 0, "default seed %llu", (unsigned long long)p.seed);
    CHECK(p.callback == NULL && p.callback_user_data == NULL, "default callback / user_data not NULL");

    struct {
        flamingo_generate_params p;
        unsigned char tail[48];
    } big;
    fill(&big, sizeof big);
    CHECK_STATUS(F.generate_default_params(&big.p, sizeof big), FLAMINGO_OK, "generate_default_params(larger)");
    CHECK(big.p.struct_size == sizeof big && big.p.max_new_tokens == 20 && big.p.callback == NULL,
          "generate_default_params(larger): struct_size %u max_new_tokens %u", big.p.struct_size,
          big.p.max_new_tokens);
    CHECK(untouched(big.tail, sizeof big.tail), "generate_default_params wrote past sizeof(flamingo_generate_params)");
}

static void test_null_handles(void) {
    flamingo_session *out = SESSION_SENTINEL;
    float buf[8];
    int32_t tok[4] = {0, 0, 0, 0};
    size_t n;

    CHECK_STATUS(F.session_init(NULL, NULL, &out), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_init(model=NULL)");
    CHECK(out == SESSION_SENTINEL, "session_init(model=NULL): out_session modified");
    CHECK_STATUS(F.session_copy(NULL, &out), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_copy(NULL)");
    CHECK(out == SESSION_SENTINEL, "session_copy(NULL): out_copy modified");
    F.session_free(NULL);
    CHECK(1, "session_free(NULL)");

    fill(buf, sizeof buf);
    CHECK_STATUS(F.model_encode_images(NULL, buf, 1, buf, 8), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_encode_images(model=NULL)");
    CHECK(untouched(buf, sizeof buf), "model_encode_images(model=NULL): out modified");
    CHECK_STATUS(F.session_set_media(NULL, buf, 0), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_set_media(NULL)");
    CHECK_STATUS(F.session_set_images(NULL, buf, 1), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_set_images(NULL)");
    CHECK_STATUS(F.session_eval(NULL, tok, 1, 0, buf, 8), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_eval(NULL)");
    CHECK(untouched(buf, sizeof buf), "session_eval(NULL): logits modified");
    fill(&n, sizeof n);
    CHECK_STATUS(F.session_length(NULL, &n), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_length(NULL)");
    CHECK(untouched(&n, sizeof n), "session_length(NULL): out_length modified");
    CHECK_STATUS(F.session_truncate(NULL, 0), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_truncate(NULL)");

    int32_t toks[4];
    size_t count;
    flamingo_stop_reason reason;
    fill(toks, sizeof toks);
    fill(&count, sizeof count);
    fill(&reason, sizeof reason);
    CHECK_STATUS(F.session_generate(NULL, NULL, toks, 4, &count, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "session_generate(NULL)");
    CHECK(untouched(toks, sizeof toks) && untouched(&count, sizeof count) && untouched(&reason, sizeof reason),
          "session_generate(NULL): out parameters modified");
}

/* ---- tests with a fixture model ----------------------------------------- */

typedef struct {
    flamingo_model *model;
    flamingo_model_info info;
    refdata ref;
    size_t image_floats; /* floats per image */
    size_t media_floats; /* floats per media (visual tokens of one image) */
    float *all_logits;   /* this library's logits of the whole prompt (set_images) */
} ctx;

static flamingo_session *new_session(ctx *c, uint32_t n_ctx) {
    flamingo_session_params p;
    F.session_default_params(&p, sizeof p);
    p.n_ctx = n_ctx;
    flamingo_session *s = NULL;
    flamingo_status st = F.session_init(c->model, &p, &s);
    CHECK(st == FLAMINGO_OK && s != NULL, "session_init(n_ctx=%u): %s: %s", n_ctx, sname(st), F.last_error());
    return st == FLAMINGO_OK ? s : NULL;
}

/* A session holding the reference prompt (images set, prompt evaluated). */
static flamingo_session *prompt_session(ctx *c, uint32_t n_ctx) {
    flamingo_session *s = new_session(c, n_ctx);
    if (!s) return NULL;
    CHECK_STATUS(F.session_set_images(s, c->ref.pixels, c->ref.n_images), FLAMINGO_OK, "session_set_images");
    CHECK_STATUS(F.session_eval(s, c->ref.ids, c->ref.n_tokens, 0, NULL, 0), FLAMINGO_OK,
                 "session_eval(prompt, logits=NULL)");
    return s;
}

/* Generates with `p` and checks the tokens against `want`. */
static void expect_generation(flamingo_session *s, const flamingo_generate_params *p, const int32_t *want,
                              size_t n_want, flamingo_stop_reason want_reason, const char *what) {
    int32_t out[MAX_RECORDED + 8];
    size_t count = (size_t)-1;
    flamingo_stop_reason reason = -1;
    fill(out, sizeof out);
    flamingo_status st = F.session_generate(s, p, out, MAX_RECORDED, &count, &reason);
    CHECK_STATUS(st, FLAMINGO_OK, what);
    if (st != FLAMINGO_OK) return;
    char got_s[512], want_s[512];
    ids_str(got_s, sizeof got_s, out, count <= MAX_RECORDED ? count : 0);
    ids_str(want_s, sizeof want_s, want, n_want);
    CHECK(count == n_want && same_ids(out, want, n_want), "%s: tokens [%s], want [%s]", what, got_s, want_s);
    CHECK(reason == want_reason, "%s: stop reason %d, want %d", what, (int)reason, (int)want_reason);
    if (count <= MAX_RECORDED)
        CHECK(untouched(out + count, (MAX_RECORDED + 8 - count) * sizeof *out),
              "%s: out_tokens written past out_count", what);
    if (p && p->callback == record_cb) {
        const recorder *r = p->callback_user_data;
        CHECK(r->n == count && same_ids(r->tokens, out, count < MAX_RECORDED ? count : MAX_RECORDED),
              "%s: the callback saw %zu tokens, different from the %zu returned", what, r->n, count);
    }
}

static void test_info(ctx *c) {
    const flamingo_model_info *i = &c->info;
    const refdata *r = &c->ref;
    CHECK(i->visual_dim > 0, "info: visual_dim is 0");
    CHECK(i->visual_dim == r->dim, "info: visual_dim %u, reference resampler.out has width %zu", i->visual_dim,
          r->dim);
    CHECK(i->num_latents == r->latents, "info: num_latents %u, reference has %zu", i->num_latents, r->latents);
    CHECK(i->vocab_size == r->vocab, "info: vocab_size %u, reference logits have %zu", i->vocab_size, r->vocab);
    CHECK(i->image_size == r->image_size, "info: image_size %u, reference pixels are %zu", i->image_size,
          r->image_size);

    /* A caller built against the header before visual_dim existed passes the
     * old, smaller struct_size: it must keep working (header: structs only
     * grow at the end) and the library must not write visual_dim. */
    flamingo_model_info old;
    fill(&old, sizeof old);
    old.struct_size = (uint32_t)offsetof(flamingo_model_info, visual_dim);
    flamingo_status st = F.model_get_info(c->model, &old);
    CHECK_STATUS(st, FLAMINGO_OK, "model_get_info(struct_size=offsetof(visual_dim), the previous header's size)");
    if (st == FLAMINGO_OK) {
        CHECK(old.vocab_size == i->vocab_size && old.weight_bytes == i->weight_bytes,
              "model_get_info(old struct_size): fields differ");
        CHECK(untouched((char *)&old + offsetof(flamingo_model_info, visual_dim),
                        sizeof old - offsetof(flamingo_model_info, visual_dim)),
              "model_get_info(old struct_size) wrote visual_dim past the caller's struct_size");
    }
}

static void test_encode_images(ctx *c) {
    const refdata *r = &c->ref;
    size_t n = r->n_images * c->media_floats;
    float *out = xmalloc((n + 16) * sizeof(float));

    fill(out, (n + 16) * sizeof(float));
    flamingo_status st = F.model_encode_images(c->model, r->pixels, r->n_images, out, n + 16);
    CHECK_STATUS(st, FLAMINGO_OK, "model_encode_images");
    if (st == FLAMINGO_OK) {
        double e = rel_err(out, r->resampler, n);
        CHECK(e <= TOL, "model_encode_images: max|d|/max|ref| = %.3g vs resampler.out", e);
        CHECK(untouched(out + n, 16 * sizeof(float)), "model_encode_images wrote past n_images visual tokens");
    }
    /* One image at a time gives the same tokens. */
    for (size_t k = 0; k < r->n_images; k++) {
        fill(out, c->media_floats * sizeof(float));
        st = F.model_encode_images(c->model, r->pixels + k * c->image_floats, 1, out, c->media_floats);
        CHECK_STATUS(st, FLAMINGO_OK, "model_encode_images(one image)");
        if (st == FLAMINGO_OK) {
            double e = rel_err(out, r->resampler + k * c->media_floats, c->media_floats);
            CHECK(e <= TOL, "model_encode_images(image %zu alone): max|d|/max|ref| = %.3g", k, e);
        }
    }

    /* Errors leave `out` untouched. */
    struct {
        const float *pixels;
        size_t n_images;
        int null_out;
        size_t count;
        flamingo_status want;
        const char *what;
    } bad[] = {
        {NULL, r->n_images, 0, n, FLAMINGO_ERROR_INVALID_ARGUMENT, "model_encode_images(pixels=NULL)"},
        {r->pixels, 0, 0, n, FLAMINGO_ERROR_INVALID_ARGUMENT, "model_encode_images(n_images=0)"},
        {r->pixels, r->n_images, 1, n, FLAMINGO_ERROR_INVALID_ARGUMENT, "model_encode_images(out=NULL)"},
        {r->pixels, r->n_images, 0, n - 1, FLAMINGO_ERROR_BUFFER_TOO_SMALL, "model_encode_images(out_count-1)"},
        {r->pixels, r->n_images, 0, 0, FLAMINGO_ERROR_BUFFER_TOO_SMALL, "model_encode_images(out_count=0)"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        fill(out, (n + 16) * sizeof(float));
        CHECK_STATUS(F.model_encode_images(c->model, bad[k].pixels, bad[k].n_images, bad[k].null_out ? NULL : out,
                                           bad[k].count),
                     bad[k].want, bad[k].what);
        CHECK(untouched(out, (n + 16) * sizeof(float)), "%s: out modified on error", bad[k].what);
    }
    float *px = xmalloc(r->n_images * c->image_floats * sizeof(float));
    const float specials[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        memcpy(px, r->pixels, r->n_images * c->image_floats * sizeof(float));
        px[(r->n_images * c->image_floats) - 1 - (size_t)k * 7] = specials[k];
        fill(out, (n + 16) * sizeof(float));
        CHECK_STATUS(F.model_encode_images(c->model, px, r->n_images, out, n),
                     FLAMINGO_ERROR_INVALID_ARGUMENT, "model_encode_images(non-finite pixel)");
        CHECK(untouched(out, (n + 16) * sizeof(float)), "model_encode_images(non-finite pixel): out modified");
    }
    free(px);
    free(out);
}

static void test_session_init(ctx *c) {
    flamingo_session *s = SESSION_SENTINEL;
    flamingo_session_params p;

    CHECK_STATUS(F.session_init(c->model, NULL, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "session_init(out_session=NULL)");
    const uint32_t small[] = {0, 4, (uint32_t)sizeof p - 1};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        char what[64];
        snprintf(what, sizeof what, "session_init(params.struct_size=%u)", small[i]);
        F.session_default_params(&p, sizeof p);
        p.struct_size = small[i];
        s = SESSION_SENTINEL;
        CHECK_STATUS(F.session_init(c->model, &p, &s), FLAMINGO_ERROR_INVALID_ARGUMENT, what);
        CHECK(s == SESSION_SENTINEL, "%s: out_session modified on error", what);
    }
    F.session_default_params(&p, sizeof p);
    p.n_ctx = c->info.max_seq_len + 1;
    s = SESSION_SENTINEL;
    CHECK_STATUS(F.session_init(c->model, &p, &s), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_init(n_ctx=max+1)");
    CHECK(s == SESSION_SENTINEL, "session_init(n_ctx=max+1): out_session modified on error");

    /* params NULL, n_ctx = max_seq_len, and a larger (newer) struct all work. */
    s = NULL;
    CHECK_STATUS(F.session_init(c->model, NULL, &s), FLAMINGO_OK, "session_init(params=NULL)");
    CHECK(s != NULL && s != SESSION_SENTINEL, "session_init(params=NULL): no session");
    if (s) CHECK(session_len(s) == 0, "a new session is not empty");
    F.session_free(s);
    F.session_default_params(&p, sizeof p);
    p.n_ctx = c->info.max_seq_len;
    s = NULL;
    CHECK_STATUS(F.session_init(c->model, &p, &s), FLAMINGO_OK, "session_init(n_ctx=max_seq_len)");
    F.session_free(s);
    struct {
        flamingo_session_params p;
        unsigned char tail[16];
    } big;
    fill(&big, sizeof big);
    F.session_default_params(&big.p, sizeof big);
    big.p.n_ctx = 16;
    s = NULL;
    CHECK_STATUS(F.session_init(c->model, &big.p, &s), FLAMINGO_OK, "session_init(larger params struct)");
    F.session_free(s);
}

static void test_eval_reference(ctx *c) {
    const refdata *r = &c->ref;
    size_t L = r->n_tokens, V = r->vocab;

    /* All logits, media from pixels. */
    flamingo_session *s = new_session(c, 0);
    if (!s) return;
    CHECK_STATUS(F.session_set_images(s, r->pixels, r->n_images), FLAMINGO_OK, "session_set_images");
    float *buf = xmalloc((L * V + 16) * sizeof(float));
    fill(buf, (L * V + 16) * sizeof(float));
    flamingo_status st = F.session_eval(s, r->ids, L, FLAMINGO_EVAL_ALL_LOGITS, buf, L * V + 16);
    CHECK_STATUS(st, FLAMINGO_OK, "session_eval(ALL_LOGITS)");
    if (st == FLAMINGO_OK) {
        double e = rel_err(buf, r->logits, L * V);
        CHECK(e <= TOL, "session_eval(ALL_LOGITS): max|d|/max|ref| = %.3g vs logits", e);
        CHECK(untouched(buf + L * V, 16 * sizeof(float)), "session_eval(ALL_LOGITS) wrote past n_tokens*vocab");
        memcpy(c->all_logits, buf, L * V * sizeof(float));
    }
    CHECK(session_len(s) == L, "length after eval: %zu, want %zu", session_len(s), L);
    F.session_free(s);

    /* Last logits only. */
    s = new_session(c, 0);
    if (!s) { free(buf); return; }
    F.session_set_images(s, r->pixels, r->n_images);
    fill(buf, (V + 16) * sizeof(float));
    st = F.session_eval(s, r->ids, L, 0, buf, V + 16);
    CHECK_STATUS(st, FLAMINGO_OK, "session_eval(last logits)");
    if (st == FLAMINGO_OK) {
        double e = rel_err(buf, r->logits + (L - 1) * V, V);
        CHECK(e <= TOL, "session_eval(last logits): max|d|/max|ref| = %.3g vs logits[-1]", e);
        CHECK(untouched(buf + V, 16 * sizeof(float)), "session_eval(last logits) wrote past vocab_size");
    }
    F.session_free(s);

    /* Media from visual tokens (encode_images + set_media) = set_images. */
    size_t nm = r->n_images * c->media_floats;
    float *visual = xmalloc(nm * sizeof(float));
    st = F.model_encode_images(c->model, r->pixels, r->n_images, visual, nm);
    CHECK_STATUS(st, FLAMINGO_OK, "model_encode_images");
    s = new_session(c, 0);
    if (s && st == FLAMINGO_OK) {
        CHECK_STATUS(F.session_set_media(s, visual, r->n_images), FLAMINGO_OK, "session_set_media");
        /* set_media copies: scribbling over our buffer must not matter. */
        for (size_t k = 0; k < nm; k++) visual[k] = 1e6f;
        st = F.session_eval(s, r->ids, L, FLAMINGO_EVAL_ALL_LOGITS, buf, L * V);
        CHECK_STATUS(st, FLAMINGO_OK, "session_eval after set_media");
        if (st == FLAMINGO_OK) {
            double e = rel_err(buf, c->all_logits, L * V);
            CHECK(e <= 1e-6, "set_media vs set_images: logits differ, max|d|/max|ref| = %.3g", e);
            e = rel_err(buf, r->logits, L * V);
            CHECK(e <= TOL, "set_media: max|d|/max|ref| = %.3g vs logits", e);
        }
    }
    F.session_free(s);

    /* The prompt in two pieces = in one. */
    s = new_session(c, 0);
    if (s) {
        F.session_set_images(s, r->pixels, r->n_images);
        size_t k = L / 2;
        CHECK_STATUS(F.session_eval(s, r->ids, k, FLAMINGO_EVAL_ALL_LOGITS, buf, k * V), FLAMINGO_OK,
                     "session_eval(first half)");
        CHECK_STATUS(F.session_eval(s, r->ids + k, L - k, FLAMINGO_EVAL_ALL_LOGITS, buf + k * V, (L - k) * V),
                     FLAMINGO_OK, "session_eval(second half)");
        double e = rel_err(buf, r->logits, L * V);
        CHECK(e <= TOL, "prompt evaluated in two pieces: max|d|/max|ref| = %.3g vs logits", e);
        CHECK(session_len(s) == L, "length after two evals %zu, want %zu", session_len(s), L);
    }
    F.session_free(s);

    /* Without media, cross-attention contributes nothing: the logits must
     * still be finite and the call must succeed; n_media 0 removes media. */
    s = new_session(c, 0);
    if (s) {
        CHECK_STATUS(F.session_set_images(s, r->pixels, r->n_images), FLAMINGO_OK, "session_set_images");
        CHECK_STATUS(F.session_set_media(s, NULL, 0), FLAMINGO_OK, "session_set_media(NULL, 0)");
        st = F.session_eval(s, r->ids, L, FLAMINGO_EVAL_ALL_LOGITS, buf, L * V);
        CHECK_STATUS(st, FLAMINGO_OK, "session_eval without media");
        if (st == FLAMINGO_OK) {
            int finite = 1;
            for (size_t k = 0; k < L * V; k++) finite &= isfinite(buf[k]) != 0;
            CHECK(finite, "session_eval without media: non-finite logits");
        }
    }
    F.session_free(s);
    free(visual);
    free(buf);
}

static void test_eval_errors(ctx *c) {
    const refdata *r = &c->ref;
    size_t L = r->n_tokens, V = r->vocab;
    flamingo_session *s = new_session(c, 0);
    if (!s) return;
    F.session_set_images(s, r->pixels, r->n_images);
    size_t k = L / 2;
    float *buf = xmalloc((L * V + 16) * sizeof(float));
    /* First half evaluated; every failure below must leave it at k tokens. */
    CHECK_STATUS(F.session_eval(s, r->ids, k, 0, NULL, 0), FLAMINGO_OK, "session_eval(first half, logits=NULL)");

    fill(buf, L * V * sizeof(float));
    CHECK_STATUS(F.session_eval(s, NULL, 1, 0, buf, V), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_eval(tokens=NULL)");
    CHECK_STATUS(F.session_eval(s, r->ids + k, 0, 0, buf, V), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "session_eval(n_tokens=0)");
    CHECK(untouched(buf, L * V * sizeof(float)), "session_eval(bad tokens): logits modified");
    CHECK(session_len(s) == k, "session changed by a failed eval");

    const int32_t oov[] = {(int32_t)V, -1, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof oov / sizeof *oov; i++) {
        int32_t toks[3] = {r->ids[k], oov[i], r->ids[k]};
        char what[64];
        snprintf(what, sizeof what, "session_eval(token id %d)", oov[i]);
        fill(buf, L * V * sizeof(float));
        CHECK_STATUS(F.session_eval(s, toks, 3, FLAMINGO_EVAL_ALL_LOGITS, buf, 3 * V),
                     FLAMINGO_ERROR_INVALID_ARGUMENT, what);
        CHECK(untouched(buf, L * V * sizeof(float)), "%s: logits modified on error", what);
        CHECK(session_len(s) == k, "%s: session length %zu, want %zu (unchanged)", what, session_len(s), k);
    }

    size_t rest = L - k;
    fill(buf, L * V * sizeof(float));
    CHECK_STATUS(F.session_eval(s, r->ids + k, rest, FLAMINGO_EVAL_ALL_LOGITS, buf, rest * V - 1),
                 FLAMINGO_ERROR_BUFFER_TOO_SMALL, "session_eval(ALL_LOGITS, logits_count one short)");
    CHECK_STATUS(F.session_eval(s, r->ids + k, rest, FLAMINGO_EVAL_ALL_LOGITS, buf, V),
                 FLAMINGO_ERROR_BUFFER_TOO_SMALL, "session_eval(ALL_LOGITS, room for one row)");
    CHECK_STATUS(F.session_eval(s, r->ids + k, rest, 0, buf, V - 1), FLAMINGO_ERROR_BUFFER_TOO_SMALL,
                 "session_eval(last logits, logits_count vocab-1)");
    CHECK_STATUS(F.session_eval(s, r->ids + k, rest, 0, buf, 0), FLAMINGO_ERROR_BUFFER_TOO_SMALL,
                 "session_eval(logits != NULL, logits_count 0)");
    CHECK(untouched(buf, L * V * sizeof(float)), "session_eval(buffer too small): logits modified");
    CHECK(session_len(s) == k, "session_eval(buffer too small): session length %zu, want %zu", session_len(s), k);

    /* After all that, the rest of the prompt still gives the reference. */
    flamingo_status st = F.session_eval(s, r->ids + k, rest, FLAMINGO_EVAL_ALL_LOGITS, buf, rest * V);
    CHECK_STATUS(st, FLAMINGO_OK, "session_eval(second half) after failures");
    if (st == FLAMINGO_OK) {
        double e = rel_err(buf, r->logits + k * V, rest * V);
        CHECK(e <= TOL, "logits after failed evals: max|d|/max|ref| = %.3g (session was changed?)", e);
    }
    F.session_free(s);

    /* Context full: n_ctx = L takes the prompt, not one token more. */
    s = new_session(c, (uint32_t)L);
    if (s) {
        F.session_set_images(s, r->pixels, r->n_images);
        CHECK_STATUS(F.session_eval(s, r->ids, L, 0, NULL, 0), FLAMINGO_OK, "session_eval(prompt) with n_ctx = L");
        fill(buf, V * sizeof(float));
        CHECK_STATUS(F.session_eval(s, r->ids, 1, 0, buf, V), FLAMINGO_ERROR_INVALID_ARGUMENT,
                     "session_eval past n_ctx");
        CHECK(untouched(buf, V * sizeof(float)), "session_eval past n_ctx: logits modified");
        CHECK(session_len(s) == L, "session_eval past n_ctx: length %zu, want %zu", session_len(s), L);
        /* More tokens than n_ctx in one call, on an empty session. */
        F.session_truncate(s, 0);
        int32_t *many = xmalloc((L + 1) * sizeof(int32_t));
        memcpy(many, r->ids, L * sizeof(int32_t));
        many[L] = r->ids[L - 1];
        CHECK_STATUS(F.session_eval(s, many, L + 1, 0, NULL, 0), FLAMINGO_ERROR_INVALID_ARGUMENT,
                     "session_eval(n_ctx + 1 tokens)");
        CHECK(session_len(s) == 0, "session_eval(n_ctx + 1 tokens): length %zu, want 0", session_len(s));
        free(many);
    }
    F.session_free(s);

    /* set_media / set_images errors. */
    s = new_session(c, 0);
    if (s) {
        CHECK_STATUS(F.session_set_media(s, NULL, 1), FLAMINGO_ERROR_INVALID_ARGUMENT,
                     "session_set_media(NULL, n_media=1)");
        CHECK_STATUS(F.session_set_images(s, NULL, 1), FLAMINGO_ERROR_INVALID_ARGUMENT,
                     "session_set_images(pixels=NULL)");
        CHECK_STATUS(F.session_set_images(s, r->pixels, 0), FLAMINGO_ERROR_INVALID_ARGUMENT,
                     "session_set_images(n_images=0)");
        size_t length = (size_t)-1;
        CHECK_STATUS(F.session_length(s, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_length(out=NULL)");
        CHECK_STATUS(F.session_length(s, &length), FLAMINGO_OK, "session_length");
        CHECK(length == 0, "empty session: length %zu", length);
    }
    F.session_free(s);
    free(buf);
}

static void test_generate(ctx *c) {
    const refdata *r = &c->ref;
    size_t L = r->n_tokens;
    uint32_t G = (uint32_t)r->n_greedy;
    recorder rec;

    /* Greedy: the reference ids, reason MAX_TOKENS, the callback sees them. */
    flamingo_session *s = prompt_session(c, 0);
    if (!s) return;
    flamingo_generate_params p = gparams(G, &rec);
    expect_generation(s, &p, r->greedy, G, FLAMINGO_STOP_MAX_TOKENS, "greedy generate");
    CHECK(session_len(s) == L + G, "length after generate: %zu, want %zu", session_len(s), L + G);
    F.session_free(s);

    /* Without a callback and with out_reason NULL. */
    s = prompt_session(c, 0);
    if (s) {
        p = gparams(G, NULL);
        int32_t out[64];
        size_t count = 0;
        CHECK_STATUS(F.session_generate(s, &p, out, 64, &count, NULL), FLAMINGO_OK, "generate(out_reason=NULL)");
        CHECK(count == G && same_ids(out, r->greedy, G), "generate(out_reason=NULL): wrong tokens");
    }
    F.session_free(s);

    /* params NULL: defaults (max_new_tokens 20); greedy, so the reference is a prefix. */
    s = prompt_session(c, 0);
    if (s) {
        int32_t out[20];
        size_t count = 0;
        flamingo_stop_reason reason = -1;
        flamingo_status st = F.session_generate(s, NULL, out, 20, &count, &reason);
        CHECK_STATUS(st, FLAMINGO_OK, "generate(params=NULL)");
        if (st == FLAMINGO_OK) {
            CHECK(count >= 1 && count <= 20, "generate(params=NULL): %zu tokens", count);
            size_t m = count < G ? count : G;
            CHECK(same_ids(out, r->greedy, m), "generate(params=NULL): not a greedy continuation");
            CHECK(reason == (count == 20 ? FLAMINGO_STOP_MAX_TOKENS : FLAMINGO_STOP_TOKEN),
                  "generate(params=NULL): %zu tokens with stop reason %d", count, (int)reason);
            CHECK(session_len(s) == L + count, "generate(params=NULL): length %zu, want %zu", session_len(s),
                  L + count);
        }
    }
    F.session_free(s);

    /* The callback cancels: after the first token, then after the third. */
    const size_t stops[] = {1, 3};
    for (int k = 0; k < 2; k++) {
        if (stops[k] > G) continue;
        s = prompt_session(c, 0);
        if (!s) continue;
        p = gparams(G, &rec);
        rec.stop_after = stops[k];
        char what[64];
        snprintf(what, sizeof what, "generate cancelled after %zu token(s)", stops[k]);
        expect_generation(s, &p, r->greedy, stops[k], FLAMINGO_STOP_CANCELLED, what);
        CHECK(session_len(s) == L + stops[k], "%s: length %zu, want %zu", what, session_len(s), L + stops[k]);
        F.session_free(s);
    }

    /* Continuing: a second generate continues from the first. */
    s = prompt_session(c, 0);
    if (s && G >= 2) {
        uint32_t h = G / 2;
        p = gparams(h, NULL);
        expect_generation(s, &p, r->greedy, h, FLAMINGO_STOP_MAX_TOKENS, "generate(first half)");
        p = gparams(G - h, NULL);
        expect_generation(s, &p, r->greedy + h, G - h, FLAMINGO_STOP_MAX_TOKENS, "generate(second half)");
        CHECK(session_len(s) == L + G, "two generates: length %zu, want %zu", session_len(s), L + G);
    }
    F.session_free(s);

    /* Sampling is reproducible with a seed, and the ids are in the vocabulary. */
    s = prompt_session(c, 0);
    if (s) {
        flamingo_session *s2 = NULL;
        CHECK_STATUS(F.session_copy(s, &s2), FLAMINGO_OK, "session_copy");
        int32_t a[16], b[16];
        size_t na = 0, nb = 0;
        p = gparams(8, NULL);
        p.do_sample = 1;
        p.temperature = 0.8f;
        p.top_k = 20;
        p.top_p = 0.95f;
        p.seed = 0x123456789abcdefull;
        CHECK_STATUS(F.session_generate(s, &p, a, 16, &na, NULL), FLAMINGO_OK, "generate(do_sample, seed)");
        if (s2) CHECK_STATUS(F.session_generate(s2, &p, b, 16, &nb, NULL), FLAMINGO_OK, "generate(do_sample, seed) on a copy");
        CHECK(na == nb && same_ids(a, b, na), "sampling with the same seed gave different tokens");
        int in_vocab = 1;
        for (size_t i = 0; i < na; i++) in_vocab &= a[i] >= 0 && (uint32_t)a[i] < c->info.vocab_size;
        CHECK(in_vocab, "sampled token outside the vocabulary");
        F.session_free(s2);
    }
    F.session_free(s);

    /* Beam search and logits processors against the reference, on the main
     * prompt and on the "stop" prompt (whose continuation ends with
     * <|endofchunk|>), when the fixture has them. */
    const struct {
        int which;
        int stop_prompt;
        uint32_t beams;
        float lp;
        uint32_t no_repeat;
        float rep_penalty;
    } cases[] = {
        {BEAM0, 0, 3, 0.0f, 0, 1.0f},       {BEAM1, 0, 3, 1.0f, 0, 1.0f},
        {NR2, 0, 1, 1.0f, 2, 1.0f},         {RP15, 0, 1, 1.0f, 0, 1.5f},
        {STOP_GREEDY, 1, 1, 1.0f, 0, 1.0f}, {STOP_BEAM0, 1, 3, 0.0f, 0, 1.0f},
        {STOP_BEAM1, 1, 3, 1.0f, 0, 1.0f},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int32_t *want = r->opt[cases[k].which];
        size_t n_want = r->n_opt[cases[k].which];
        if (!want || (cases[k].stop_prompt && !r->opt[STOP_PROMPT])) {
            printf("note: %s: no %s.ids in the reference; not compared\n", current_fixture, opt_names[cases[k].which]);
            continue;
        }
        char what[128];
        snprintf(what, sizeof what, "%s (beams %u, length_penalty %g, no_repeat_ngram_size %u, repetition_penalty %g)",
                 opt_names[cases[k].which], cases[k].beams, (double)cases[k].lp, cases[k].no_repeat,
                 (double)cases[k].rep_penalty);
        s = new_session(c, 0);
        if (!s) continue;
        const int32_t *prompt = cases[k].stop_prompt ? r->opt[STOP_PROMPT] : r->ids;
        size_t n_prompt = cases[k].stop_prompt ? r->n_opt[STOP_PROMPT] : L;
        CHECK_STATUS(F.session_set_images(s, r->pixels, r->n_images), FLAMINGO_OK, "session_set_images");
        CHECK_STATUS(F.session_eval(s, prompt, n_prompt, 0, NULL, 0), FLAMINGO_OK, "session_eval(prompt)");
        p = gparams(8, &rec);
        p.num_beams = cases[k].beams;
        p.length_penalty = cases[k].lp;
        p.no_repeat_ngram_size = cases[k].no_repeat;
        p.repetition_penalty = cases[k].rep_penalty;
        p.stop_at_endofchunk = 1;
        /* A stop token ends it (and is included); otherwise max_new_tokens. */
        int32_t last = want[n_want - 1];
        flamingo_stop_reason reason = (last == c->info.endofchunk_token_id || last == c->info.eos_token_id)
                                          ? FLAMINGO_STOP_TOKEN : FLAMINGO_STOP_MAX_TOKENS;
        expect_generation(s, &p, want, n_want, reason, what);
        CHECK(session_len(s) == n_prompt + n_want, "%s: length %zu, want %zu", what, session_len(s),
              n_prompt + n_want);
        F.session_free(s);
    }
}

static void test_generate_errors(ctx *c) {
    const refdata *r = &c->ref;
    size_t L = r->n_tokens;
    uint32_t G = (uint32_t)r->n_greedy;
    int32_t out[64];
    size_t count;
    flamingo_stop_reason reason;
    flamingo_generate_params p;
#define RESET_OUTS() (fill(out, sizeof out), fill(&count, sizeof count), fill(&reason, sizeof reason))
#define OUTS_UNTOUCHED() (untouched(out, sizeof out) && untouched(&count, sizeof count) && untouched(&reason, sizeof reason))

    /* Nothing evaluated yet (with and without media). */
    flamingo_session *s = new_session(c, 0);
    if (!s) return;
    p = gparams(4, NULL);
    RESET_OUTS();
    CHECK_STATUS(F.session_generate(s, &p, out, 64, &count, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "generate before any eval");
    CHECK(OUTS_UNTOUCHED(), "generate before any eval: out parameters modified");
    F.session_set_images(s, r->pixels, r->n_images);
    RESET_OUTS();
    CHECK_STATUS(F.session_generate(s, &p, out, 64, &count, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "generate with media but no eval");
    CHECK(session_len(s) == 0, "generate before eval changed the session");
    F.session_free(s);

    s = prompt_session(c, 0);
    if (!s) return;

    p = gparams(G, NULL);
    RESET_OUTS();
    CHECK_STATUS(F.session_generate(s, &p, NULL, 64, &count, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "generate(out_tokens=NULL)");
    CHECK(OUTS_UNTOUCHED(), "generate(out_tokens=NULL): out parameters modified");
    RESET_OUTS();
    CHECK_STATUS(F.session_generate(s, &p, out, 64, NULL, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "generate(out_count=NULL)");
    CHECK(OUTS_UNTOUCHED(), "generate(out_count=NULL): out parameters modified");
    RESET_OUTS();
    CHECK_STATUS(F.session_generate(s, &p, out, G - 1, &count, &reason), FLAMINGO_ERROR_BUFFER_TOO_SMALL,
                 "generate(capacity = max_new_tokens - 1)");
    CHECK(OUTS_UNTOUCHED(), "generate(capacity too small): out parameters modified");
    RESET_OUTS();
    CHECK_STATUS(F.session_generate(s, &p, out, 0, &count, &reason), FLAMINGO_ERROR_BUFFER_TOO_SMALL,
                 "generate(capacity 0)");
    CHECK(OUTS_UNTOUCHED(), "generate(capacity 0): out parameters modified");

    const uint32_t small[] = {0, 4, (uint32_t)offsetof(flamingo_generate_params, seed),
                              (uint32_t)sizeof p - 1};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        char what[64];
        snprintf(what, sizeof what, "generate(params.struct_size=%u)", small[i]);
        p = gparams(G, NULL);
        p.struct_size = small[i];
        RESET_OUTS();
        CHECK_STATUS(F.session_generate(s, &p, out, 64, &count, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT, what);
        CHECK(OUTS_UNTOUCHED(), "%s: out parameters modified", what);
    }

    /* Bad values, one by one. */
    {
        flamingo_generate_params v[6];
        const char *names[6] = {"num_beams=0", "do_sample with temperature=0", "do_sample with top_p=0",
                                "do_sample with top_p=1.5", "do_sample with temperature=NaN",
                                "length_penalty=inf"};
        for (int i = 0; i < 6; i++) v[i] = gparams(G, NULL);
        v[0].num_beams = 0;
        v[1].do_sample = 1; v[1].temperature = 0.0f;
        v[2].do_sample = 1; v[2].top_p = 0.0f;
        v[3].do_sample = 1; v[3].top_p = 1.5f;
        v[4].do_sample = 1; v[4].temperature = NAN;
        v[5].num_beams = 2; v[5].length_penalty = INFINITY;
        for (int i = 0; i < 6; i++) {
            char what[96];
            snprintf(what, sizeof what, "generate(%s)", names[i]);
            RESET_OUTS();
            CHECK_STATUS(F.session_generate(s, &v[i], out, 64, &count, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT,
                         what);
            CHECK(OUTS_UNTOUCHED(), "%s: out parameters modified", what);
        }
    }
    CHECK(session_len(s) == L, "failed generates changed the session length to %zu (want %zu)", session_len(s), L);

    /* Context too small for max_new_tokens. */
    flamingo_session *small_s = prompt_session(c, (uint32_t)(L + G - 1));
    if (small_s) {
        p = gparams(G, NULL);
        RESET_OUTS();
        CHECK_STATUS(F.session_generate(small_s, &p, out, 64, &count, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT,
                     "generate(prompt + max_new_tokens > n_ctx)");
        CHECK(OUTS_UNTOUCHED(), "generate(context too small): out parameters modified");
        CHECK(session_len(small_s) == L, "generate(context too small): session changed");
        p = gparams(G - 1, NULL);
        expect_generation(small_s, &p, r->greedy, G - 1, FLAMINGO_STOP_MAX_TOKENS,
                          "generate(prompt + max_new_tokens == n_ctx)");
        F.session_free(small_s);
    }

    /* After every failure, the session still generates the reference. */
    p = gparams(G, NULL);
    expect_generation(s, &p, r->greedy, G, FLAMINGO_STOP_MAX_TOKENS, "greedy generate after failed calls");

    /* Truncate: rolls back, and generation needs a new evaluation. */
    size_t len = session_len(s);
    CHECK_STATUS(F.session_truncate(s, len + 1), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_truncate(length + 1)");
    CHECK_STATUS(F.session_truncate(s, SIZE_MAX), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_truncate(SIZE_MAX)");
    CHECK(session_len(s) == len, "failed truncate changed the length");
    CHECK_STATUS(F.session_truncate(s, L), FLAMINGO_OK, "session_truncate(prompt length)");
    CHECK(session_len(s) == L, "after truncate: length %zu, want %zu", session_len(s), L);
    p = gparams(G, NULL);
    RESET_OUTS();
    CHECK_STATUS(F.session_generate(s, &p, out, 64, &count, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "generate right after truncate (needs a new evaluation)");
    CHECK(OUTS_UNTOUCHED(), "generate after truncate: out parameters modified");
    F.session_free(s);
#undef RESET_OUTS
#undef OUTS_UNTOUCHED
}

static void test_truncate(ctx *c) {
    const refdata *r = &c->ref;
    size_t L = r->n_tokens, V = r->vocab;
    uint32_t G = (uint32_t)r->n_greedy;
    float *buf = xmalloc(L * V * sizeof(float));
    float *buf2 = xmalloc(L * V * sizeof(float));
    flamingo_session *s = new_session(c, 0);
    if (!s) { free(buf); free(buf2); return; }
    F.session_set_images(s, r->pixels, r->n_images);
    CHECK_STATUS(F.session_eval(s, r->ids, L, FLAMINGO_EVAL_ALL_LOGITS, buf, L * V), FLAMINGO_OK, "session_eval");

    /* Roll back to k and re-evaluate the suffix: the same logits. */
    const size_t ks[] = {L - 1, L / 2, 1, 0};
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        size_t k = ks[i];
        CHECK_STATUS(F.session_truncate(s, k), FLAMINGO_OK, "session_truncate");
        CHECK(session_len(s) == k, "truncate(%zu): length %zu", k, session_len(s));
        flamingo_status st = F.session_eval(s, r->ids + k, L - k, FLAMINGO_EVAL_ALL_LOGITS, buf2, (L - k) * V);
        CHECK_STATUS(st, FLAMINGO_OK, "session_eval after truncate");
        if (st == FLAMINGO_OK) {
            double e = rel_err(buf2, buf + k * V, (L - k) * V);
            CHECK(e <= 1e-6, "truncate(%zu) + re-eval: logits differ from the first eval, max|d|/max|ref| = %.3g", k, e);
            e = rel_err(buf2, r->logits + k * V, (L - k) * V);
            CHECK(e <= TOL, "truncate(%zu) + re-eval: max|d|/max|ref| = %.3g vs logits", k, e);
        }
        CHECK(session_len(s) == L, "re-eval after truncate(%zu): length %zu", k, session_len(s));
    }
    /* Truncating generated tokens away and generating again gives them again. */
    flamingo_generate_params p = gparams(G, NULL);
    expect_generation(s, &p, r->greedy, G, FLAMINGO_STOP_MAX_TOKENS, "generate");
    CHECK_STATUS(F.session_truncate(s, L - 1), FLAMINGO_OK, "session_truncate(L-1) after generate");
    CHECK_STATUS(F.session_eval(s, r->ids + L - 1, 1, 0, NULL, 0), FLAMINGO_OK, "session_eval(last prompt token)");
    expect_generation(s, &p, r->greedy, G, FLAMINGO_STOP_MAX_TOKENS, "generate after truncate + eval");
    CHECK_STATUS(F.session_truncate(s, session_len(s)), FLAMINGO_OK, "session_truncate(length) is a no-op");
    F.session_free(s);
    free(buf);
    free(buf2);
}

static void test_copy(ctx *c) {
    const refdata *r = &c->ref;
    size_t L = r->n_tokens, V = r->vocab;
    uint32_t G = (uint32_t)r->n_greedy;
    flamingo_session *s = prompt_session(c, 0);
    if (!s) return;

    CHECK_STATUS(F.session_copy(s, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_copy(out=NULL)");

    flamingo_session *cp = NULL;
    CHECK_STATUS(F.session_copy(s, &cp), FLAMINGO_OK, "session_copy");
    if (!cp) { F.session_free(s); return; }
    CHECK(cp != s, "session_copy returned the same handle");
    CHECK(session_len(cp) == L, "copy: length %zu, want %zu", session_len(cp), L);

    /* Generating on the copy leaves the original alone... */
    flamingo_generate_params p = gparams(G, NULL);
    expect_generation(cp, &p, r->greedy, G, FLAMINGO_STOP_MAX_TOKENS, "generate on the copy");
    CHECK(session_len(cp) == L + G, "copy after generate: length %zu", session_len(cp));
    CHECK(session_len(s) == L, "original's length changed to %zu by generate on its copy", session_len(s));
    /* ...whose own continuation is still the reference... */
    flamingo_session *cp2 = NULL;
    CHECK_STATUS(F.session_copy(s, &cp2), FLAMINGO_OK, "second session_copy");
    expect_generation(s, &p, r->greedy, G, FLAMINGO_STOP_MAX_TOKENS, "generate on the original after its copy");
    /* ...and a copy survives the original (and works with its media). */
    F.session_free(s);
    if (cp2) {
        float *buf = xmalloc(V * sizeof(float));
        CHECK_STATUS(F.session_truncate(cp2, L - 1), FLAMINGO_OK, "truncate the copy");
        flamingo_status st = F.session_eval(cp2, r->ids + L - 1, 1, 0, buf, V);
        CHECK_STATUS(st, FLAMINGO_OK, "eval on a copy whose original was freed");
        if (st == FLAMINGO_OK) {
            double e = rel_err(buf, r->logits + (L - 1) * V, V);
            CHECK(e <= TOL, "copy's logits after freeing the original: max|d|/max|ref| = %.3g", e);
        }
        free(buf);
        /* A copy of a copy. */
        flamingo_session *cp3 = NULL;
        CHECK_STATUS(F.session_copy(cp2, &cp3), FLAMINGO_OK, "session_copy of a copy");
        if (cp3) expect_generation(cp3, &p, r->greedy, G, FLAMINGO_STOP_MAX_TOKENS, "generate on a copy of a copy");
        F.session_free(cp3);
    }
    F.session_free(cp2);
    F.session_free(cp);
}

static void test_freed_handles(ctx *c, const char *dir) {
    const refdata *r = &c->ref;
    uint32_t G = (uint32_t)r->n_greedy;

    /* A session outlives its model. */
    flamingo_model *m = NULL;
    flamingo_status st = F.model_load(dir, NULL, &m);
    CHECK_STATUS(st, FLAMINGO_OK, "model_load");
    if (st != FLAMINGO_OK) return;
    flamingo_session *s = NULL;
    CHECK_STATUS(F.session_init(m, NULL, &s), FLAMINGO_OK, "session_init");
    F.model_free(m);
    if (s) {
        size_t V = r->vocab, L = r->n_tokens;
        float *buf = xmalloc(V * sizeof(float));
        CHECK_STATUS(F.session_set_images(s, r->pixels, r->n_images), FLAMINGO_OK,
                     "session_set_images after model_free");
        st = F.session_eval(s, r->ids, L, 0, buf, V);
        CHECK_STATUS(st, FLAMINGO_OK, "session_eval after model_free");
        if (st == FLAMINGO_OK) {
            double e = rel_err(buf, r->logits + (L - 1) * V, V);
            CHECK(e <= TOL, "session_eval after model_free: max|d|/max|ref| = %.3g", e);
        }
        flamingo_generate_params p = gparams(G, NULL);
        expect_generation(s, &p, r->greedy, G, FLAMINGO_STOP_MAX_TOKENS, "generate after model_free");
        flamingo_session *cp = NULL;
        CHECK_STATUS(F.session_copy(s, &cp), FLAMINGO_OK, "session_copy after model_free");
        F.session_free(s);
        if (cp) CHECK(session_len(cp) == L + G, "copy after model_free: length %zu", session_len(cp));
        F.session_free(cp);
        free(buf);
    }

    /* A freed session is rejected, not dereferenced. (Nothing is allocated
     * between the free and the calls, so the address is not reused.) */
    s = prompt_session(c, 0);
    if (!s) return;
    F.session_free(s);
    size_t n;
    int32_t out[16];
    size_t count;
    flamingo_stop_reason reason;
    flamingo_session *cp = SESSION_SENTINEL;
    float logits[4];
    fill(&n, sizeof n);
    fill(out, sizeof out);
    fill(&count, sizeof count);
    fill(&reason, sizeof reason);
    fill(logits, sizeof logits);
    CHECK_STATUS(F.session_length(s, &n), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_length(freed session)");
    CHECK(untouched(&n, sizeof n), "session_length(freed session): out_length modified");
    CHECK_STATUS(F.session_eval(s, r->ids, 1, 0, logits, 4), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "session_eval(freed session)");
    CHECK(untouched(logits, sizeof logits), "session_eval(freed session): logits modified");
    CHECK_STATUS(F.session_generate(s, NULL, out, 16, &count, &reason), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "session_generate(freed session)");
    CHECK(untouched(out, sizeof out) && untouched(&count, sizeof count) && untouched(&reason, sizeof reason),
          "session_generate(freed session): out parameters modified");
    CHECK_STATUS(F.session_copy(s, &cp), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_copy(freed session)");
    CHECK(cp == SESSION_SENTINEL, "session_copy(freed session): out_copy modified");
    CHECK_STATUS(F.session_truncate(s, 0), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_truncate(freed session)");
    CHECK_STATUS(F.session_set_media(s, NULL, 0), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_set_media(freed session)");
    CHECK_STATUS(F.session_set_images(s, r->pixels, 1), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "session_set_images(freed session)");

    /* Likewise a freed model. */
    m = NULL;
    if (F.model_load(dir, NULL, &m) == FLAMINGO_OK) {
        F.model_free(m);
        flamingo_session *s2 = SESSION_SENTINEL;
        CHECK_STATUS(F.session_init(m, NULL, &s2), FLAMINGO_ERROR_INVALID_ARGUMENT, "session_init(freed model)");
        CHECK(s2 == SESSION_SENTINEL, "session_init(freed model): out_session modified");
        float o[4];
        fill(o, sizeof o);
        CHECK_STATUS(F.model_encode_images(m, r->pixels, 1, o, 4), FLAMINGO_ERROR_INVALID_ARGUMENT,
                     "model_encode_images(freed model)");
        CHECK(untouched(o, sizeof o), "model_encode_images(freed model): out modified");
    }
}

typedef struct {
    ctx *c;
    int ok_tokens;
    int ok_logits;
    flamingo_status st;
    char err[256];
} thread_job;

static void *session_thread(void *arg) {
    thread_job *j = arg;
    const refdata *r = &j->c->ref;
    size_t L = r->n_tokens, V = r->vocab;
    flamingo_session *s = NULL;
    float *buf = xmalloc(V * sizeof(float));
    for (int rep = 0; rep < 3; rep++) {
        j->st = F.session_init(j->c->model, NULL, &s);
        if (j->st == FLAMINGO_OK) j->st = F.session_set_images(s, r->pixels, r->n_images);
        if (j->st == FLAMINGO_OK) j->st = F.session_eval(s, r->ids, L, 0, buf, V);
        if (j->st == FLAMINGO_OK) j->ok_logits += rel_err(buf, r->logits + (L - 1) * V, V) <= TOL;
        int32_t out[64];
        size_t count = 0;
        flamingo_generate_params p;
        F.generate_default_params(&p, sizeof p);
        p.max_new_tokens = (uint32_t)r->n_greedy;
        if (j->st == FLAMINGO_OK) j->st = F.session_generate(s, &p, out, 64, &count, NULL);
        if (j->st == FLAMINGO_OK) j->ok_tokens += count == r->n_greedy && same_ids(out, r->greedy, count);
        if (j->st != FLAMINGO_OK) snprintf(j->err, sizeof j->err, "%s", F.last_error());
        F.session_free(s);
        s = NULL;
        if (j->st != FLAMINGO_OK) break;
    }
    free(buf);
    return NULL;
}

static void test_threads(ctx *c) {
    enum { N = 4 };
    thread_job jobs[N];
    pthread_t t[N];
    for (int k = 0; k < N; k++) {
        memset(&jobs[k], 0, sizeof jobs[k]);
        jobs[k].c = c;
        pthread_create(&t[k], NULL, session_thread, &jobs[k]);
    }
    for (int k = 0; k < N; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < N; k++) {
        CHECK(jobs[k].st == FLAMINGO_OK, "thread %d: %s: %s", k, sname(jobs[k].st), jobs[k].err);
        CHECK(jobs[k].ok_logits == 3 && jobs[k].ok_tokens == 3,
              "thread %d: concurrent sessions: %d/3 logits and %d/3 generations match the reference", k,
              jobs[k].ok_logits, jobs[k].ok_tokens);
    }
}

static void test_fixture(const char *dir, const char *refdir) {
    ctx c;
    memset(&c, 0, sizeof c);
    current_fixture = dir;
    load_ref(refdir, &c.ref);
    flamingo_status st = F.model_load(dir, NULL, &c.model);
    CHECK_STATUS(st, FLAMINGO_OK, "model_load");
    if (st != FLAMINGO_OK) { free_ref(&c.ref); return; }
    fill(&c.info, sizeof c.info);
    c.info.struct_size = sizeof c.info;
    st = F.model_get_info(c.model, &c.info);
    CHECK_STATUS(st, FLAMINGO_OK, "model_get_info");
    if (st == FLAMINGO_OK) {
        c.image_floats = 3 * (size_t)c.info.image_size * c.info.image_size;
        c.media_floats = (size_t)c.info.num_latents * c.info.visual_dim;
        c.all_logits = xmalloc(c.ref.n_tokens * c.ref.vocab * sizeof(float));
        test_info(&c);
        if (c.info.visual_dim == c.ref.dim && c.info.vocab_size == c.ref.vocab &&
            c.info.image_size == c.ref.image_size && c.info.num_latents == c.ref.latents) {
            test_encode_images(&c);
            test_session_init(&c);
            test_eval_reference(&c);
            test_eval_errors(&c);
            test_generate(&c);
            test_generate_errors(&c);
            test_truncate(&c);
            test_copy(&c);
            test_threads(&c);
            test_freed_handles(&c, dir);
        }
        free(c.all_logits);
    }
    F.model_free(c.model);
    free_ref(&c.ref);
    current_fixture = "";
}

/* ---- main --------------------------------------------------------------- */


int main(int argc, char **argv) {
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: %s LIBRARY [MODEL_DIR REFERENCE_DIR]\n", argv[0]);
        return 2;
    }
    void *lib = open_api(argv[1], "capi");
    if (!lib) return 1;
    /* Freeing stale handles may log a warning; keep the output readable. */
    F.log_set_level(FLAMINGO_LOG_ERROR);

    test_session_default_params();
    test_generate_default_params();
    test_null_handles();
    if (argc == 4) test_fixture(argv[2], argv[3]);

    if (dlclose(lib) != 0) fprintf(stderr, "note: dlclose: %s\n", dlerror());
    printf("capi: %d passed, %d failed\n", n_passed, n_failed);
    return n_failed == 0 ? 0 : 1;
}
