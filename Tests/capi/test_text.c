/* C-ABI tests for text, media, interleaved prompts and batch generation in
 * libflamingo.
 *
 *   test_text LIBRARY [MODEL_DIR REFERENCE_DIR IMAGES_DIR]
 *
 * dlopen()s LIBRARY (RTLD_NOW | RTLD_LOCAL) and resolves every function of
 * include/flamingo.h it uses. Without a model it checks the NULL-handle error
 * paths of the text, media and batch functions. With MODEL_DIR (a fixture
 * model directory), REFERENCE_DIR (written by extract_reference.py with
 * IMAGES_DIR: the reference's ids and texts from Hugging Face tokenizers, the
 * decoded RGB goldens) and IMAGES_DIR (Tests/Fixtures/images, with bad/) it
 * checks:
 *
 *  - flamingo_tokenize / flamingo_detokenize against the reference ids and
 *    texts, round trips, the snprintf rule (full size always reported, at
 *    most capacity items written, NUL-terminated text), invalid UTF-8 and
 *    the other INVALID_ARGUMENT cases;
 *  - the streaming detokenizer: every piece is whole UTF-8 characters, the
 *    pieces concatenate to the full decode, "é" as the byte tokens
 *    <0xC3><0xA9> (llama_tiny) is held back then returned whole, and
 *    BUFFER_TOO_SMALL on push does not consume the token;
 *  - flamingo_model_preprocess_image and flamingo_session_set_prompt with each
 *    media kind (FILE, ENCODED, RGB, PIXELS, VISUAL_TOKENS) giving identical
 *    pixels / logits for the same image; the media array stride
 *    media[0].struct_size; marker-count mismatch, undecodable, truncated,
 *    unsupported and missing images (the session unchanged on error);
 *  - flamingo_batch_generate: equal to generating each session alone (greedy,
 *    beam search, sampling), the reference's two-row batch, and its errors.
 *
 * The last line is "capi-text: N passed, M failed"; the exit status is 0 only
 * when M is 0.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the library, resolved at run time ---------------------------------- */


/* 1 when buf[0..n) is valid UTF-8 (no overlongs, surrogates or values above
 * U+10FFFF) and ends on a character boundary. */
static int valid_utf8(const char *buf, size_t n) {
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* A growable byte string, NUL-terminated. */
typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = 2 * (b->len + n + 1);
        char *p = realloc(b->p, cap);
        if (!p) { perror("realloc"); exit(2); }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* ---- files -------------------------------------------------------------- */

/* Reads a whole file; NULL (and *n 0) when it is missing. */
static void *read_file(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap + 1);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) { perror("realloc"); exit(2); }
            buf = nb;
        }
    }
    fclose(f);
    buf[len] = '\0'; /* text files become C strings */
    *n = len;
    return buf;
}

static void *read_in(const char *dir, const char *name, size_t *n) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return read_file(p, n);
}

/* ---- reference data ----------------------------------------------------- */

typedef struct {
    size_t n_images, image_size, n_tokens, vocab, latents, dim, n_greedy;
    long e_acute_index; /* -1: none */
    size_t batch_rows, batch_max_images, batch_images[2], batch_steps;
    size_t rgb_w[2], rgb_h[2]; /* rgb_37x53, exif1_40x24 */
    float *pixels;
    int32_t *ids, *greedy;
    char *prompt, *greedy_text, *greedy_text_skip, *extra_markers_prompt;
    size_t prompt_len, greedy_text_len, greedy_text_skip_len;
    char *batch_prompt[2];
    float *batch_pixels;
    int32_t *batch_greedy;
    unsigned char *rgb[2];
} refdata;

static const char *const RGB_NAMES[2] = {"rgb_37x53", "exif1_40x24"};
static const char *const IMAGE_FILES[2] = {"rgb_37x53.png", "exif1_40x24.jpg"};

static void *need(const char *dir, const char *name, size_t want) {
    size_t n;
    void *p = read_in(dir, name, &n);
    if (!p || (want && n != want)) {
        fprintf(stderr, "%s/%s: missing or not %zu bytes\n", dir, name, want);
        exit(2);
    }
    return p;
}

static void load_ref(const char *dir, refdata *r) {
    memset(r, 0, sizeof *r);
    r->e_acute_index = -1;
    char p[2048], key[64];
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
        else if (!strcmp(key, "e_acute_index")) r->e_acute_index = (long)v;
        else if (!strcmp(key, "batch_rows")) r->batch_rows = v;
        else if (!strcmp(key, "batch_max_images")) r->batch_max_images = v;
        else if (!strcmp(key, "batch_images0")) r->batch_images[0] = v;
        else if (!strcmp(key, "batch_images1")) r->batch_images[1] = v;
        else if (!strcmp(key, "batch_steps")) r->batch_steps = v;
        else if (!strcmp(key, "rgb_37x53_width")) r->rgb_w[0] = v;
        else if (!strcmp(key, "rgb_37x53_height")) r->rgb_h[0] = v;
        else if (!strcmp(key, "exif1_40x24_width")) r->rgb_w[1] = v;
        else if (!strcmp(key, "exif1_40x24_height")) r->rgb_h[1] = v;
    }
    fclose(f);
    if (!r->n_images || !r->image_size || !r->n_tokens || !r->vocab || !r->n_greedy) {
        fprintf(stderr, "%s: incomplete meta.txt\n", dir);
        exit(2);
    }
    size_t S = r->image_size;
    r->pixels = need(dir, "pixels.f32", r->n_images * 3 * S * S * sizeof(float));
    r->ids = need(dir, "input_ids.i32", r->n_tokens * sizeof(int32_t));
    r->greedy = need(dir, "greedy.i32", r->n_greedy * sizeof(int32_t));
    r->prompt = read_in(dir, "prompt.txt", &r->prompt_len);
    r->greedy_text = read_in(dir, "greedy_text.txt", &r->greedy_text_len);
    r->greedy_text_skip = read_in(dir, "greedy_text_skip.txt", &r->greedy_text_skip_len);
    if (!r->prompt || !r->greedy_text || !r->greedy_text_skip) {
        fprintf(stderr, "%s: no prompt.txt / greedy_text*.txt (is reference.json beside the fixture?)\n", dir);
        exit(2);
    }
    size_t n;
    r->extra_markers_prompt = read_in(dir, "extra_markers_prompt.txt", &n);
    if (r->batch_rows == 2 && r->batch_steps) {
        for (int i = 0; i < 2; i++) {
            snprintf(p, sizeof p, "batch_prompt%d.txt", i);
            r->batch_prompt[i] = need(dir, p, 0);
        }
        r->batch_pixels = need(dir, "batch_pixels.f32", 2 * r->batch_max_images * 3 * S * S * sizeof(float));
        r->batch_greedy = need(dir, "batch_greedy.i32", 2 * r->batch_steps * sizeof(int32_t));
    }
    for (int k = 0; k < 2; k++) {
        if (!r->rgb_w[k]) continue;
        snprintf(p, sizeof p, "%s.rgb", RGB_NAMES[k]);
        r->rgb[k] = need(dir, p, r->rgb_w[k] * r->rgb_h[k] * 3);
    }
}

static void free_ref(refdata *r) {
    free(r->pixels); free(r->ids); free(r->greedy);
    free(r->prompt); free(r->greedy_text); free(r->greedy_text_skip); free(r->extra_markers_prompt);
    free(r->batch_prompt[0]); free(r->batch_prompt[1]); free(r->batch_pixels); free(r->batch_greedy);
    free(r->rgb[0]); free(r->rgb[1]);
}

