/* Embedding lookup: row r of y = row ids[r] of the table (f32, f16 or bf16,
 * widened to f32). An id outside [0, vocab) gives a zero row instead of a
 * read outside the table; the host validates ids before they get here. */
#define EMB_WG 64

static inline void embedding_body(const __global int *ids, ulong idoff,
                                  const __global uchar *table, ulong toff, int ldt, int wt, int vocab,
                                  __global float *y, ulong yoff, int ldy, int dim) {
    const int c = get_global_id(0);
    const ulong r = get_global_id(1);
    if (c >= dim) return;
    const int id = ids[idoff + r];
    y[yoff + r * ldy + c] = (id >= 0 && id < vocab) ? load_w(table, wt, toff + (ulong)id * ldt + c) : 0.0f;
}

#define EMBEDDING_KERNEL(NAME, WT)                                                                   \
__kernel __attribute__((reqd_work_group_size(EMB_WG, 1, 1)))                                         \
void NAME(const __global int *ids, ulong idoff,                                                      \
          const __global uchar *table, ulong toff, int ldt, int vocab,                               \
          __global float *y, ulong yoff, int ldy, int dim) {                                         \
    embedding_body(ids, idoff, table, toff, ldt, WT, vocab, y, yoff, ldy, dim);                      \
}

EMBEDDING_KERNEL(embedding_f32, WT_F32)
EMBEDDING_KERNEL(embedding_f16, WT_F16)
EMBEDDING_KERNEL(embedding_bf16, WT_BF16)
