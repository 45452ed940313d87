/*
 * flamingo.h — the C ABI of libflamingo, an inference engine for
 * Flamingo-family visual language models (OpenFlamingo checkpoints).
 *
 * This header is the documentation. Conventions that hold for every function:
 *
 *  - Strings are UTF-8 and NUL-terminated.
 *  - Fallible functions return a flamingo_status. On failure the reason is
 *    available from flamingo_last_error() on the same thread, and every out
 *    parameter is left untouched.
 *  - Objects are opaque handles created by flamingo_<noun>_load/_init and
 *    released by the matching flamingo_<noun>_free, which accepts NULL.
 *  - Parameter and info structs begin with `uint32_t struct_size`, which the
 *    caller sets to sizeof(the struct it was compiled with). Structs only
 *    ever grow at the end, so a program built against an older header keeps
 *    working with a newer library: the library reads and writes only the
 *    first struct_size bytes, and uses defaults for fields it was not given.
 *  - The library never terminates the host process: bad input (NULL
 *    pointers, wrong sizes, corrupt files) is reported as an error.
 *  - Enumerations are passed as fixed-width integers (int32_t typedefs with
 *    named constants), so their size never depends on the compiler and an
 *    unknown value can be passed and is rejected or ignored as documented.
 *  - A struct_size larger than the library knows is accepted: the library
 *    reads and writes only the fields it knows, and leaves the rest alone.
 *  - Thread safety is stated per function.
 */
#ifndef FLAMINGO_H
#define FLAMINGO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions                                                                 */
/* ------------------------------------------------------------------------ */

/* Library version of this header (semantic versioning). */
#define FLAMINGO_VERSION_MAJOR 0
#define FLAMINGO_VERSION_MINOR 1
#define FLAMINGO_VERSION_PATCH 0
#define FLAMINGO_VERSION_STRING "0.1.0"

/* ABI version: bumped only on an incompatible change. It is the number in
 * the library's SONAME (libflamingo.so.1). Bindings compare it with
 * flamingo_abi_version() at load time. */
#define FLAMINGO_ABI_VERSION 1

/* The library's version string, e.g. "0.1.0". Static storage; never NULL.
 * Thread-safe. */
const char *flamingo_version(void);

/* The library's ABI version (FLAMINGO_ABI_VERSION it was built with).
 * Thread-safe. */
uint32_t flamingo_abi_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

typedef int32_t flamingo_status;
enum {
    FLAMINGO_OK = 0,
    /* A NULL pointer, a wrong struct_size, an out-of-range index or value. */
    FLAMINGO_ERROR_INVALID_ARGUMENT = 1,
    /* A file or directory is missing or unreadable. */
    FLAMINGO_ERROR_IO = 2,
    /* A file is corrupt or truncated, or does not match the model config
     * (invalid JSON, bad safetensors header, wrong tensor shape, missing or
     * unexpected tensor, ...). */
    FLAMINGO_ERROR_INVALID_FORMAT = 3,
    /* Well-formed but not supported: unknown architecture, dtype, option. */
    FLAMINGO_ERROR_UNSUPPORTED = 4,
    /* A host or device allocation failed. */
    FLAMINGO_ERROR_OUT_OF_MEMORY = 5,
    /* The compute backend failed (e.g. an OpenCL error or build failure). */
    FLAMINGO_ERROR_BACKEND = 6,
    /* A named or indexed item does not exist. */
    FLAMINGO_ERROR_NOT_FOUND = 7,
    /* A caller-provided buffer is too small; the message says how large. */
    FLAMINGO_ERROR_BUFFER_TOO_SMALL = 8,
    /* A callback asked the library to stop. */
    FLAMINGO_ERROR_CANCELLED = 9,
    /* A bug in the library; please report it with the message. */
    FLAMINGO_ERROR_INTERNAL = 10
};