/* ---- helpers with a model ----------------------------------------------- */

typedef struct {
    flamingo_model *model;
    flamingo_model_info info;
    refdata ref;
    const char *images; /* IMAGES_DIR */
    size_t image_floats, media_floats;
} ctx;

static flamingo_session *new_session(ctx *c) {
    flamingo_session *s = NULL;
    flamingo_status st = F.session_init(c->model, NULL, &s);
    CHECK(st == FLAMINGO_OK && s, "session_init: %s: %s", sname(st), F.last_error());
    return st == FLAMINGO_OK ? s : NULL;
}

static size_t session_len(const flamingo_session *s) {
    size_t n = (size_t)-1;
    flamingo_status st = F.session_length(s, &n);
    CHECK(st == FLAMINGO_OK, "session_length: %s: %s", sname(st), F.last_error());
    return n;
}

/* Tokenizes; returns a malloc'd array and its length in *n (NULL on error). */
static int32_t *tokenize(ctx *c, const char *text, size_t len, uint32_t flags, size_t *n) {
    size_t count = 0;
    flamingo_status st = F.tokenize(c->model, text, len, flags, NULL, 0, &count);
    CHECK_STATUS(st, FLAMINGO_OK, "tokenize (size)");
    if (st != FLAMINGO_OK) return NULL;
    int32_t *ids = xmalloc(count * sizeof *ids);
    size_t again = 0;
    st = F.tokenize(c->model, text, len, flags, ids, count, &again);
    CHECK_STATUS(st, FLAMINGO_OK, "tokenize");
    CHECK(again == count, "tokenize: count %zu then %zu", count, again);
    *n = count;
    return ids;
}

/* Detokenizes; returns a malloc'd NUL-terminated string, its length in *len. */
static char *detokenize(ctx *c, const int32_t *ids, size_t n, uint32_t flags, size_t *len) {
    size_t need_len = 0;
    flamingo_status st = F.detokenize(c->model, ids, n, flags, NULL, 0, &need_len);
    CHECK_STATUS(st, FLAMINGO_OK, "detokenize (size)");
    if (st != FLAMINGO_OK) return NULL;
    char *text = xmalloc(need_len + 1);
    size_t again = 0;
    st = F.detokenize(c->model, ids, n, flags, text, need_len + 1, &again);
    CHECK_STATUS(st, FLAMINGO_OK, "detokenize");
    CHECK(again == need_len, "detokenize: length %zu then %zu", need_len, again);
    CHECK(text[need_len] == '\0', "detokenize: not NUL-terminated");
    *len = need_len;
    return text;
}

static flamingo_media media_file(const char *path) {
    flamingo_media m;
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    m.kind = FLAMINGO_MEDIA_FILE;
    m.path = path;
    return m;
}

static flamingo_media media_data(flamingo_media_kind kind, const void *data, size_t size) {
    flamingo_media m;
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    m.kind = kind;
    m.data = data;
    m.size = size;
    return m;
}

static void image_path(ctx *c, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", c->images, name);
}

static flamingo_generate_params gparams(uint32_t max_new_tokens) {
    flamingo_generate_params p;
    if (F.generate_default_params(&p, sizeof p) != FLAMINGO_OK) {
        fprintf(stderr, "generate_default_params: %s\n", F.last_error());
        exit(2);
    }
    p.max_new_tokens = max_new_tokens;
    return p;
}

/* ---- tests without a model ---------------------------------------------- */

