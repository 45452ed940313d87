/* In-place softmax of rows, one work-group of 128 per row, with the
 * semantics of fk_softmax (kernels/cpu): subtract the row maximum, -inf
 * entries get exactly 0, and a row that is entirely -inf becomes uniform
 * (what PyTorch's softmax gives for a fully masked row). */
#define SOFTMAX_WG 128

__kernel __attribute__((reqd_work_group_size(SOFTMAX_WG, 1, 1)))
void softmax_rows(__global float *x, ulong xoff, int ldx, int n) {
    __local float buf[SOFTMAX_WG];
    const int lid = get_local_id(0);
    __global float *xr = x + xoff + (ulong)get_group_id(0) * ldx;
    float m = -INFINITY;
    for (int i = lid; i < n; i += SOFTMAX_WG) m = fmax(m, xr[i]);
    m = wg_max(m, buf);
    /* No early return for the all -inf row: every work-item must reach the
     * barriers below (PoCL miscompiles a return between barriers). Each
     * entry counts 1 there, so the row becomes 1·(1/n). */
    const int all_masked = m == -INFINITY;
    float s = 0.0f;
    for (int i = lid; i < n; i += SOFTMAX_WG) {
        const float e = all_masked ? 1.0f : xr[i] == -INFINITY ? 0.0f : exp(xr[i] - m);
        xr[i] = e;
        s += e;
    }
    const float inv = 1.0f / wg_sum(s, buf);
    for (int i = lid; i < n; i += SOFTMAX_WG) xr[i] *= inv;
}