/* A short constant description of a status ("invalid argument", ...).
 * Unknown values give "unknown status". Static storage. Thread-safe. */
const char *flamingo_status_string(flamingo_status status);

/* The message of the most recent failed call on the calling thread, or ""
 * if none failed yet. Successful calls do not clear it. The string is owned
 * by the library and valid until the next failing call on this thread.
 * Thread-safe (each thread has its own message). */
const char *flamingo_last_error(void);

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

typedef int32_t flamingo_log_level;
enum {
    FLAMINGO_LOG_DEBUG = 0,
    FLAMINGO_LOG_INFO = 1,
    FLAMINGO_LOG_WARN = 2,
    FLAMINGO_LOG_ERROR = 3,
    FLAMINGO_LOG_NONE = 4 /* as a minimum level: log nothing */
};

/* Receives one message (without trailing newline). `message` is valid only
 * during the call. May be called from any thread the library uses. */
typedef void (*flamingo_log_callback)(flamingo_log_level level, const char *message,
                                      void *user_data);

/* Routes log messages to `callback` with `user_data`; NULL restores the
 * default sink, which writes to stderr. Thread-safe. A message that another
 * thread is delivering while the sink is replaced may still reach the old
 * callback, so keep a replaced callback and its user_data valid until no
 * other library call that could log is in flight. */
void flamingo_log_set(flamingo_log_callback callback, void *user_data);

/* Messages below `level` are dropped (default FLAMINGO_LOG_WARN).
 * Out-of-range values are clamped to FLAMINGO_LOG_NONE. Thread-safe. */
void flamingo_log_set_level(flamingo_log_level level);

/* ------------------------------------------------------------------------ */
/* Backends and devices                                                     */
/* ------------------------------------------------------------------------ */

typedef int32_t flamingo_backend;
enum {
    FLAMINGO_BACKEND_CPU = 0,
    FLAMINGO_BACKEND_OPENCL = 1
};

typedef int32_t flamingo_device_type;
enum {
    FLAMINGO_DEVICE_CPU = 0,
    FLAMINGO_DEVICE_GPU = 1,
    FLAMINGO_DEVICE_ACCELERATOR = 2,
    FLAMINGO_DEVICE_OTHER = 3
};

typedef struct flamingo_device_info {
    uint32_t struct_size;          /* set by the caller: sizeof(flamingo_device_info) */
    flamingo_backend backend;      /* which backend drives this device */
    flamingo_device_type type;
    int32_t platform_index;        /* OpenCL platform index; -1 for the CPU backend */
    int32_t device_index;          /* index within the OpenCL platform; -1 for the CPU
                                      backend (not the global index used by
                                      flamingo_device_get_info and the model params) */
    uint32_t compute_units;        /* CPU: hardware threads; OpenCL: compute units */
    uint64_t memory_bytes;         /* CPU: physical memory; OpenCL: global memory */
    char name[256];                /* e.g. "cpu" or the OpenCL device name */
    char platform_name[256];       /* OpenCL platform name; "" for the CPU backend */
    char vendor[128];
    char driver_version[128];
} flamingo_device_info;

/* Counts the devices usable by this build: device 0 is always the CPU
 * backend, followed by every OpenCL device of every platform, in platform
 * order. OpenCL is loaded at run time; without an OpenCL ICD loader or
 * platform, or when OpenCL enumeration fails (logged as a warning), only the
 * CPU is listed. The list is computed once per process.
 * Errors: INVALID_ARGUMENT (out_count NULL). Thread-safe. */
flamingo_status flamingo_device_count(size_t *out_count);

/* Describes device `index` (0 <= index < count) into `*out`, whose
 * struct_size the caller sets. Errors: INVALID_ARGUMENT (out NULL or
 * struct_size smaller than the first version of the struct), NOT_FOUND
 * (index out of range). Thread-safe. */
flamingo_status flamingo_device_get_info(size_t index, flamingo_device_info *out);

