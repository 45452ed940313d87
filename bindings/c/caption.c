/* libflamingo example: captions an image through the whole path.
 *
 *   cc caption.c $(pkg-config --cflags --libs flamingo) -o caption
 *   ./caption MODEL_DIR IMAGE [SHOT_IMAGE=CAPTION ...]
 *
 * 1. decode + preprocess every image (flamingo_model_preprocess_image: JPEG or
 *    PNG, EXIF orientation, CLIP resize / crop / normalisation);
 * 2. encode them into visual tokens in one call (flamingo_model_encode_images);
 * 3. build OpenFlamingo's captioning prompt: one
 *    "<image>Output:CAPTION<|endofchunk|>" per few-shot pair (each argument
 *    SHOT_IMAGE=CAPTION is split at its first '='), joined with "\n", then
 *    "<image>Output:" for IMAGE; evaluate it with the visual tokens as media
 *    (flamingo_session_set_prompt, FLAMINGO_MEDIA_VISUAL_TOKENS);
 * 4. generate with beam search (3 beams, length_penalty 0, at most 20 new
 *    tokens, stopping at <|endofchunk|>) (flamingo_session_generate);
 * 5. turn the tokens into text with the streaming detokenizer (special
 *    tokens skipped), fed from the token callback; what the last tokens
 *    still hold back (an incomplete UTF-8 sequence, U+FFFD in a full decode)
 *    is taken from a full decode at the end, as the header has no flush;
 * 6. post-process as OpenFlamingo: cut at the first "Output", remove '"',
 *    strip whitespace (the characters Python's str.strip() removes).
 *
 * Prints the caption and a newline: byte-for-byte what
 * `python -m flamingo caption MODEL_DIR IMAGE ...` and
 * `cargo run --example caption -- MODEL_DIR IMAGE ...` print (compare.sh).
 * On a failed call prints "error: <status string>: <message>" to stderr and
 * exits with status 1; bad usage exits with status 2.
 */
#include <flamingo.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUM_BEAMS 3
#define LENGTH_PENALTY 0.0f
#define MAX_NEW_TOKENS 20

static int fail(flamingo_status st) {
    fflush(stdout);
    fprintf(stderr, "error: %s: %s\n", flamingo_status_string(st), flamingo_last_error());
    return 1;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* ---- a growable byte string --------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = 2 * (b->len + n + 1);
        char *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* ---- streaming detokenization from the token callback -------------------- */

typedef struct {
    flamingo_detokenizer *detok;
    buf text;               /* everything the detokenizer returned */
    int32_t tokens[MAX_NEW_TOKENS];
    size_t n_tokens;
    char *piece;            /* push buffer; grown on BUFFER_TOO_SMALL */
    size_t piece_cap;
    flamingo_status error;  /* a failed push stops generation */
} stream;

static flamingo_status stream_push(stream *s, int32_t token) {
    for (;;) {
        size_t len = 0;
        flamingo_status st = flamingo_detokenizer_push(s->detok, token, s->piece, s->piece_cap, &len);
        if (st == FLAMINGO_ERROR_BUFFER_TOO_SMALL && s->piece_cap < ((size_t)1 << 24)) {
            /* The token was not consumed: push it again with more room. */
            free(s->piece);
            s->piece_cap *= 2;
            s->piece = xmalloc(s->piece_cap);
            continue;
        }
        if (st != FLAMINGO_OK) return st;
        buf_add(&s->text, s->piece, len);
        if (s->n_tokens < MAX_NEW_TOKENS) s->tokens[s->n_tokens] = token;
        s->n_tokens++;
        return FLAMINGO_OK;
    }
}

static int32_t on_token(int32_t token, void *user_data) {
    stream *s = user_data;
    flamingo_status st = stream_push(s, token);
    if (st != FLAMINGO_OK) {
        s->error = st;
        return 1; /* stop */
    }
    return 0;
}

/* Appends what the detokenizer still holds back: the rest of the full
 * decode, provided the stream is a prefix of it. */
static flamingo_status stream_finish(const flamingo_model *model, stream *s) {
    size_t n = s->n_tokens < MAX_NEW_TOKENS ? s->n_tokens : MAX_NEW_TOKENS;
    if (n == 0) return FLAMINGO_OK;
    size_t full_len = 0;
    flamingo_status st = flamingo_detokenize(model, s->tokens, n, FLAMINGO_DETOKENIZE_SKIP_SPECIAL, NULL, 0,
                                             &full_len);
    if (st != FLAMINGO_OK) return st;
    char *full = xmalloc(full_len + 1);
    st = flamingo_detokenize(model, s->tokens, n, FLAMINGO_DETOKENIZE_SKIP_SPECIAL, full, full_len + 1, &full_len);
    if (st == FLAMINGO_OK && full_len >= s->text.len && memcmp(full, s->text.p, s->text.len) == 0)
        buf_add(&s->text, full + s->text.len, full_len - s->text.len);
    free(full);
    return st;
}

/* ---- OpenFlamingo's post-processing -------------------------------------- */

/* The code point at s[i..n) and its length (1 for a byte that does not
 * start a valid sequence). */
static uint32_t decode_at(const unsigned char *s, size_t i, size_t n, size_t *len) {
    unsigned c = s[i];
    size_t l = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    if (i + l > n) l = 1;
    uint32_t cp = l == 1 ? c : l == 2 ? (c & 0x1F) : l == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < l; k++) cp = (cp << 6) | (s[i + k] & 0x3F);
    *len = l;
    return cp;
}

