"""Raw ctypes declarations of include/flamingo.h and the library loader.

Everything here mirrors the C header exactly; the public, Pythonic API is in
``flamingo/__init__.py``. C enums are passed as ``c_int`` (their size on every
supported ABI).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from typing import List, Optional

#: The ABI version this module was written against (FLAMINGO_ABI_VERSION).
ABI_VERSION = 1

SONAMES = ("libflamingo.so.1", "libflamingo.so")

# --------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------

flamingo_status = ctypes.c_int
flamingo_log_level = ctypes.c_int
flamingo_backend = ctypes.c_int
flamingo_device_type = ctypes.c_int


class flamingo_device_info(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("backend", flamingo_backend),
        ("type", flamingo_device_type),
        ("platform_index", ctypes.c_int32),
        ("device_index", ctypes.c_int32),
        ("compute_units", ctypes.c_uint32),
        ("memory_bytes", ctypes.c_uint64),
        ("name", ctypes.c_char * 256),
        ("platform_name", ctypes.c_char * 256),
        ("vendor", ctypes.c_char * 128),
        ("driver_version", ctypes.c_char * 128),
    ]


class flamingo_model(ctypes.Structure):
    """Opaque."""


flamingo_model_p = ctypes.POINTER(flamingo_model)


class flamingo_model_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("backend", flamingo_backend),
        ("device_index", ctypes.c_int32),
        ("n_threads", ctypes.c_uint32),
    ]


class flamingo_model_info(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("architecture", ctypes.c_char * 32),
        ("vision_kind", ctypes.c_char * 32),
        ("lm_family", ctypes.c_char * 32),
        ("image_size", ctypes.c_uint32),
        ("patch_size", ctypes.c_uint32),
        ("vision_width", ctypes.c_uint32),
        ("vision_layers", ctypes.c_uint32),
        ("vision_heads", ctypes.c_uint32),
        ("vision_tokens", ctypes.c_uint32),
        ("resampler_depth", ctypes.c_uint32),
        ("resampler_heads", ctypes.c_uint32),
        ("resampler_dim_head", ctypes.c_uint32),
        ("num_latents", ctypes.c_uint32),
        ("hidden_size", ctypes.c_uint32),
        ("num_layers", ctypes.c_uint32),
        ("num_heads", ctypes.c_uint32),
        ("intermediate_size", ctypes.c_uint32),
        ("max_seq_len", ctypes.c_uint32),
        ("vocab_size", ctypes.c_uint32),
        ("cross_attn_every_n_layers", ctypes.c_uint32),
        ("num_cross_attn_layers", ctypes.c_uint32),
        ("image_token_id", ctypes.c_int32),
        ("endofchunk_token_id", ctypes.c_int32),
        ("pad_token_id", ctypes.c_int32),
        ("bos_token_id", ctypes.c_int32),
        ("eos_token_id", ctypes.c_int32),
        ("image_mean", ctypes.c_float * 3),
        ("image_std", ctypes.c_float * 3),
        ("num_parameters", ctypes.c_uint64),
        ("weight_bytes", ctypes.c_uint64),
        ("visual_dim", ctypes.c_uint32),
        ("weight_type", ctypes.c_char * 16),
        ("quant_bits", ctypes.c_uint32),
        ("quant_group_size", ctypes.c_uint32),
    ]


class flamingo_quantize_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("type", ctypes.c_char * 8),
        ("group_size", ctypes.c_uint32),
        ("search", ctypes.c_uint32),
        ("overwrite", ctypes.c_uint32),
        ("keep", ctypes.c_char_p),
    ]


class flamingo_session(ctypes.Structure):
    """Opaque."""


flamingo_session_p = ctypes.POINTER(flamingo_session)


class flamingo_session_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("n_ctx", ctypes.c_uint32),
    ]


#: flamingo_session_eval flags
FLAMINGO_EVAL_ALL_LOGITS = 1

flamingo_stop_reason = ctypes.c_int32

#: int32_t (*)(int32_t token, void *user_data)
flamingo_token_callback = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)


class flamingo_generate_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("max_new_tokens", ctypes.c_uint32),
        ("min_new_tokens", ctypes.c_uint32),
        ("do_sample", ctypes.c_uint32),
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_uint32),
        ("top_p", ctypes.c_float),
        ("num_beams", ctypes.c_uint32),
        ("length_penalty", ctypes.c_float),
        ("early_stopping", ctypes.c_uint32),
        ("no_repeat_ngram_size", ctypes.c_uint32),
        ("repetition_penalty", ctypes.c_float),
        ("stop_at_endofchunk", ctypes.c_uint32),
        ("stop_at_eos", ctypes.c_uint32),
        ("seed", ctypes.c_uint64),
        ("callback", flamingo_token_callback),
        ("callback_user_data", ctypes.c_void_p),
    ]


#: flamingo_tokenize flags
FLAMINGO_TOKENIZE_ADD_SPECIAL = 1
#: flamingo_detokenize / flamingo_detokenizer_init flags
FLAMINGO_DETOKENIZE_SKIP_SPECIAL = 1


class flamingo_detokenizer(ctypes.Structure):
    """Opaque."""


flamingo_detokenizer_p = ctypes.POINTER(flamingo_detokenizer)

flamingo_media_kind = ctypes.c_int32
FLAMINGO_MEDIA_FILE = 0
FLAMINGO_MEDIA_ENCODED = 1
FLAMINGO_MEDIA_RGB = 2
FLAMINGO_MEDIA_PIXELS = 3
FLAMINGO_MEDIA_VISUAL_TOKENS = 4
FLAMINGO_MEDIA_FRAMES = 5
FLAMINGO_MEDIA_FRAME_DIR = 6


class flamingo_media(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("kind", flamingo_media_kind),
        ("path", ctypes.c_char_p),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("channels", ctypes.c_uint32),
    ]


flamingo_log_callback = ctypes.CFUNCTYPE(None, flamingo_log_level, ctypes.c_char_p, ctypes.c_void_p)

# name: (restype, argtypes)
FUNCTIONS = {
    "flamingo_version": (ctypes.c_char_p, []),
    "flamingo_abi_version": (ctypes.c_uint32, []),
    "flamingo_status_string": (ctypes.c_char_p, [flamingo_status]),
    "flamingo_last_error": (ctypes.c_char_p, []),
    "flamingo_log_set": (None, [flamingo_log_callback, ctypes.c_void_p]),
    "flamingo_log_set_level": (None, [flamingo_log_level]),
    "flamingo_device_count": (flamingo_status, [ctypes.POINTER(ctypes.c_size_t)]),
    "flamingo_device_get_info": (flamingo_status, [ctypes.c_size_t, ctypes.POINTER(flamingo_device_info)]),
    "flamingo_model_default_params": (flamingo_status, [ctypes.POINTER(flamingo_model_params), ctypes.c_size_t]),
    "flamingo_model_load": (
        flamingo_status,
        [ctypes.c_char_p, ctypes.POINTER(flamingo_model_params), ctypes.POINTER(flamingo_model_p)],
    ),
    "flamingo_model_free": (None, [flamingo_model_p]),
    "flamingo_model_get_info": (flamingo_status, [flamingo_model_p, ctypes.POINTER(flamingo_model_info)]),
    "flamingo_quantize_default_params": (
        flamingo_status, [ctypes.POINTER(flamingo_quantize_params), ctypes.c_size_t]),
    "flamingo_model_quantize": (
        flamingo_status, [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(flamingo_quantize_params)]),
    "flamingo_model_encode_images": (
        flamingo_status,
        [flamingo_model_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.POINTER(ctypes.c_float),
         ctypes.c_size_t],
    ),
    "flamingo_session_default_params": (
        flamingo_status, [ctypes.POINTER(flamingo_session_params), ctypes.c_size_t]),
    "flamingo_session_init": (
        flamingo_status,
        [flamingo_model_p, ctypes.POINTER(flamingo_session_params), ctypes.POINTER(flamingo_session_p)],
    ),
    "flamingo_session_free": (None, [flamingo_session_p]),
    "flamingo_session_copy": (flamingo_status, [flamingo_session_p, ctypes.POINTER(flamingo_session_p)]),
    "flamingo_session_set_media": (
        flamingo_status, [flamingo_session_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]),
    "flamingo_session_set_images": (
        flamingo_status, [flamingo_session_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]),
    "flamingo_session_eval": (
        flamingo_status,
        [flamingo_session_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.c_uint32,
         ctypes.POINTER(ctypes.c_float), ctypes.c_size_t],
    ),
    "flamingo_session_length": (flamingo_status, [flamingo_session_p, ctypes.POINTER(ctypes.c_size_t)]),
    "flamingo_session_truncate": (flamingo_status, [flamingo_session_p, ctypes.c_size_t]),
    "flamingo_generate_default_params": (
        flamingo_status, [ctypes.POINTER(flamingo_generate_params), ctypes.c_size_t]),
    "flamingo_session_generate": (
        flamingo_status,
        [flamingo_session_p, ctypes.POINTER(flamingo_generate_params), ctypes.POINTER(ctypes.c_int32),
         ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(flamingo_stop_reason)],
    ),
    "flamingo_batch_generate": (
        flamingo_status,
        [ctypes.POINTER(flamingo_session_p), ctypes.c_size_t, ctypes.POINTER(flamingo_generate_params),
         ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
         ctypes.POINTER(flamingo_stop_reason)],
    ),
    # text is const char * with an explicit length: c_void_p so that bytes
    # holding NUL or invalid UTF-8 pass through unchanged.
    "flamingo_tokenize": (
        flamingo_status,
        [flamingo_model_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.POINTER(ctypes.c_int32),
         ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)],
    ),
    "flamingo_detokenize": (
        flamingo_status,
        [flamingo_model_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p,
         ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)],
    ),
    "flamingo_detokenizer_init": (
        flamingo_status, [flamingo_model_p, ctypes.c_uint32, ctypes.POINTER(flamingo_detokenizer_p)]),
    "flamingo_detokenizer_free": (None, [flamingo_detokenizer_p]),
    "flamingo_detokenizer_push": (
        flamingo_status,
        [flamingo_detokenizer_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)],
    ),
    "flamingo_detokenizer_flush": (
        flamingo_status, [flamingo_detokenizer_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
    # media is an array with stride media[0].struct_size: a void pointer.
    "flamingo_session_set_prompt": (
        flamingo_status,
        [flamingo_session_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_float),
         ctypes.c_size_t],
    ),
    "flamingo_model_preprocess_image": (
        flamingo_status,
        [flamingo_model_p, ctypes.POINTER(flamingo_media), ctypes.POINTER(ctypes.c_float), ctypes.c_size_t],
    ),
}

# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


class LibraryError(OSError):
    """libflamingo could not be found or loaded, or has the wrong ABI version."""


def candidates() -> List[str]:
    """Paths tried, in order, to find the shared library."""
    out: List[str] = []
    env = os.environ.get("FLAMINGO_LIBRARY")
    if env:
        return [env]  # an explicit choice: do not silently fall back
    for d in (os.path.join(sys.prefix, "lib"), "/usr/local/lib"):
        out.extend(os.path.join(d, n) for n in SONAMES)
    found = ctypes.util.find_library("flamingo")
    if found:
        out.append(found)
    # Bare names go through the dynamic loader's search (LD_LIBRARY_PATH,
    # the ld.so cache, the default directories).
    out.extend(SONAMES)
    seen = set()
    return [c for c in out if not (c in seen or seen.add(c))]


def _declare(lib: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in FUNCTIONS.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise LibraryError(f"{lib._name}: missing symbol {name}") from None
        fn.restype = restype
        fn.argtypes = argtypes


def load(path: Optional[str] = None) -> ctypes.CDLL:
    """Loads libflamingo (from `path`, or by the search order of
    :func:`candidates`), declares every function and checks the ABI version."""
    tried = [path] if path else candidates()
    errors = []
    for c in tried:
        if os.sep in c and not os.path.exists(c):
            errors.append(f"{c}: not found")
            continue
        try:
            lib = ctypes.CDLL(c)
        except OSError as e:
            errors.append(str(e))
            continue
        _declare(lib)
        abi = lib.flamingo_abi_version()
        if abi != ABI_VERSION:
            raise LibraryError(
                f"{c}: libflamingo ABI version {abi}, these bindings need {ABI_VERSION}"
            )
        return lib
    raise LibraryError(
        "libflamingo not found (set FLAMINGO_LIBRARY to the path of libflamingo.so); tried:\n  "
        + "\n  ".join(errors)
    )


_lib: Optional[ctypes.CDLL] = None
_lock = threading.Lock()


def lib() -> ctypes.CDLL:
    """The process-wide library, loaded on first use."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = load()
    return _lib