/* ------------------------------------------------------------------------ */
/* Models                                                                   */
/* ------------------------------------------------------------------------ */

/* A loaded model: configuration, tokenizer and weights. Immutable once
 * loaded; one model may be shared by any number of threads and sessions. */
typedef struct flamingo_model flamingo_model;

typedef struct flamingo_model_params {
    uint32_t struct_size;          /* set by the caller: sizeof(flamingo_model_params) */
    flamingo_backend backend;      /* default FLAMINGO_BACKEND_CPU */
    int32_t device_index;          /* global device index, as passed to
                                      flamingo_device_get_info; -1 = the backend's
                                      default device (default -1) */
    uint32_t n_threads;            /* CPU threads; 0 = one per core (default 0). The CPU
                                      thread pools are per process: the latest load
                                      with a non-zero value sets them. */
} flamingo_model_params;

/* Fills `*params` with defaults. The caller passes sizeof its struct, which
 * is stored in params->struct_size (so it need not be set beforehand).
 * Errors: INVALID_ARGUMENT (params NULL, or struct_size smaller than the
 * first version of the struct or larger than UINT32_MAX). Thread-safe. */
flamingo_status flamingo_model_default_params(flamingo_model_params *params, size_t struct_size);

/* Loads the model directory `path` (see docs/model-format.md): reads
 * config.json, memory-maps every .safetensors file, and validates every
 * tensor's name, dtype, shape and byte range against the config before use.
 * `params` may be NULL for defaults. On success `*out_model` receives a new
 * model that the caller releases with flamingo_model_free.
 * Errors: INVALID_ARGUMENT (NULL path/out_model, bad struct_size, unknown
 * backend or device), IO, INVALID_FORMAT, UNSUPPORTED, OUT_OF_MEMORY,
 * BACKEND. Thread-safe (different threads may load models concurrently). */
flamingo_status flamingo_model_load(const char *path, const flamingo_model_params *params,
                                    flamingo_model **out_model);

/* Releases a model and unmaps its files. NULL is a no-op. The model must not
 * be in use by another thread or session. */
void flamingo_model_free(flamingo_model *model);

typedef struct flamingo_model_info {
    uint32_t struct_size;          /* set by the caller: sizeof(flamingo_model_info) */
    char architecture[32];         /* "openflamingo" */
    char vision_kind[32];          /* "clip_vit" (OpenFlamingo) or "nfnet" (the Flamingo paper) */
    char lm_family[32];            /* "mpt", "mosaic_gpt", "gpt_neox", "llama" */
    /* vision encoder */
    uint32_t image_size;           /* input side in pixels */
    uint32_t patch_size;           /* ViT patch side; NFNet: total stride */
    uint32_t vision_width;         /* channels per feature token */
    uint32_t vision_layers;        /* ViT blocks; NFNet: residual blocks */
    uint32_t vision_heads;         /* ViT attention heads; 0 for NFNet */
    uint32_t vision_tokens;        /* feature tokens per image given to the resampler */
    /* perceiver resampler */
    uint32_t resampler_depth;
    uint32_t resampler_heads;
    uint32_t resampler_dim_head;
    uint32_t num_latents;          /* visual tokens per image after resampling */
    /* language model */
    uint32_t hidden_size;
    uint32_t num_layers;
    uint32_t num_heads;
    uint32_t intermediate_size;
    uint32_t max_seq_len;
    uint32_t vocab_size;
    /* gated cross-attention */
    uint32_t cross_attn_every_n_layers;
    uint32_t num_cross_attn_layers;
    /* special tokens; -1 where the model has none */
    int32_t image_token_id;        /* <image> */
    int32_t endofchunk_token_id;   /* <|endofchunk|> */
    int32_t pad_token_id;
    int32_t bos_token_id;
    int32_t eos_token_id;
    /* image preprocessing (CLIP normalisation) */
    float image_mean[3];
    float image_std[3];
    /* totals */
    uint64_t num_parameters;       /* number of weights (each packed code counts as one) */
    uint64_t weight_bytes;         /* bytes of stored weights (packed codes, scales and biases included) */
    uint32_t visual_dim;           /* width of one visual token (resampler dim) */
    /* storage (docs/model-format.md) */
    char weight_type[16];          /* the storage of most matrix bytes: "f32", "f16", "bf16", "q8" or "q4" */
    uint32_t quant_bits;           /* default bits of the packed matrices (config quantization.bits); 0 if none */
    uint32_t quant_group_size;     /* their inputs per group (32, 64 or 128); 0 if none */
} flamingo_model_info;

