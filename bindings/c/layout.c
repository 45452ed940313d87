/* Prints sizeof/offsetof of every struct in flamingo.h, to cross-check the
 * values asserted in bindings/rust/tests/layout.rs and
 * bindings/python/tests/test_layout.py:
 *   make layout && ./layout      (or: cc -I../../include layout.c -o layout) */
#include <flamingo.h>
#include <stddef.h>
#include <stdio.h>

#define S(t) printf("sizeof %s = %zu (align %zu)\n", #t, sizeof(t), _Alignof(t))
#define O(t, f) printf("  offsetof %s.%s = %zu\n", #t, #f, offsetof(t, f))

int main(void) {
    S(flamingo_device_info);
    O(flamingo_device_info, struct_size); O(flamingo_device_info, backend);
    O(flamingo_device_info, type); O(flamingo_device_info, platform_index);
    O(flamingo_device_info, device_index); O(flamingo_device_info, compute_units);
    O(flamingo_device_info, memory_bytes); O(flamingo_device_info, name);
    O(flamingo_device_info, platform_name); O(flamingo_device_info, vendor);
    O(flamingo_device_info, driver_version);
    S(flamingo_model_params);
    O(flamingo_model_params, struct_size); O(flamingo_model_params, backend);
    O(flamingo_model_params, device_index); O(flamingo_model_params, n_threads);
    S(flamingo_model_info);
    O(flamingo_model_info, struct_size); O(flamingo_model_info, architecture);
    O(flamingo_model_info, vision_kind); O(flamingo_model_info, lm_family);
    O(flamingo_model_info, image_size); O(flamingo_model_info, patch_size);
    O(flamingo_model_info, vision_width); O(flamingo_model_info, vision_layers);
    O(flamingo_model_info, vision_heads); O(flamingo_model_info, vision_tokens);
    O(flamingo_model_info, resampler_depth); O(flamingo_model_info, resampler_heads);
    O(flamingo_model_info, resampler_dim_head); O(flamingo_model_info, num_latents);
    O(flamingo_model_info, hidden_size); O(flamingo_model_info, num_layers);
    O(flamingo_model_info, num_heads); O(flamingo_model_info, intermediate_size);
    O(flamingo_model_info, max_seq_len); O(flamingo_model_info, vocab_size);
    O(flamingo_model_info, cross_attn_every_n_layers); O(flamingo_model_info, num_cross_attn_layers);
    O(flamingo_model_info, image_token_id); O(flamingo_model_info, endofchunk_token_id);
    O(flamingo_model_info, pad_token_id); O(flamingo_model_info, bos_token_id);
    O(flamingo_model_info, eos_token_id); O(flamingo_model_info, image_mean);
    O(flamingo_model_info, image_std); O(flamingo_model_info, num_parameters);
    O(flamingo_model_info, weight_bytes); O(flamingo_model_info, visual_dim);
    O(flamingo_model_info, weight_type); O(flamingo_model_info, quant_bits);
    O(flamingo_model_info, quant_group_size);
    S(flamingo_session_params);
    O(flamingo_session_params, struct_size); O(flamingo_session_params, n_ctx);
    S(flamingo_generate_params);
    O(flamingo_generate_params, struct_size); O(flamingo_generate_params, max_new_tokens);
    O(flamingo_generate_params, min_new_tokens); O(flamingo_generate_params, do_sample);
    O(flamingo_generate_params, temperature); O(flamingo_generate_params, top_k);
    O(flamingo_generate_params, top_p); O(flamingo_generate_params, num_beams);
    O(flamingo_generate_params, length_penalty); O(flamingo_generate_params, early_stopping);
    O(flamingo_generate_params, no_repeat_ngram_size); O(flamingo_generate_params, repetition_penalty);
    O(flamingo_generate_params, stop_at_endofchunk); O(flamingo_generate_params, stop_at_eos);
    O(flamingo_generate_params, seed); O(flamingo_generate_params, callback);
    O(flamingo_generate_params, callback_user_data);
    S(flamingo_media);
    O(flamingo_media, struct_size); O(flamingo_media, kind); O(flamingo_media, path);
    O(flamingo_media, data); O(flamingo_media, size); O(flamingo_media, width);
    O(flamingo_media, height); O(flamingo_media, channels);
    printf("sizeof flamingo_media_kind = %zu\n", sizeof(flamingo_media_kind));
    printf("sizeof enum (flamingo_status) = %zu\n", sizeof(flamingo_status));
    printf("sizeof flamingo_stop_reason = %zu\n", sizeof(flamingo_stop_reason));
    printf("sizeof flamingo_token_callback = %zu\n", sizeof(flamingo_token_callback));
    return 0;
}
