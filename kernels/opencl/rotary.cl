/* Rotary embedding, rotate-half convention (GPT-NeoX, LLaMA), in place on
 * the first `dims` channels of each of `heads` heads (head h at column
 * h·head_dim) of each row, at that row's position id. inv_freq[i] =
 * 1/theta^(2i/dims) comes from the host, computed exactly as the CPU does:
 * a device pow() of a few ulp would shift angles of position ~2000 by 1e-3. */
#define ROPE_WG 64

__kernel __attribute__((reqd_work_group_size(ROPE_WG, 1, 1)))
void rotary(__global float *x, ulong xoff, int ldx,
            const __global int *pos, ulong posoff,
            const __global float *inv_freq,
            int heads, int head_dim, int half_dims) {
    const int i = get_global_id(0);
    const ulong r = get_global_id(1);
    if (i >= half_dims) return;
    const float angle = (float)pos[posoff + r] * inv_freq[i];
    const float c = cos(angle), s = sin(angle);
    __global float *row = x + xoff + r * ldx;
    for (int h = 0; h < heads; h++) {
        __global float *p = row + h * head_dim;
        const float a = p[i], b = p[i + half_dims];
        p[i] = a * c - b * s;
        p[i + half_dims] = b * c + a * s;
    }
}