/* Describes `model` into `*out`, whose struct_size the caller sets.
 * Errors: INVALID_ARGUMENT (NULL or struct_size too small). Thread-safe. */
flamingo_status flamingo_model_get_info(const flamingo_model *model, flamingo_model_info *out);

/* ------------------------------------------------------------------------ */
/* Converting a model directory to another storage type                     */
/* ------------------------------------------------------------------------ */

typedef struct flamingo_quantize_params {
    uint32_t struct_size;          /* set by the caller: sizeof(flamingo_quantize_params) */
    char type[8];                  /* "q4", "q8", "bf16", "f16" or "f32" (default "q4") */
    uint32_t group_size;           /* inputs per quantization group: 32, 64 or 128 (default 64) */
    uint32_t search;               /* 1: fit each group's scale and bias by a clipping search;
                                      0: plain min/max rounding (default 1) */
    uint32_t overwrite;            /* 1: replace config.json and *.safetensors in a non-empty
                                      output directory; 0: refuse (default 0) */
    const char *keep;              /* NULL for the type's default policy, or rules
                                      "PATTERN=TYPE" separated by newlines: matrices whose module
                                      path matches the glob PATTERN are stored as TYPE (the last
                                      match wins). Borrowed for the call only. */
} flamingo_quantize_params;

/* Fills `*params` with defaults and stores struct_size. Errors as
 * flamingo_model_default_params. Thread-safe. */
flamingo_status flamingo_quantize_default_params(flamingo_quantize_params *params, size_t struct_size);

/* Converts the model directory `input_dir` (any storage) into `output_dir`
 * (created if missing) with its matrices stored as params->type: 8/4-bit
 * affine groups or 16-bit floats (docs/quantization.md). Streams tensor by
 * tensor, so memory stays near the largest tensor in f32; the tokenizer and
 * other files are copied. `params` may be NULL for defaults. Uses the CPU
 * threads. Errors: INVALID_ARGUMENT (NULL path, bad struct_size, unknown
 * type, bad group size or keep rule, a value that does not fit the type),
 * IO (unreadable input, an output directory that is not empty without
 * overwrite, a write failure), and the load errors of `input_dir`.
 * Thread-safe (concurrent conversions share the CPU threads). */
flamingo_status flamingo_model_quantize(const char *input_dir, const char *output_dir,
                                        const flamingo_quantize_params *params);

/* ------------------------------------------------------------------------ */
/* Images and visual tokens                                                 */
/* ------------------------------------------------------------------------ */

/* Encodes images into visual tokens (vision encoder + Perceiver Resampler).
 * `pixels` holds n_images preprocessed images as float32, planar
 * [n_images][3][image_size][image_size] (image_size from flamingo_model_info,
 * CLIP mean/std normalisation already applied). `out` receives
 * [n_images][num_latents][visual_dim] floats; `out_count` is its capacity in
 * floats. Hosts may cache the result and hand it to flamingo_session_set_media
 * instead of pixels. Errors: INVALID_ARGUMENT (NULL pointer, n_images 0, a
 * non-finite pixel), BUFFER_TOO_SMALL. Thread-safe: the model is read only. */
flamingo_status flamingo_model_encode_images(const flamingo_model *model, const float *pixels,
                                             size_t n_images, float *out, size_t out_count);