/* Python's str.isspace(). */
static int is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* In place: text[0..*len) cut at the first "Output", '"' removed, stripped. */
static void postprocess_caption(char *text, size_t *len) {
    size_t n = *len;
    for (size_t i = 0; i + 6 <= n; i++)
        if (memcmp(text + i, "Output", 6) == 0) {
            n = i;
            break;
        }
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (text[i] != '"') text[w++] = text[i];
    n = w;
    const unsigned char *s = (const unsigned char *)text;
    size_t begin = 0, end = 0, i = 0;
    int seen = 0;
    while (i < n) { /* begin: the first non-space; end: after the last one */
        size_t l;
        uint32_t cp = decode_at(s, i, n, &l);
        if (!is_space(cp)) {
            if (!seen) begin = i;
            seen = 1;
            end = i + l;
        }
        i += l;
    }
    if (!seen) begin = end = 0;
    memmove(text, text + begin, end - begin);
    *len = end - begin;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR IMAGE [SHOT_IMAGE=CAPTION ...]\n", argv[0]);
        return 2;
    }
    const size_t n_images = (size_t)argc - 2; /* the shots' images, then IMAGE */
    const char **paths = xmalloc(n_images * sizeof *paths);
    buf prompt = {0};
    for (size_t k = 0; k + 1 < n_images; k++) {
        char *shot = argv[3 + k];
        char *eq = strchr(shot, '=');
        if (!eq) {
            fprintf(stderr, "caption: a few-shot argument must be IMAGE=CAPTION, not '%s'\n", shot);
            return 2;
        }
        *eq = '\0';
        paths[k] = shot;
        buf_str(&prompt, "<image>Output:");
        buf_str(&prompt, eq + 1);
        buf_str(&prompt, "<|endofchunk|>\n");
    }
    paths[n_images - 1] = argv[2];
    buf_str(&prompt, "<image>Output:");

    flamingo_model *model = NULL;
    flamingo_status st = flamingo_model_load(argv[1], NULL, &model);
    if (st != FLAMINGO_OK) return fail(st);
    flamingo_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    st = flamingo_model_get_info(model, &info);
    if (st != FLAMINGO_OK) return fail(st);

    /* 1. Decode and preprocess. */
    const size_t image_floats = 3 * (size_t)info.image_size * info.image_size;
    const size_t media_floats = (size_t)info.num_latents * info.visual_dim;
    float *pixels = xmalloc(n_images * image_floats * sizeof *pixels);
    for (size_t k = 0; k < n_images; k++) {
        flamingo_media image;
        memset(&image, 0, sizeof image);
        image.struct_size = sizeof image;
        image.kind = FLAMINGO_MEDIA_FILE;
        image.path = paths[k];
        st = flamingo_model_preprocess_image(model, &image, pixels + k * image_floats, image_floats);
        if (st != FLAMINGO_OK) return fail(st);
    }

    /* 2. Encode. */
    float *visual = xmalloc(n_images * media_floats * sizeof *visual);
    st = flamingo_model_encode_images(model, pixels, n_images, visual, n_images * media_floats);
    if (st != FLAMINGO_OK) return fail(st);

    /* 3. The prompt with its media. */
    flamingo_media *media = xmalloc(n_images * sizeof *media);
    for (size_t k = 0; k < n_images; k++) {
        memset(&media[k], 0, sizeof media[k]);
        media[k].struct_size = sizeof media[k];
        media[k].kind = FLAMINGO_MEDIA_VISUAL_TOKENS;
        media[k].data = visual + k * media_floats;
        media[k].size = media_floats;
    }
    flamingo_session *session = NULL;
    st = flamingo_session_init(model, NULL, &session);
    if (st != FLAMINGO_OK) return fail(st);
    st = flamingo_session_set_prompt(session, prompt.p, media, n_images, NULL, 0);
    if (st != FLAMINGO_OK) return fail(st);

    /* 4 + 5. Generate, detokenizing each token as it arrives. */
    stream s;
    memset(&s, 0, sizeof s);
    s.piece_cap = 64;
    s.piece = xmalloc(s.piece_cap);
    st = flamingo_detokenizer_init(model, FLAMINGO_DETOKENIZE_SKIP_SPECIAL, &s.detok);
    if (st != FLAMINGO_OK) return fail(st);
    buf_str(&s.text, "");
    flamingo_generate_params params;
    st = flamingo_generate_default_params(&params, sizeof params);
    if (st != FLAMINGO_OK) return fail(st);
    params.num_beams = NUM_BEAMS;
    params.length_penalty = LENGTH_PENALTY;
    params.max_new_tokens = MAX_NEW_TOKENS;
    params.callback = on_token;
    params.callback_user_data = &s;
    int32_t tokens[MAX_NEW_TOKENS];
    size_t n_tokens = 0;
    st = flamingo_session_generate(session, &params, tokens, MAX_NEW_TOKENS, &n_tokens, NULL);
    if (st != FLAMINGO_OK) return fail(st);
    if (s.error != FLAMINGO_OK) return fail(s.error);
    st = stream_finish(model, &s);
    if (st != FLAMINGO_OK) return fail(st);

    /* 6. Post-process and print. */
    size_t len = s.text.len;
    postprocess_caption(s.text.p, &len);
    fwrite(s.text.p, 1, len, stdout);
    putchar('\n');

    flamingo_detokenizer_free(s.detok);
    flamingo_session_free(session);
    flamingo_model_free(model);
    free(s.piece);
    free(s.text.p);
    free(media);
    free(visual);
    free(pixels);
    free(prompt.p);
    free(paths);
    return 0;
}