static void test_null_handles(void) {
    int32_t ids[4];
    char text[16];
    size_t n;
    flamingo_detokenizer *d = (flamingo_detokenizer *)(uintptr_t)0xA5A5A5A5u;
    flamingo_media m = media_file("x.jpg");
    float px[4];

    fill(ids, sizeof ids);
    fill(&n, sizeof n);
    CHECK_STATUS(F.tokenize(NULL, "a", 1, 0, ids, 4, &n), FLAMINGO_ERROR_INVALID_ARGUMENT, "tokenize(model=NULL)");
    CHECK(untouched(ids, sizeof ids) && untouched(&n, sizeof n), "tokenize(model=NULL): outputs modified");
    fill(text, sizeof text);
    CHECK_STATUS(F.detokenize(NULL, ids, 1, 0, text, sizeof text, &n), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenize(model=NULL)");
    CHECK(untouched(text, sizeof text) && untouched(&n, sizeof n), "detokenize(model=NULL): outputs modified");
    CHECK_STATUS(F.detokenizer_init(NULL, 0, &d), FLAMINGO_ERROR_INVALID_ARGUMENT, "detokenizer_init(model=NULL)");
    CHECK(d == (flamingo_detokenizer *)(uintptr_t)0xA5A5A5A5u, "detokenizer_init(model=NULL): out modified");
    CHECK_STATUS(F.detokenizer_push(NULL, 0, text, sizeof text, &n), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenizer_push(NULL)");
    F.detokenizer_free(NULL);
    CHECK(1, "detokenizer_free(NULL)");
    CHECK_STATUS(F.session_set_prompt(NULL, "<image>", &m, 1, NULL, 0), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "session_set_prompt(NULL)");
    fill(px, sizeof px);
    CHECK_STATUS(F.model_preprocess_image(NULL, &m, px, 4), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_preprocess_image(NULL)");
    CHECK(untouched(px, sizeof px), "model_preprocess_image(NULL): out modified");
    flamingo_session *none[1] = {NULL};
    size_t counts[1];
    fill(counts, sizeof counts);
    CHECK_STATUS(F.batch_generate(none, 1, NULL, ids, 4, counts, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(sessions={NULL})");
    CHECK_STATUS(F.batch_generate(NULL, 1, NULL, ids, 4, counts, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(sessions=NULL)");
    CHECK(untouched(counts, sizeof counts), "batch_generate(NULL): out_counts modified");
}

/* ---- tokenize / detokenize ---------------------------------------------- */

static void test_tokenize(ctx *c) {
    refdata *r = &c->ref;
    size_t n = 0;
    int32_t *ids = tokenize(c, r->prompt, r->prompt_len, FLAMINGO_TOKENIZE_ADD_SPECIAL, &n);
    if (!ids) return;
    CHECK(n == r->n_tokens && memcmp(ids, r->ids, n * sizeof *ids) == 0,
          "tokenize(prompt): %zu ids differ from the reference's %zu", n, r->n_tokens);
    free(ids);

    /* The snprintf rule: *out_count is always the full count; at most
     * capacity ids are written; nothing past them. */
    const size_t N = r->n_tokens;
    int32_t *out = xmalloc((N + 8) * sizeof *out);
    const size_t caps[] = {0, 1, N - 1, N, N + 8};
    for (size_t i = 0; i < sizeof caps / sizeof *caps; i++) {
        size_t cap = caps[i], count = (size_t)-1;
        char what[64];
        snprintf(what, sizeof what, "tokenize(capacity=%zu)", cap);
        fill(out, (N + 8) * sizeof *out);
        CHECK_STATUS(F.tokenize(c->model, r->prompt, r->prompt_len, FLAMINGO_TOKENIZE_ADD_SPECIAL,
                                cap ? out : NULL, cap, &count),
                     FLAMINGO_OK, what);
        size_t k = cap < N ? cap : N;
        CHECK(count == N, "%s: out_count %zu, want %zu", what, count, N);
        CHECK(memcmp(out, r->ids, k * sizeof *out) == 0, "%s: the first %zu ids differ", what, k);
        CHECK(untouched(out + k, (N + 8 - k) * sizeof *out), "%s: wrote past %zu ids", what, k);
    }
    free(out);

    /* Round trips without special tokens added. */
    const char *texts[] = {r->prompt, "A café, naïve \xe2\x80\x94 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x90\xb1.",
                           "plain ascii", ""};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        size_t len = strlen(texts[i]), m = 0, tlen = 0;
        int32_t *t = tokenize(c, texts[i], len, 0, &m);
        if (!t) continue;
        char *back = detokenize(c, t, m, 0, &tlen);
        CHECK(back && tlen == len && memcmp(back, texts[i], len) == 0, "round trip of \"%s\" gave \"%s\"", texts[i],
              back ? back : "(null)");
        free(back);
        free(t);
    }
    /* Empty text with special tokens: at most the BOS etc. */
    size_t count = (size_t)-1;
    CHECK_STATUS(F.tokenize(c->model, "", 0, FLAMINGO_TOKENIZE_ADD_SPECIAL, NULL, 0, &count), FLAMINGO_OK,
                 "tokenize(\"\")");
    CHECK(count <= 2, "tokenize(\"\"): %zu ids", count);
}

static void test_tokenize_errors(ctx *c) {
    static const struct { const char *bytes; size_t len; const char *what; } bad[] = {
        {"\xff", 1, "0xFF"},
        {"abc\xc3", 4, "truncated 2-byte sequence"},
        {"\xc0\xaf", 2, "overlong"},
        {"\xed\xa0\x80", 3, "surrogate"},
        {"\xf4\x90\x80\x80", 4, "above U+10FFFF"},
        {"a\x80" "b", 3, "lone continuation byte"},
        {"<image>\xe2\x82", 9, "truncated 3-byte sequence after a special token"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int32_t out[8];
        size_t count;
        char what[96];
        snprintf(what, sizeof what, "tokenize(invalid UTF-8: %s)", bad[i].what);
        fill(out, sizeof out);
        fill(&count, sizeof count);
        CHECK_STATUS(F.tokenize(c->model, bad[i].bytes, bad[i].len, 0, out, 8, &count),
                     FLAMINGO_ERROR_INVALID_ARGUMENT, what);
        CHECK(untouched(out, sizeof out) && untouched(&count, sizeof count), "%s: outputs modified", what);
    }
    int32_t out[8];
    size_t count;
    fill(&count, sizeof count);
    CHECK_STATUS(F.tokenize(c->model, "a", 1, 0x80u, out, 8, &count), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "tokenize(unknown flags)");
    CHECK_STATUS(F.tokenize(c->model, NULL, 1, 0, out, 8, &count), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "tokenize(text=NULL)");
    CHECK_STATUS(F.tokenize(c->model, "a", 1, 0, out, 8, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "tokenize(out_count=NULL)");
    CHECK_STATUS(F.tokenize(c->model, "abc", 3, 0, NULL, 8, &count), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "tokenize(out_tokens=NULL, capacity=8)");
    CHECK(untouched(&count, sizeof count), "tokenize errors: out_count modified");

    char text[16];
    int32_t ids[2] = {0, (int32_t)c->info.vocab_size};
    size_t len;
    fill(text, sizeof text);
    fill(&len, sizeof len);
    CHECK_STATUS(F.detokenize(c->model, ids, 2, 0, text, sizeof text, &len), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenize(id = vocab_size)");
    ids[1] = -1;
    CHECK_STATUS(F.detokenize(c->model, ids, 2, 0, text, sizeof text, &len), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenize(id = -1)");
    CHECK_STATUS(F.detokenize(c->model, ids, 1, 0x80u, text, sizeof text, &len), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenize(unknown flags)");
    CHECK_STATUS(F.detokenize(c->model, NULL, 1, 0, text, sizeof text, &len), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenize(tokens=NULL, n=1)");
    CHECK_STATUS(F.detokenize(c->model, ids, 1, 0, text, sizeof text, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenize(out_len=NULL)");
    CHECK_STATUS(F.detokenize(c->model, ids, 1, 0, NULL, 4, &len), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenize(out_text=NULL, capacity=4)");
    CHECK(untouched(text, sizeof text) && untouched(&len, sizeof len), "detokenize errors: outputs modified");
}

static void test_detokenize(ctx *c) {
    refdata *r = &c->ref;
    size_t len = 0;
    char *t = detokenize(c, r->greedy, r->n_greedy, 0, &len);
    CHECK(t && len == r->greedy_text_len && memcmp(t, r->greedy_text, len) == 0,
          "detokenize(greedy) = \"%s\", want Hugging Face's \"%s\"", t ? t : "", r->greedy_text);
    CHECK(t && valid_utf8(t, len), "detokenize(greedy): not valid UTF-8");
    free(t);
    t = detokenize(c, r->greedy, r->n_greedy, FLAMINGO_DETOKENIZE_SKIP_SPECIAL, &len);
    CHECK(t && len == r->greedy_text_skip_len && memcmp(t, r->greedy_text_skip, len) == 0,
          "detokenize(greedy, SKIP_SPECIAL) = \"%s\", want \"%s\"", t ? t : "", r->greedy_text_skip);
    free(t);
    t = detokenize(c, NULL, 0, 0, &len);
    CHECK(t && len == 0 && t[0] == '\0', "detokenize(no tokens) is not \"\"");
    free(t);

    /* The snprintf rule: *out_len the full length, at most capacity bytes
     * written, NUL-terminated when capacity > 0. */
    const size_t L = r->greedy_text_len;
    char *buf = xmalloc(L + 16);
    const size_t caps[] = {0, 1, 5, L, L + 1, L + 16};
    for (size_t i = 0; i < sizeof caps / sizeof *caps; i++) {
        size_t cap = caps[i], got = (size_t)-1;
        char what[64];
        snprintf(what, sizeof what, "detokenize(capacity=%zu)", cap);
        fill(buf, L + 16);
        CHECK_STATUS(F.detokenize(c->model, r->greedy, r->n_greedy, 0, cap ? buf : NULL, cap, &got), FLAMINGO_OK,
                     what);
        CHECK(got == L, "%s: out_len %zu, want %zu", what, got, L);
        if (cap == 0) continue;
        size_t k = cap - 1 < L ? cap - 1 : L;
        CHECK(memcmp(buf, r->greedy_text, k) == 0 && buf[k] == '\0', "%s: not the first %zu bytes + NUL", what, k);
        CHECK(untouched(buf + cap, L + 16 - cap), "%s: wrote past capacity", what);
    }
    free(buf);
}

/* ---- streaming detokenizer ---------------------------------------------- */

/* Pushes ids one at a time; checks each piece is whole UTF-8 characters and
 * that the pieces concatenate to the full decode. `tail_ok`: the full decode
 * may have more at the end (tokens held back; the header has no flush). */
static void stream_equals_full(ctx *c, const int32_t *ids, size_t n, uint32_t flags, const char *what) {
    flamingo_detokenizer *d = NULL;
    flamingo_status st = F.detokenizer_init(c->model, flags, &d);
    CHECK_STATUS(st, FLAMINGO_OK, "detokenizer_init");
    if (st != FLAMINGO_OK) return;
    size_t cap = 1024, used = 0;
    char *acc = xmalloc(cap);
    int split = 0;
    for (size_t i = 0; i < n; i++) {
        char piece[64];
        size_t len = (size_t)-1;
        st = F.detokenizer_push(d, ids[i], piece, sizeof piece, &len);
        CHECK_STATUS(st, FLAMINGO_OK, what);
        if (st != FLAMINGO_OK) break;
        CHECK(len < sizeof piece && piece[len] == '\0', "%s: piece %zu not NUL-terminated", what, i);
        if (!valid_utf8(piece, len)) split = 1;
        if (used + len >= cap) {
            cap = 2 * (used + len) + 1;
            char *na = realloc(acc, cap);
            if (!na) { perror("realloc"); exit(2); }
            acc = na;
        }
        memcpy(acc + used, piece, len);
        used += len;
    }
    CHECK(!split, "%s: a piece is not whole UTF-8 characters", what);
    size_t flen = 0;
    char *full = detokenize(c, ids, n, flags, &flen);
    acc[used] = '\0';
    CHECK(full && used == flen && memcmp(acc, full, flen) == 0,
          "%s: the stream \"%s\" differs from the full decode \"%s\"", what, acc, full ? full : "");
    free(full);
    free(acc);
    F.detokenizer_free(d);
}

static void test_detokenizer(ctx *c) {
    refdata *r = &c->ref;
    stream_equals_full(c, r->ids, r->n_tokens, 0, "stream(prompt)");
    stream_equals_full(c, r->ids, r->n_tokens, FLAMINGO_DETOKENIZE_SKIP_SPECIAL, "stream(prompt, SKIP_SPECIAL)");
    /* Generated ids (llama_tiny's contain a run of byte tokens that is not
     * valid UTF-8) and a plain token after them, so nothing is held back. */
    int32_t *g = xmalloc((r->n_greedy + 1) * sizeof *g);
    memcpy(g, r->greedy, r->n_greedy * sizeof *g);
    g[r->n_greedy] = r->ids[r->n_tokens - 1];
    stream_equals_full(c, g, r->n_greedy + 1, 0, "stream(greedy ids + a plain token)");
    free(g);
    /* Multi-byte characters, tokenized without special tokens. */
    const char *text = "caf\xc3\xa9 na\xc3\xafve \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x90\xb1 \xe2\x80\x94 end";
    size_t m = 0;
    int32_t *ids = tokenize(c, text, strlen(text), 0, &m);
    if (ids) stream_equals_full(c, ids, m, 0, "stream(multi-byte text)");
    free(ids);

    /* "é" as the byte tokens <0xC3><0xA9>: the first byte alone is held
     * back, and "é" comes out whole (with <0xA9>, or later should the
     * detokenizer hold back a whole run of byte tokens). From <0xA9> on,
     * every token is first pushed with capacity 1: a piece of 1 byte or more
     * fails with BUFFER_TOO_SMALL, leaves out_len alone and does not consume
     * the token, so pushing it again with 64 bytes continues the stream,
     * which must still equal the full decode. */
    if (r->e_acute_index < 0) return;
    size_t e = (size_t)r->e_acute_index;
    flamingo_detokenizer *d = NULL;
    if (F.detokenizer_init(c->model, 0, &d) != FLAMINGO_OK) {
        CHECK(0, "detokenizer_init: %s", F.last_error());
        return;
    }
    char piece[64];
    size_t len = 0;
    size_t flen = 0;
    char *full = detokenize(c, r->ids, r->n_tokens, 0, &flen);
    buf_t acc = {0};
    for (size_t i = 0; i <= e; i++) {
        flamingo_status st = F.detokenizer_push(d, r->ids[i], piece, sizeof piece, &len);
        CHECK_STATUS(st, FLAMINGO_OK, "push (prompt up to <0xC3>)");
        if (st == FLAMINGO_OK) buf_add(&acc, piece, len);
    }
    CHECK(len == 0 && piece[0] == '\0', "push(<0xC3>) gave %zu bytes, want \"\" (half a character)", len);
    int too_small = 0, split = 0;
    for (size_t i = e + 1; i < r->n_tokens; i++) {
        size_t l2;
        fill(&l2, sizeof l2);
        flamingo_status st = F.detokenizer_push(d, r->ids[i], piece, 1, &l2);
        if (st == FLAMINGO_ERROR_BUFFER_TOO_SMALL) {
            too_small++;
            CHECK(untouched(&l2, sizeof l2), "push(capacity 1) BUFFER_TOO_SMALL: out_len set");
            CHECK(F.last_error()[0] != '\0', "push(capacity 1) BUFFER_TOO_SMALL: empty flamingo_last_error()");
            if (i == e + 1) { /* also capacity 0 (with a buffer) */
                CHECK_STATUS(F.detokenizer_push(d, r->ids[i], piece, 0, &l2), FLAMINGO_ERROR_BUFFER_TOO_SMALL,
                             "push(capacity 0)");
            }
            st = F.detokenizer_push(d, r->ids[i], piece, sizeof piece, &l2);
            CHECK_STATUS(st, FLAMINGO_OK, "push again after BUFFER_TOO_SMALL");
            if (st != FLAMINGO_OK) break;
            CHECK(l2 >= 1, "push needed more than capacity 1 but returned %zu bytes", l2);
        } else {
            CHECK_STATUS(st, FLAMINGO_OK, "push(capacity 1)");
            if (st != FLAMINGO_OK) break;
            CHECK(l2 == 0 && piece[0] == '\0', "push(capacity 1) returned %zu bytes", l2);
        }
        if (!valid_utf8(piece, l2)) split = 1;
        buf_add(&acc, piece, l2);
    }
    CHECK(too_small > 0, "no push from <0xA9> on needed more than capacity 1");
    CHECK(!split, "a piece after \"\xc3\" is not whole UTF-8 characters");
    CHECK(full && acc.len == flen && memcmp(acc.p, full, flen) == 0,
          "the stream with BUFFER_TOO_SMALL retries \"%s\" differs from the full decode \"%s\"", acc.p ? acc.p : "",
          full ? full : "");
    CHECK(acc.p && strstr(acc.p, "caf\xc3\xa9") != NULL, "the stream has no \"caf\xc3\xa9\"");
    free(acc.p);
    free(full);
    fill(&len, sizeof len);
    CHECK_STATUS(F.detokenizer_push(d, (int32_t)c->info.vocab_size, piece, sizeof piece, &len),
                 FLAMINGO_ERROR_INVALID_ARGUMENT, "push(id = vocab_size)");
    CHECK_STATUS(F.detokenizer_push(d, 0, NULL, 8, &len), FLAMINGO_ERROR_INVALID_ARGUMENT, "push(out_text=NULL)");
    CHECK_STATUS(F.detokenizer_push(d, 0, piece, sizeof piece, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "push(out_len=NULL)");
    CHECK(untouched(&len, sizeof len), "push errors: out_len set");
    F.detokenizer_free(d);

    flamingo_detokenizer *d2 = (flamingo_detokenizer *)(uintptr_t)0xA5A5A5A5u;
    CHECK_STATUS(F.detokenizer_init(c->model, 0x80u, &d2), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenizer_init(unknown flags)");
    CHECK(d2 == (flamingo_detokenizer *)(uintptr_t)0xA5A5A5A5u, "detokenizer_init(unknown flags): out modified");
    CHECK_STATUS(F.detokenizer_init(c->model, 0, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "detokenizer_init(out=NULL)");
}

/* ---- media and prompts -------------------------------------------------- */

#define PROMPT2 "<image>Output:a photo<|endofchunk|>\n<image>Output:"

/* The two test images as each media kind; buffers owned by `hold`. */
enum { K_FILE, K_ENCODED, K_RGB, K_PIXELS, K_VISUAL, N_KINDS };
static const char *const KIND_NAMES[N_KINDS] = {"FILE", "ENCODED", "RGB", "PIXELS", "VISUAL_TOKENS"};

typedef struct {
    char path[2][2048];
    void *encoded[2];
    size_t encoded_len[2];
    float *pixels[2], *visual[2];
    flamingo_media m[N_KINDS][2];
    int ok;
} media_set;

static void make_media(ctx *c, media_set *ms) {
    memset(ms, 0, sizeof *ms);
    ms->ok = 1;
    for (int k = 0; k < 2; k++) {
        image_path(c, IMAGE_FILES[k], ms->path[k], sizeof ms->path[k]);
        ms->encoded[k] = read_file(ms->path[k], &ms->encoded_len[k]);
        if (!ms->encoded[k] || !c->ref.rgb[k]) {
            CHECK(0, "%s or its decoded golden is missing", ms->path[k]);
            ms->ok = 0;
            return;
        }
        ms->m[K_FILE][k] = media_file(ms->path[k]);
        ms->m[K_ENCODED][k] = media_data(FLAMINGO_MEDIA_ENCODED, ms->encoded[k], ms->encoded_len[k]);
        ms->m[K_RGB][k] = media_data(FLAMINGO_MEDIA_RGB, c->ref.rgb[k], c->ref.rgb_w[k] * c->ref.rgb_h[k] * 3);
        ms->m[K_RGB][k].width = (uint32_t)c->ref.rgb_w[k];
        ms->m[K_RGB][k].height = (uint32_t)c->ref.rgb_h[k];
        ms->m[K_RGB][k].channels = 3;
        ms->pixels[k] = xmalloc(c->image_floats * sizeof(float));
        ms->visual[k] = xmalloc(c->media_floats * sizeof(float));
        flamingo_status st = F.model_preprocess_image(c->model, &ms->m[K_FILE][k], ms->pixels[k], c->image_floats);
        CHECK_STATUS(st, FLAMINGO_OK, "model_preprocess_image(FILE)");
        if (st == FLAMINGO_OK) {
            st = F.model_encode_images(c->model, ms->pixels[k], 1, ms->visual[k], c->media_floats);
            CHECK_STATUS(st, FLAMINGO_OK, "model_encode_images");
        }
        if (st != FLAMINGO_OK) ms->ok = 0;
        ms->m[K_PIXELS][k] = media_data(FLAMINGO_MEDIA_PIXELS, ms->pixels[k], c->image_floats);
        ms->m[K_VISUAL][k] = media_data(FLAMINGO_MEDIA_VISUAL_TOKENS, ms->visual[k], c->media_floats);
    }
}

static void free_media(media_set *ms) {
    for (int k = 0; k < 2; k++) {
        free(ms->encoded[k]);
        free(ms->pixels[k]);
        free(ms->visual[k]);
    }
}

static void test_preprocess(ctx *c, media_set *ms) {
    float *a = xmalloc(c->image_floats * sizeof(float));
    for (int k = 0; k < 2; k++) {
        for (int kind = K_ENCODED; kind <= K_RGB; kind++) {
            char what[96];
            snprintf(what, sizeof what, "model_preprocess_image(%s, %s)", KIND_NAMES[kind], IMAGE_FILES[k]);
            fill(a, c->image_floats * sizeof(float));
            CHECK_STATUS(F.model_preprocess_image(c->model, &ms->m[kind][k], a, c->image_floats), FLAMINGO_OK, what);
            CHECK(memcmp(a, ms->pixels[k], c->image_floats * sizeof(float)) == 0, "%s: pixels differ from FILE", what);
        }
    }
    /* BUFFER_TOO_SMALL, a non-image kind, bad struct_size and RGB fields. */
    fill(a, c->image_floats * sizeof(float));
    CHECK_STATUS(F.model_preprocess_image(c->model, &ms->m[K_FILE][0], a, c->image_floats - 1),
                 FLAMINGO_ERROR_BUFFER_TOO_SMALL, "model_preprocess_image(out_count too small)");
    CHECK_STATUS(F.model_preprocess_image(c->model, &ms->m[K_PIXELS][0], a, c->image_floats),
                 FLAMINGO_ERROR_INVALID_ARGUMENT, "model_preprocess_image(PIXELS)");
    CHECK_STATUS(F.model_preprocess_image(c->model, &ms->m[K_VISUAL][0], a, c->image_floats),
                 FLAMINGO_ERROR_INVALID_ARGUMENT, "model_preprocess_image(VISUAL_TOKENS)");
    flamingo_media m = ms->m[K_FILE][0];
    m.kind = 99;
    CHECK_STATUS(F.model_preprocess_image(c->model, &m, a, c->image_floats), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_preprocess_image(kind 99)");
    m = ms->m[K_FILE][0];
    m.struct_size = 8;
    CHECK_STATUS(F.model_preprocess_image(c->model, &m, a, c->image_floats), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_preprocess_image(struct_size 8)");
    m = ms->m[K_RGB][0];
    m.channels = 2;
    CHECK_STATUS(F.model_preprocess_image(c->model, &m, a, c->image_floats), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_preprocess_image(RGB, 2 channels)");
    m = ms->m[K_RGB][0];
    m.size -= 1;
    CHECK_STATUS(F.model_preprocess_image(c->model, &m, a, c->image_floats), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_preprocess_image(RGB, size one short)");
    m = ms->m[K_FILE][0];
    m.path = NULL;
    CHECK_STATUS(F.model_preprocess_image(c->model, &m, a, c->image_floats), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_preprocess_image(FILE, path NULL)");
    CHECK_STATUS(F.model_preprocess_image(c->model, NULL, a, c->image_floats), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_preprocess_image(image NULL)");
    CHECK_STATUS(F.model_preprocess_image(c->model, &ms->m[K_FILE][0], NULL, c->image_floats),
                 FLAMINGO_ERROR_INVALID_ARGUMENT, "model_preprocess_image(out NULL)");
    CHECK(untouched(a, c->image_floats * sizeof(float)), "model_preprocess_image errors: out_pixels modified");
    free(a);
}

/* set_prompt(PROMPT2) with the two images as `media` (stride `stride`);
 * returns the last logits (malloc'd) and the length, NULL on error. */
static float *prompt_logits(ctx *c, const void *media, size_t *len, flamingo_session **keep) {
    flamingo_session *s = new_session(c);
    if (!s) return NULL;
    float *lg = xmalloc(c->info.vocab_size * sizeof(float));
    flamingo_status st = F.session_set_prompt(s, PROMPT2, media, 2, lg, c->info.vocab_size);
    CHECK_STATUS(st, FLAMINGO_OK, "session_set_prompt");
    *len = session_len(s);
    if (keep) *keep = s;
    else F.session_free(s);
    if (st != FLAMINGO_OK) {
        free(lg);
        return NULL;
    }
    return lg;
}

static void test_set_prompt_kinds(ctx *c, media_set *ms) {
    const size_t V = c->info.vocab_size;
    size_t len0 = 0;
    flamingo_session *s0 = NULL;
    float *want = prompt_logits(c, ms->m[K_FILE], &len0, &s0);
    if (!want) return;
    flamingo_generate_params p = gparams(6);
    int32_t want_tok[8], got_tok[8];
    size_t want_n = 0, got_n = 0;
    CHECK_STATUS(F.session_generate(s0, &p, want_tok, 8, &want_n, NULL), FLAMINGO_OK, "generate after set_prompt");
    for (int kind = K_ENCODED; kind < N_KINDS; kind++) {
        size_t len = 0;
        flamingo_session *s = NULL;
        float *got = prompt_logits(c, ms->m[kind], &len, &s);
        CHECK(got && len == len0 && memcmp(got, want, V * sizeof(float)) == 0,
              "set_prompt with %s media: logits differ from FILE", KIND_NAMES[kind]);
        if (s) {
            CHECK_STATUS(F.session_generate(s, &p, got_tok, 8, &got_n, NULL), FLAMINGO_OK, "generate");
            CHECK(got_n == want_n && memcmp(got_tok, want_tok, got_n * sizeof *got_tok) == 0,
                  "set_prompt with %s media: generation differs from FILE", KIND_NAMES[kind]);
            F.session_free(s);
        }
        free(got);
    }
    /* Mixed kinds in one prompt. */
    flamingo_media mixed[2] = {ms->m[K_RGB][0], ms->m[K_VISUAL][1]};
    size_t len = 0;
    float *got = prompt_logits(c, mixed, &len, NULL);
    CHECK(got && memcmp(got, want, V * sizeof(float)) == 0, "set_prompt with RGB + VISUAL_TOKENS: logits differ");
    free(got);

    /* The stride is media[0].struct_size: larger structs (a newer caller)
     * with garbage after the known fields give the same result. */
    struct bigger {
        flamingo_media m;
        unsigned char tail[40];
    } big[2];
    for (int k = 0; k < 2; k++) {
        fill(&big[k], sizeof big[k]);
        big[k].m = ms->m[K_FILE][k];
        big[k].m.struct_size = sizeof big[k];
    }
    got = prompt_logits(c, big, &len, NULL);
    CHECK(got && len == len0 && memcmp(got, want, V * sizeof(float)) == 0,
          "set_prompt with media stride %zu: logits differ", sizeof big[0]);
    free(got);
    /* And a struct_size below the first version is rejected. */
    flamingo_media tiny[2] = {ms->m[K_FILE][0], ms->m[K_FILE][1]};
    tiny[0].struct_size = 8;
    flamingo_session *s = new_session(c);
    if (s) {
        CHECK_STATUS(F.session_set_prompt(s, PROMPT2, tiny, 2, NULL, 0), FLAMINGO_ERROR_INVALID_ARGUMENT,
                     "set_prompt(media[0].struct_size 8)");
        F.session_free(s);
    }
    F.session_free(s0);
    free(want);
}

static void test_set_prompt_reference(ctx *c) {
    refdata *r = &c->ref;
    if (!c->info.vocab_size || r->n_images > 8) return;
    flamingo_media m[8];
    for (size_t k = 0; k < r->n_images; k++)
        m[k] = media_data(FLAMINGO_MEDIA_PIXELS, r->pixels + k * c->image_floats, c->image_floats);
    flamingo_session *s = new_session(c);
    if (!s) return;
    CHECK_STATUS(F.session_set_prompt(s, r->prompt, m, r->n_images, NULL, 0), FLAMINGO_OK,
                 "set_prompt(reference prompt, PIXELS)");
    CHECK(session_len(s) == r->n_tokens, "set_prompt(reference prompt): %zu tokens, want %zu", session_len(s),
          r->n_tokens);
    flamingo_generate_params p = gparams((uint32_t)r->n_greedy);
    int32_t out[64];
    size_t n = 0;
    CHECK_STATUS(F.session_generate(s, &p, out, 64, &n, NULL), FLAMINGO_OK, "generate after the reference prompt");
    CHECK(n == r->n_greedy && memcmp(out, r->greedy, n * sizeof *out) == 0,
          "set_prompt(reference prompt): greedy continuation differs from the reference");
    F.session_free(s);
}

/* Checks an erroring set_prompt leaves `s` as it was: same length, logits
 * buffer untouched, and the same continuation as a fresh session. */
static void expect_prompt_error(ctx *c, flamingo_session *s, const char *prompt, const flamingo_media *m, size_t n,
                                flamingo_status want, flamingo_status also_ok, const char *what) {
    const size_t V = c->info.vocab_size;
    size_t before = session_len(s);
    float *lg = xmalloc(V * sizeof(float));
    fill(lg, V * sizeof(float));
    flamingo_status st = F.session_set_prompt(s, prompt, m, n, lg, V);
    if (also_ok != FLAMINGO_OK && st == also_ok) want = also_ok;
    CHECK_STATUS(st, want, what);
    CHECK(untouched(lg, V * sizeof(float)), "%s: logits written on error", what);
    CHECK(session_len(s) == before, "%s: session length %zu, was %zu", what, session_len(s), before);
    free(lg);
}

static void test_set_prompt_errors(ctx *c, media_set *ms) {
    flamingo_session *s = new_session(c);
    if (!s) return;
    CHECK_STATUS(F.session_set_prompt(s, "<image>Output:", ms->m[K_FILE], 1, NULL, 0), FLAMINGO_OK,
                 "set_prompt(one image)");
    flamingo_generate_params p = gparams(5);

    /* Marker count different from n_media. */
    expect_prompt_error(c, s, PROMPT2, ms->m[K_FILE], 1, FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK,
                        "set_prompt(2 markers, 1 media)");
    flamingo_media three[3] = {ms->m[K_FILE][0], ms->m[K_FILE][1], ms->m[K_FILE][0]};
    expect_prompt_error(c, s, PROMPT2, three, 3, FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK,
                        "set_prompt(2 markers, 3 media)");
    expect_prompt_error(c, s, "no marker", ms->m[K_FILE], 1, FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK,
                        "set_prompt(0 markers, 1 media)");
    expect_prompt_error(c, s, "<image>", NULL, 0, FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK,
                        "set_prompt(1 marker, 0 media)");
    if (c->ref.extra_markers_prompt)
        expect_prompt_error(c, s, c->ref.extra_markers_prompt, ms->m[K_FILE], 2, FLAMINGO_ERROR_INVALID_ARGUMENT,
                            FLAMINGO_OK, "set_prompt(reference extra_markers: 3 markers, 2 media)");
    /* Other bad arguments. */
    expect_prompt_error(c, s, "<image>\xff", ms->m[K_FILE], 1, FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK,
                        "set_prompt(invalid UTF-8)");
    expect_prompt_error(c, s, "<image>", NULL, 1, FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK,
                        "set_prompt(media NULL, n_media 1)");
    flamingo_media bad = ms->m[K_PIXELS][0];
    bad.size -= 1;
    expect_prompt_error(c, s, "<image>", &bad, 1, FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK,
                        "set_prompt(PIXELS, size one short)");
    bad = ms->m[K_VISUAL][0];
    bad.size += 1;
    expect_prompt_error(c, s, "<image>", &bad, 1, FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK,
                        "set_prompt(VISUAL_TOKENS, size one long)");
    bad = ms->m[K_FILE][0];
    bad.kind = 99;
    expect_prompt_error(c, s, "<image>", &bad, 1, FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK,
                        "set_prompt(kind 99)");
    CHECK_STATUS(F.session_set_prompt(s, NULL, NULL, 0, NULL, 0), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "set_prompt(prompt NULL)");
    {
        float lg[4];
        fill(lg, sizeof lg);
        size_t before = session_len(s);
        CHECK_STATUS(F.session_set_prompt(s, "<image>Output:", ms->m[K_FILE], 1, lg, 4),
                     FLAMINGO_ERROR_BUFFER_TOO_SMALL, "set_prompt(logits_count 4)");
        CHECK(untouched(lg, sizeof lg) && session_len(s) == before, "set_prompt(logits_count 4): changed something");
    }

    /* Broken, unsupported and missing images, as FILE and as ENCODED. */
    static const struct { const char *name; flamingo_status want; } bads[] = {
        {"bad/truncated.jpg", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/truncated.png", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/truncated_progressive.jpg", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/no_eoi.jpg", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/bad_crc.png", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/bad_idat.png", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/bad_huffman.jpg", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/garbage.bin", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/text.jpg", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/signature_only.png", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/zero_height.jpg", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/zero_width.png", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/empty.jpg", FLAMINGO_ERROR_INVALID_FORMAT},
        {"bad/huge.jpg", FLAMINGO_ERROR_UNSUPPORTED},
        {"bad/huge.png", FLAMINGO_ERROR_UNSUPPORTED},
        {"bad/image.gif", FLAMINGO_ERROR_UNSUPPORTED},
        {"bad/no-such-file.jpg", FLAMINGO_ERROR_IO},
    };
    float *px = xmalloc(c->image_floats * sizeof(float));
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
        char path[2048], what[256];
        image_path(c, bads[i].name, path, sizeof path);
        flamingo_media two[2] = {ms->m[K_FILE][0], media_file(path)};
        snprintf(what, sizeof what, "set_prompt(FILE %s)", bads[i].name);
        expect_prompt_error(c, s, PROMPT2, two, 2, bads[i].want, FLAMINGO_OK, what);
        snprintf(what, sizeof what, "model_preprocess_image(FILE %s)", bads[i].name);
        fill(px, c->image_floats * sizeof(float));
        CHECK_STATUS(F.model_preprocess_image(c->model, &two[1], px, c->image_floats), bads[i].want, what);
        CHECK(untouched(px, c->image_floats * sizeof(float)), "%s: out_pixels modified", what);
        if (bads[i].want == FLAMINGO_ERROR_IO) continue;
        size_t n = 0;
        void *bytes = read_file(path, &n);
        if (!bytes) {
            CHECK(0, "%s is missing", path);
            continue;
        }
        two[1] = media_data(FLAMINGO_MEDIA_ENCODED, bytes, n);
        /* ENCODED with size 0 is a bad item field: INVALID_ARGUMENT is fine too. */
        flamingo_status also = n == 0 ? FLAMINGO_ERROR_INVALID_ARGUMENT : FLAMINGO_OK;
        snprintf(what, sizeof what, "set_prompt(ENCODED %s)", bads[i].name);
        expect_prompt_error(c, s, PROMPT2, two, 2, bads[i].want, also, what);
        snprintf(what, sizeof what, "model_preprocess_image(ENCODED %s)", bads[i].name);
        flamingo_status st = F.model_preprocess_image(c->model, &two[1], px, c->image_floats);
        CHECK(st == bads[i].want || (also != FLAMINGO_OK && st == also), "%s: got %s, want %s", what, sname(st),
              sname(bads[i].want));
        free(bytes);
    }
    free(px);

    /* After all that the session still continues its first prompt exactly
     * as a fresh one does. */
    flamingo_session *fresh = new_session(c);
    if (fresh) {
        int32_t a[8], b[8];
        size_t na = 0, nb = 0;
        CHECK_STATUS(F.session_set_prompt(fresh, "<image>Output:", ms->m[K_FILE], 1, NULL, 0), FLAMINGO_OK,
                     "set_prompt(fresh)");
        CHECK_STATUS(F.session_generate(s, &p, a, 8, &na, NULL), FLAMINGO_OK, "generate after errors");
        CHECK_STATUS(F.session_generate(fresh, &p, b, 8, &nb, NULL), FLAMINGO_OK, "generate (fresh)");
        CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0, "failed set_prompt calls changed the session");
        F.session_free(fresh);
    }

    /* A prompt longer than the context. */
    flamingo_session_params sp = {sizeof sp, 4};
    flamingo_session *shortctx = NULL;
    if (F.session_init(c->model, &sp, &shortctx) == FLAMINGO_OK) {
        expect_prompt_error(c, shortctx, "<image>Output: a prompt that does not fit in four tokens", ms->m[K_FILE], 1,
                            FLAMINGO_ERROR_INVALID_ARGUMENT, FLAMINGO_OK, "set_prompt(longer than n_ctx)");
        F.session_free(shortctx);
    }
    F.session_free(s);
}

/* ---- batch generation --------------------------------------------------- */

static void test_batch(ctx *c, media_set *ms) {
    static const char *const prompts[3] = {PROMPT2, "<image>Output:", "<image>Question:What is it? Short answer:"};
    const size_t n_img[3] = {2, 1, 1};
    const flamingo_media *media[3] = {ms->m[K_FILE], &ms->m[K_ENCODED][1], &ms->m[K_RGB][0]};
    enum { MAXN = 10 };
    for (int mode = 0; mode < 3; mode++) {
        flamingo_generate_params p = gparams(MAXN);
        p.stop_at_endofchunk = 0;
        p.stop_at_eos = 0;
        const char *mname = mode == 0 ? "greedy" : mode == 1 ? "beam 3" : "sampling";
        if (mode == 1) { p.num_beams = 3; p.length_penalty = 0.0f; }
        if (mode == 2) { p.do_sample = 1; p.top_k = 5; p.seed = 11; }
        int32_t alone[3][MAXN];
        size_t alone_n[3];
        flamingo_stop_reason alone_r[3];
        flamingo_session *s[3];
        size_t lens[3];
        for (int i = 0; i < 3; i++) {
            flamingo_session *a = new_session(c);
            s[i] = new_session(c);
            if (!a || !s[i]) return;
            CHECK_STATUS(F.session_set_prompt(a, prompts[i], media[i], n_img[i], NULL, 0), FLAMINGO_OK, "set_prompt");
            CHECK_STATUS(F.session_set_prompt(s[i], prompts[i], media[i], n_img[i], NULL, 0), FLAMINGO_OK,
                         "set_prompt");
            lens[i] = session_len(s[i]);
            flamingo_generate_params pi = p;
            pi.seed = p.seed + (uint64_t)i; /* batch: session i uses seed + i */
            CHECK_STATUS(F.session_generate(a, &pi, alone[i], MAXN, &alone_n[i], &alone_r[i]), FLAMINGO_OK,
                         "generate alone");
            F.session_free(a);
        }
        int32_t out[3 * MAXN];
        size_t counts[3];
        flamingo_stop_reason reasons[3];
        fill(out, sizeof out);
        CHECK_STATUS(F.batch_generate(s, 3, &p, out, MAXN, counts, reasons), FLAMINGO_OK, "batch_generate");
        for (int i = 0; i < 3; i++) {
            CHECK(counts[i] == alone_n[i] && memcmp(out + i * MAXN, alone[i], counts[i] * sizeof *out) == 0,
                  "batch_generate (%s): session %d differs from generating it alone", mname, i);
            CHECK(reasons[i] == alone_r[i], "batch_generate (%s): session %d stop reason %d, alone %d", mname, i,
                  (int)reasons[i], (int)alone_r[i]);
            CHECK(session_len(s[i]) == lens[i] + counts[i], "batch_generate (%s): session %d holds %zu tokens", mname,
                  i, session_len(s[i]));
        }
        /* Two of them, in the other order, continue further (out_reasons NULL). */
        flamingo_session *two[2] = {s[2], s[0]};
        p.max_new_tokens = 3;
        CHECK_STATUS(F.batch_generate(two, 2, &p, out, 3, counts, NULL), FLAMINGO_OK, "batch_generate (continue)");
        for (int i = 0; i < 3; i++) F.session_free(s[i]);
    }

    /* The reference's two-row batch: 8 greedy steps per row. */
    refdata *r = &c->ref;
    if (r->batch_greedy) {
        flamingo_session *s[2];
        for (int i = 0; i < 2; i++) {
            flamingo_media m[8];
            for (size_t k = 0; k < r->batch_images[i] && k < 8; k++)
                m[k] = media_data(FLAMINGO_MEDIA_PIXELS,
                                  r->batch_pixels + ((size_t)i * r->batch_max_images + k) * c->image_floats,
                                  c->image_floats);
            s[i] = new_session(c);
            if (!s[i]) return;
            CHECK_STATUS(F.session_set_prompt(s[i], r->batch_prompt[i], m, r->batch_images[i], NULL, 0), FLAMINGO_OK,
                         "set_prompt(reference batch row)");
        }
        flamingo_generate_params p = gparams((uint32_t)r->batch_steps);
        p.stop_at_endofchunk = 0;
        p.stop_at_eos = 0;
        int32_t *out = xmalloc(2 * r->batch_steps * sizeof *out);
        size_t counts[2];
        flamingo_stop_reason reasons[2];
        CHECK_STATUS(F.batch_generate(s, 2, &p, out, r->batch_steps, counts, reasons), FLAMINGO_OK,
                     "batch_generate(reference batch)");
        CHECK(counts[0] == r->batch_steps && counts[1] == r->batch_steps &&
                  memcmp(out, r->batch_greedy, 2 * r->batch_steps * sizeof *out) == 0,
              "batch_generate(reference batch): ids differ from the reference");
        CHECK(reasons[0] == FLAMINGO_STOP_MAX_TOKENS && reasons[1] == FLAMINGO_STOP_MAX_TOKENS,
              "batch_generate(reference batch): stop reasons %d %d", (int)reasons[0], (int)reasons[1]);
        free(out);
        F.session_free(s[0]);
        F.session_free(s[1]);
    }

    /* Errors: every session unchanged, outputs untouched. */
    flamingo_session *a = new_session(c), *b = new_session(c);
    if (!a || !b) return;
    CHECK_STATUS(F.session_set_prompt(a, "<image>Output:", ms->m[K_FILE], 1, NULL, 0), FLAMINGO_OK, "set_prompt");
    size_t la = session_len(a);
    flamingo_generate_params p = gparams(4);
    int32_t out[16];
    size_t counts[2];
    flamingo_stop_reason reasons[2];
    fill(out, sizeof out);
    fill(counts, sizeof counts);
    fill(reasons, sizeof reasons);
    flamingo_session *ab[2] = {a, b}, *aa[2] = {a, a}, *an[2] = {a, NULL};
    CHECK_STATUS(F.batch_generate(ab, 2, &p, out, 4, counts, reasons), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(a session with nothing evaluated)");
    CHECK_STATUS(F.batch_generate(aa, 2, &p, out, 4, counts, reasons), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(the same session twice)");
    CHECK_STATUS(F.batch_generate(an, 2, &p, out, 4, counts, reasons), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(a NULL session)");
    CHECK_STATUS(F.batch_generate(ab, 0, &p, out, 4, counts, reasons), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(n_sessions 0)");
    CHECK_STATUS(F.batch_generate(ab, 1, &p, out, 3, counts, reasons), FLAMINGO_ERROR_BUFFER_TOO_SMALL,
                 "batch_generate(capacity < max_new_tokens)");
    CHECK_STATUS(F.batch_generate(ab, 1, &p, NULL, 4, counts, reasons), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(out_tokens NULL)");
    CHECK_STATUS(F.batch_generate(ab, 1, &p, out, 4, NULL, reasons), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(out_counts NULL)");
    flamingo_generate_params bad = p;
    bad.num_beams = 0;
    CHECK_STATUS(F.batch_generate(ab, 1, &bad, out, 4, counts, reasons), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(num_beams 0)");
    bad = p;
    bad.struct_size = 4;
    CHECK_STATUS(F.batch_generate(ab, 1, &bad, out, 4, counts, reasons), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "batch_generate(struct_size 4)");
    CHECK(untouched(out, sizeof out) && untouched(counts, sizeof counts) && untouched(reasons, sizeof reasons),
          "batch_generate errors: outputs modified");
    CHECK(session_len(a) == la && session_len(b) == 0, "batch_generate errors: sessions changed");
    /* The other session of another model is rejected too. */
    flamingo_model *other = NULL;
    if (F.model_load(current_fixture, NULL, &other) == FLAMINGO_OK) {
        flamingo_session *o = NULL;
        if (F.session_init(other, NULL, &o) == FLAMINGO_OK) {
            CHECK_STATUS(F.session_set_prompt(o, "<image>Output:", ms->m[K_FILE], 1, NULL, 0), FLAMINGO_OK,
                         "set_prompt (other model)");
            flamingo_session *ao[2] = {a, o};
            CHECK_STATUS(F.batch_generate(ao, 2, &p, out, 4, counts, reasons), FLAMINGO_ERROR_INVALID_ARGUMENT,
                         "batch_generate(sessions of two models)");
            F.session_free(o);
        }
        F.model_free(other);
    }
    /* params NULL: the defaults (max_new_tokens 20) need capacity 20. */
    CHECK_STATUS(F.batch_generate(ab, 1, NULL, out, 16, counts, NULL), FLAMINGO_ERROR_BUFFER_TOO_SMALL,
                 "batch_generate(params NULL, capacity 16)");
    CHECK(session_len(a) == la, "batch_generate(params NULL, capacity 16): session changed");
    F.session_free(a);
    F.session_free(b);
}

/* ---- driver ------------------------------------------------------------- */

static void test_fixture(const char *dir, const char *refdir, const char *images) {
    ctx c;
    memset(&c, 0, sizeof c);
    current_fixture = dir;
    c.images = images;
    load_ref(refdir, &c.ref);
    flamingo_status st = F.model_load(dir, NULL, &c.model);
    CHECK_STATUS(st, FLAMINGO_OK, "model_load");
    if (st != FLAMINGO_OK) { free_ref(&c.ref); return; }
    c.info.struct_size = sizeof c.info;
    st = F.model_get_info(c.model, &c.info);
    CHECK_STATUS(st, FLAMINGO_OK, "model_get_info");
    if (st == FLAMINGO_OK) {
        c.image_floats = 3 * (size_t)c.info.image_size * c.info.image_size;
        c.media_floats = (size_t)c.info.num_latents * c.info.visual_dim;
        test_tokenize(&c);
        test_tokenize_errors(&c);
        test_detokenize(&c);
        test_detokenizer(&c);
        test_set_prompt_reference(&c);
        media_set ms;
        make_media(&c, &ms);
        if (ms.ok) {
            test_preprocess(&c, &ms);
            test_set_prompt_kinds(&c, &ms);
            test_set_prompt_errors(&c, &ms);
            test_batch(&c, &ms);
        }
        free_media(&ms);
    }
    F.model_free(c.model);
    free_ref(&c.ref);
    current_fixture = "";
}


int main(int argc, char **argv) {
    if (argc != 2 && argc != 5) {
        fprintf(stderr, "usage: %s LIBRARY [MODEL_DIR REFERENCE_DIR IMAGES_DIR]\n", argv[0]);
        return 2;
    }
    void *lib = open_api(argv[1], "capi-text");
    if (!lib) return 1;
    F.log_set_level(FLAMINGO_LOG_ERROR);

    test_null_handles();
    if (argc == 5) test_fixture(argv[2], argv[3], argv[4]);

    if (dlclose(lib) != 0) fprintf(stderr, "note: dlclose: %s\n", dlerror());
    printf("capi-text: %d passed, %d failed\n", n_passed, n_failed);
    return n_failed == 0 ? 0 : 1;
}