/* ------------------------------------------------------------------------ */
/* Sessions: one token sequence with its KV cache and media                 */
/* ------------------------------------------------------------------------ */

/* A session evaluates one sequence: its self-attention KV cache, its media
 * (visual tokens) and the logits of its last position. A session is used by
 * one thread at a time; different sessions of one model may run on
 * different threads concurrently. */
typedef struct flamingo_session flamingo_session;

typedef struct flamingo_session_params {
    uint32_t struct_size;          /* set by the caller: sizeof(flamingo_session_params) */
    uint32_t n_ctx;                /* maximum tokens; 0 = the model's max_seq_len */
} flamingo_session_params;

/* Fills `*params` with defaults and stores struct_size. Errors as
 * flamingo_model_default_params. Thread-safe. */
flamingo_status flamingo_session_default_params(flamingo_session_params *params, size_t struct_size);

/* Creates an empty session on `model` (`params` may be NULL for defaults).
 * The session keeps the model's weights alive, so the model handle may be
 * freed before the session. Errors: INVALID_ARGUMENT (NULL model or
 * out_session, bad struct_size, n_ctx above max_seq_len), OUT_OF_MEMORY.
 * Thread-safe. */
flamingo_status flamingo_session_init(flamingo_model *model, const flamingo_session_params *params,
                                      flamingo_session **out_session);

/* Releases a session. NULL is a no-op. */
void flamingo_session_free(flamingo_session *session);

/* Creates an independent copy of `session` (tokens, KV cache, media, last
 * logits), e.g. to explore several continuations. The caller frees it.
 * Errors: INVALID_ARGUMENT, OUT_OF_MEMORY. */
flamingo_status flamingo_session_copy(const flamingo_session *session, flamingo_session **out_copy);

/* Sets the media the text attends to from visual tokens
 * [n_media][num_latents][visual_dim] (as written by
 * flamingo_model_encode_images); the data is copied. The k-th <image> token
 * of the sequence refers to media k-1. n_media 0 removes the media (then
 * cross-attention contributes nothing). Errors: INVALID_ARGUMENT. */
flamingo_status flamingo_session_set_media(flamingo_session *session, const float *visual_tokens,
                                           size_t n_media);

/* Encodes `pixels` (as flamingo_model_encode_images) and sets them as the
 * session's media. Errors: INVALID_ARGUMENT. */
flamingo_status flamingo_session_set_images(flamingo_session *session, const float *pixels, size_t n_images);

/* flamingo_session_eval flags */
#define FLAMINGO_EVAL_ALL_LOGITS 1u /* return logits of every new token, not only the last */

/* Appends `n_tokens` token ids to the sequence and evaluates them over the
 * KV cache. `logits` receives the last position's logits (vocab_size floats)
 * or, with FLAMINGO_EVAL_ALL_LOGITS, n_tokens × vocab_size floats; it may be
 * NULL (with logits_count 0) to only extend the cache. Each text token
 * attends to the media of the latest <image> token at or before it.
 * Errors: INVALID_ARGUMENT (NULL tokens, n_tokens 0, an id outside the
 * vocabulary, context full; the session is unchanged), BUFFER_TOO_SMALL. */
flamingo_status flamingo_session_eval(flamingo_session *session, const int32_t *tokens, size_t n_tokens,
                                      uint32_t flags, float *logits, size_t logits_count);

/* The number of tokens in the sequence. Errors: INVALID_ARGUMENT. */
flamingo_status flamingo_session_length(const flamingo_session *session, size_t *out_length);

/* Rolls the sequence back to its first `length` tokens (media is kept);
 * generation then needs a new evaluation. Errors: INVALID_ARGUMENT (length
 * greater than the current length). */
flamingo_status flamingo_session_truncate(flamingo_session *session, size_t length);

/* ------------------------------------------------------------------------ */
/* Generation                                                               */
/* ------------------------------------------------------------------------ */

/* Called with every generated token (greedy and sampling: as soon as it is
 * chosen; beam search: the final tokens in order). Return 0 to continue,
 * non-zero to stop generation early (reason FLAMINGO_STOP_CANCELLED). Runs
 * on the calling thread. */
typedef int32_t (*flamingo_token_callback)(int32_t token, void *user_data);

typedef struct flamingo_generate_params {
    uint32_t struct_size;          /* set by the caller: sizeof(flamingo_generate_params) */
    uint32_t max_new_tokens;       /* default 20 */
    uint32_t min_new_tokens;       /* stop tokens are banned before this many (default 0) */
    uint32_t do_sample;            /* 0: greedy / beam search (default); 1: sample */
    float temperature;             /* sampling temperature, > 0 (default 1) */
    uint32_t top_k;                /* keep the k most likely tokens; 0 = off (default) */
    float top_p;                   /* nucleus sampling mass in (0, 1]; 1 = off (default) */
    uint32_t num_beams;            /* beam search when > 1 (default 1) */
    float length_penalty;          /* beam score = sum log p / length^penalty (default 1) */
    uint32_t early_stopping;       /* beam search stops once num_beams are finished (default 0) */
    uint32_t no_repeat_ngram_size; /* ban repeating n-grams of this size; 0 = off (default) */
    float repetition_penalty;      /* > 1 discourages repeated tokens; 1 = off (default) */
    uint32_t stop_at_endofchunk;   /* stop after <|endofchunk|> (default 1) */
    uint32_t stop_at_eos;          /* stop after the model's EOS token (default 1) */
    uint64_t seed;                 /* sampling seed (default 0) */
    flamingo_token_callback callback; /* optional (default NULL) */
    void *callback_user_data;
} flamingo_generate_params;

typedef int32_t flamingo_stop_reason;
enum {
    FLAMINGO_STOP_MAX_TOKENS = 0,  /* max_new_tokens reached */
    FLAMINGO_STOP_TOKEN = 1,       /* a stop token was generated (it is included) */
    FLAMINGO_STOP_CANCELLED = 2    /* the callback asked to stop */
};

/* Fills `*params` with defaults and stores struct_size. Errors as
 * flamingo_model_default_params. Thread-safe. */
flamingo_status flamingo_generate_default_params(flamingo_generate_params *params, size_t struct_size);

/* Generates a continuation of the evaluated sequence in `session` (a prompt
 * must have been evaluated). `params` may be NULL for defaults. The new
 * tokens go to `out_tokens` (capacity entries, at least max_new_tokens),
 * their number to `*out_count`, and why generation stopped to `*out_reason`
 * (may be NULL). Afterwards the session holds the prompt plus the returned
 * tokens. Errors: INVALID_ARGUMENT (NULL pointers, nothing evaluated, bad
 * parameter values, context too small for max_new_tokens), BUFFER_TOO_SMALL;
 * the session is unchanged on error. */
flamingo_status flamingo_session_generate(flamingo_session *session, const flamingo_generate_params *params,
                                          int32_t *out_tokens, size_t capacity, size_t *out_count,
                                          flamingo_stop_reason *out_reason);

/* Generates continuations of `n_sessions` evaluated sessions together: each
 * step evaluates the next token of every unfinished session in one batched
 * forward pass, so the weights are read once per step for all of them. The
 * sessions may hold prompts of different lengths (no padding is needed) and
 * must belong to the same model and be distinct. Session i writes its tokens
 * to out_tokens[i·capacity …], their number to out_counts[i] and why it
 * stopped to out_reasons[i] (out_reasons may be NULL). With do_sample, session
 * i uses seed + i. With num_beams > 1 the sessions are searched one after the
 * other. The callback is not called. Errors as flamingo_session_generate;
 * on error every session is unchanged. */
flamingo_status flamingo_batch_generate(flamingo_session *const *sessions, size_t n_sessions,
                                        const flamingo_generate_params *params, int32_t *out_tokens,
                                        size_t capacity, size_t *out_counts, flamingo_stop_reason *out_reasons);

/* ------------------------------------------------------------------------ */
/* Text                                                                     */
/* ------------------------------------------------------------------------ */

/* The functions below that return text or tokens into a caller buffer follow
 * the snprintf rule: *out_count / *out_len always receives the full size, at
 * most `capacity` items are written, and a caller whose buffer was too small
 * calls again with a larger one. */

#define FLAMINGO_TOKENIZE_ADD_SPECIAL 1u /* add BOS etc. as the tokenizer's post-processor does */

/* Tokenizes `text_len` bytes of UTF-8 `text` (NUL not needed) with the
 * model's tokenizer.json, matching Hugging Face tokenizers exactly: special
 * tokens such as <image> and <|endofchunk|> in the text become their ids.
 * Errors: INVALID_ARGUMENT (NULL pointers, invalid UTF-8, unknown flags),
 * UNSUPPORTED (the model directory has no tokenizer). Thread-safe. */
flamingo_status flamingo_tokenize(const flamingo_model *model, const char *text, size_t text_len, uint32_t flags,
                                  int32_t *out_tokens, size_t capacity, size_t *out_count);

#define FLAMINGO_DETOKENIZE_SKIP_SPECIAL 1u /* leave out special tokens */

/* Decodes tokens into UTF-8 text, NUL-terminated when capacity > 0;
 * *out_len is the length without the NUL. Errors: INVALID_ARGUMENT (NULL
 * pointers, an id outside the vocabulary), UNSUPPORTED. Thread-safe. */
flamingo_status flamingo_detokenize(const flamingo_model *model, const int32_t *tokens, size_t n_tokens,
                                    uint32_t flags, char *out_text, size_t capacity, size_t *out_len);

/* Incremental decoding for streaming: push tokens one at a time and receive
 * only newly completed text, never half a UTF-8 character; with a final
 * flamingo_detokenizer_flush the pieces join to exactly the full decode. One
 * detokenizer per stream; not thread-safe. */
typedef struct flamingo_detokenizer flamingo_detokenizer;

/* Creates a detokenizer for `model` (flags: FLAMINGO_DETOKENIZE_*). It keeps
 * the model's tokenizer alive. Errors: INVALID_ARGUMENT, UNSUPPORTED. */
flamingo_status flamingo_detokenizer_init(const flamingo_model *model, uint32_t flags,
                                          flamingo_detokenizer **out_detokenizer);

/* Releases a detokenizer. NULL is a no-op. */
void flamingo_detokenizer_free(flamingo_detokenizer *detokenizer);

/* Feeds one token; the text it completes (often "", possibly several
 * characters) goes to out_text, NUL-terminated, and its length to *out_len.
 * If capacity is not larger than that length the call fails with
 * BUFFER_TOO_SMALL, *out_len is not set, and the token is not consumed (push
 * it again with a larger buffer; 64 bytes is enough for any single token of
 * the released tokenizers). Errors: INVALID_ARGUMENT (NULL, id out of range),
 * BUFFER_TOO_SMALL. */
flamingo_status flamingo_detokenizer_push(flamingo_detokenizer *detokenizer, int32_t token, char *out_text,
                                          size_t capacity, size_t *out_len);

/* Ends the stream: writes the text still held back (byte tokens whose
 * character was never completed, as U+FFFD like a full decode) and resets
 * the detokenizer for a new stream. The pieces of every push plus the flush
 * equal flamingo_detokenize of all pushed tokens. Same buffer rule and errors
 * as flamingo_detokenizer_push (on BUFFER_TOO_SMALL nothing is consumed). */
flamingo_status flamingo_detokenizer_flush(flamingo_detokenizer *detokenizer, char *out_text, size_t capacity,
                                           size_t *out_len);

/* ------------------------------------------------------------------------ */
/* Media and interleaved prompts                                            */
/* ------------------------------------------------------------------------ */

typedef int32_t flamingo_media_kind;
enum {
    FLAMINGO_MEDIA_FILE = 0,          /* `path`: a JPEG or PNG file */
    FLAMINGO_MEDIA_ENCODED = 1,       /* `data`, `size` bytes: a JPEG or PNG in memory */
    FLAMINGO_MEDIA_RGB = 2,           /* `data`: width × height × channels bytes, 8-bit,
                                         channels 3 (RGB) or 4 (RGBA), rows top to bottom */
    FLAMINGO_MEDIA_PIXELS = 3,        /* `data`: `size` floats, a preprocessed image
                                         [3][image_size][image_size] */
    FLAMINGO_MEDIA_VISUAL_TOKENS = 4, /* `data`: `size` floats, [num_latents][visual_dim]
                                         from flamingo_model_encode_images */
    FLAMINGO_MEDIA_FRAMES = 5,        /* a video: `data` points to `size` flamingo_media
                                         frames (images of the kinds above, stride
                                         frames[0].struct_size), in order */
    FLAMINGO_MEDIA_FRAME_DIR = 6      /* a video: `path` is a directory of .jpg/.jpeg/.png
                                         frames, taken in file-name order */
};

/* One media item of a prompt: an image or a video. Images are decoded (EXIF
 * orientation applied, grayscale/CMYK/alpha converted as Pillow does),
 * resized and normalised exactly as the reference's CLIP preprocessing, then
 * encoded. A video's frames are encoded one by one and resampled jointly
 * with the model's learned frame embeddings; models without them accept
 * single images only (UNSUPPORTED). */
typedef struct flamingo_media {
    uint32_t struct_size;          /* sizeof(flamingo_media) */
    flamingo_media_kind kind;
    const char *path;              /* FILE */
    const void *data;              /* ENCODED, RGB, PIXELS, VISUAL_TOKENS */
    size_t size;                   /* bytes (ENCODED, RGB) or floats (PIXELS, VISUAL_TOKENS) */
    uint32_t width;                /* RGB */
    uint32_t height;               /* RGB */
    uint32_t channels;             /* RGB */
} flamingo_media;

/* Replaces the session's sequence with `prompt` (UTF-8, NUL-terminated, with
 * one <image> marker per media item, e.g.
 * "<image>An image of two cats.<|endofchunk|><image>An image of") and its
 * media, in order, then evaluates it; `logits` (vocab_size floats, may be
 * NULL) receives the last position's logits. `media` is an array of n_media
 * items laid out with stride media[0].struct_size. Afterwards
 * flamingo_session_generate continues the prompt. Errors: INVALID_ARGUMENT
 * (NULL pointers, invalid UTF-8, marker count different from n_media, bad
 * item fields or sizes, prompt longer than the context), IO (unreadable
 * file), INVALID_FORMAT (undecodable image), UNSUPPORTED (image too large,
 * no tokenizer), BUFFER_TOO_SMALL; on error the session is unchanged. */
flamingo_status flamingo_session_set_prompt(flamingo_session *session, const char *prompt,
                                            const flamingo_media *media, size_t n_media,
                                            float *logits, size_t logits_count);

/* Decodes and preprocesses one image item (FILE, ENCODED or RGB) into
 * `out_pixels`: [3][image_size][image_size] floats, CLIP-normalised, as the
 * reference. Errors: INVALID_ARGUMENT, IO, INVALID_FORMAT, UNSUPPORTED,
 * BUFFER_TOO_SMALL. Thread-safe. */
flamingo_status flamingo_model_preprocess_image(const flamingo_model *model, const flamingo_media *image,
                                                float *out_pixels, size_t out_count);

#ifdef __cplusplus
}
#endif

#endif /* FLAMINGO_H */
