/* attention.cl — paged KV cache, RoPE and causal grouped-query attention.
 * Batch-invariant and portable.
 *
 * REDUCTION ORDER (docs/schedules.md; identical in attn_chunks and
 * attn_merge, whichever of them finishes a token).  For a query row q (one
 * token t at position p, one head) the keys 0..p are cut into chunks of CH
 * keys at fixed positions: chunk c = keys [c*CH, min((c+1)*CH, p+1)).
 * CH = binv_attention_split_size() (256), a library constant.  In chunk c:
 *   s_j = (sequential fma chain over d = 0..D-1 of q_d * k_jd, from +0) * scale
 *   m_c = max_j s_j          (j ascending; `s > m` keeps the first maximum;
 *                             max is exact, so only NaN handling depends on it)
 *   p_j = binv_exp(s_j - m_c)
 *   l_c = sum_j p_j           sequential, j ascending, from +0: l = fma(p_j, 1, l)
 *   a_cd = sum_j p_j v_jd     sequential, j ascending, from +0: a = fma(p_j, v_jd, a)
 * Chunks are merged left to right (c = 0, 1, ...) into a state (M, L, A_d):
 *   c = 0:  M = m_0, L = l_0, A_d = a_0d   (copied)
 *   c > 0:  M' = max(M, m_c); x = binv_exp(M - M'); y = binv_exp(m_c - M');
 *           L = fma(l_c, y, L * x); A_d = fma(a_cd, y, A_d * x); M = M'
 * Output o_d = A_d / L (correctly rounded), stored in the dtype.
 *
 * WHO COMPUTES WHAT (never changes the bits above).  A work-group takes TB
 * tokens of one sequence x GB query heads of one KV group (R = TB*GB query
 * rows) and a range of chunks (a "split" of split_chunks chunks).  With one
 * split covering every chunk (fused) it merges all chunks itself and writes
 * o; otherwise it writes its split's state (M, A_0..A_{D-1}, L) and
 * attn_merge merges the splits left to right with the same formula.  The
 * merge of a split state that holds exactly one chunk is the merge of that
 * chunk, so the invariant split size of one chunk gives the fused bits.
 * BINV_SCHEDULE_ADAPTIVE passes split_chunks > 1 with several splits: then
 * splits are merged as blocks, which is a different (batch-dependent) order.
 *
 * Compile-time parameters: D head_dim, GB heads per work-group, TB tokens per
 * work-group, J keys per local tile, WG work-group size. */

#ifndef CH
#define CH 256
#endif
#ifndef D
#define D 64
#endif
#ifndef GB
#define GB 1
#endif
#ifndef TB
#define TB 1
#endif
#ifndef J
#define J 32
#endif
#ifndef WG
#define WG 64
#endif

#define R (TB * GB)
#define DP (D + 1)               /* local row pitch (no bank conflicts) and outputs per row */
#define NOUT (R * DP)            /* outputs per group: A_0..A_{D-1} and L for each row */
#define NPW ((NOUT + WG - 1) / WG)
#define PAGE 16

/* Storage elements copied bit for bit (append never converts). */
#if BINV_DTYPE == 1
typedef uint binv_raw_t;
#else
typedef ushort binv_raw_t;
#endif

/* Batch metadata (one cl_uint buffer, see src/attention.c):
 *   positions[T] at 0, token_seq[T] at T, ctx_lens[S] at ctx_off,
 *   page_table[S][max_pages] at pt_off. */
inline ulong attn_slot(__global const uint *meta, uint pt_off, uint max_pages, uint seq,
                       uint pos) {
    const uint page = meta[pt_off + seq * max_pages + pos / PAGE];
    return (ulong)page * PAGE + (pos % PAGE);
}

/* K_new / V_new rows into their pages: global (kv_heads*head_dim, tokens). */
__kernel void attn_append(__global const uint *meta, uint ntok, uint pt_off, uint max_pages,
                          uint kvd, __global const binv_raw_t *kn, ulong k_off, ulong ldk,
                          __global const binv_raw_t *vn, ulong v_off, ulong ldv,
                          __global binv_raw_t *kpool, __global binv_raw_t *vpool) {
    const uint e = get_global_id(0), t = get_global_id(1);
    if (e >= kvd) return;
    const uint seq = meta[ntok + t], pos = meta[t];
    const ulong dst = attn_slot(meta, pt_off, max_pages, seq, pos) * kvd + e;
    kpool[dst] = kn[k_off + t * ldk + e];
    vpool[dst] = vn[v_off + t * ldv + e];
}

/* ---- sin / cos from +, *, fma (same bits everywhere) ----
 * a = k*pi/2 + r with k = rint(a * 2/pi) and pi/2 = C1 + C2 + C3 (C1 the
 * float nearest pi/2): fma computes k*C1 exactly and a - k*C1 is a multiple
 * of 2^-23 of magnitude < 2, hence exact, for |k| < 2^22; the next two steps
 * round once each.  |r| <= pi/4 (+ a rounding); minimax polynomials of
 * cephes' sinf/cosf.  Absolute error < 3e-7 for |a| < 2^21 (tests check). */
inline void binv_sincos(float a, float *s, float *c) {
    const float k = rint(a * 0.636619746685028076f);
    float r = fma(k, -1.57079637050628662f, a);
    r = fma(k, 4.37113882867379300e-8f, r);
    r = fma(k, 1.71512451000588190e-15f, r);
    const float z = r * r;
    float ps = -1.9515295891e-4f;
    ps = fma(ps, z, 8.3321608736e-3f);
    ps = fma(ps, z, -1.6666654611e-1f);
    const float sr = fma(ps * z, r, r);
    float pc = 2.443315711809948e-5f;
    pc = fma(pc, z, -1.388731625493765e-3f);
    pc = fma(pc, z, 4.166664568298827e-2f);
    const float cr = fma(pc * z, z, fma(-0.5f, z, 1.0f));
    const int q = ((int)k) & 3;
    float sv = (q & 1) ? cr : sr, cv = (q & 1) ? sr : cr;
    if (q == 1 || q == 2) cv = -cv;
    if (q >= 2) sv = -sv;
    *s = sv;
    *c = cv;
}

/* In-place rotary embedding, interleaved pairs.  global (heads*D/2, tokens).
 * freq[i] = theta^(-2i/D) rounded to float (a table the host computes once
 * per (theta, D), see src/attention.c); angle = (float)pos * freq[i]. */
__kernel void attn_rope(__global binv_t *x, ulong x_off, ulong ldx, __global const uint *pos,
                        ulong pos_off, uint heads, uint hd, __global const float *freq) {
    const uint e = get_global_id(0), t = get_global_id(1);
    const uint half_d = hd / 2;
    if (e >= heads * half_d) return;
    const uint h = e / half_d, i = e % half_d;
    const float ang = (float)pos[pos_off + t] * freq[i];
    float s, c;
    binv_sincos(ang, &s, &c);
    const ulong base = x_off + t * ldx + (ulong)h * hd + 2 * i;
    const float x0 = BINV_LOAD(x, base), x1 = BINV_LOAD(x, base + 1);
    BINV_STORE(x, base, x0 * c - x1 * s);
    BINV_STORE(x, base + 1, x0 * s + x1 * c);
}

/* The merge step of the schedule, for one output column (A or L). */
inline void attn_merge_step(float *M, float *A, float m, float a, int first) {
    if (first) {
        *M = m;
        *A = a;
        return;
    }
    const float mn = *M > m ? *M : m; /* NaN: keeps M (the value is NaN anyway) */
    const float x = binv_exp(*M - mn), y = binv_exp(m - mn);
    *A = fma(a, y, *A * x);
    *M = mn;
}

/* One work-group: work item e = (seq, first token, tokens, split) of the
 * work list, head block get_group_id(1) (GB query heads of one KV head). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attn_chunks(__global const uint *meta, uint ntok, uint pt_off, uint max_pages,
                 __global const uint4 *work, __global const uint *part_base,
                 __global const binv_t *q, ulong q_off, ulong ldq,
                 __global binv_t *o, ulong o_off, ulong ldo,
                 __global const binv_t *kpool, __global const binv_t *vpool,
                 uint heads, uint kv_heads, float scale, uint split_chunks,
                 __global float *part) {
    __local float q_l[R * D];
    __local float kv_l[J * DP];
    __local float s_l[R * CH];
    __local float m_l[R];
    __local int n_l[R];
    __local float L_l[R];

    const uint lid = get_local_id(0);
    const uint4 w = work[get_group_id(0)];
    const uint seq = w.s0, t0 = w.s1, nt = w.s2, sp = w.s3;
    const uint hq0 = get_group_id(1) * GB;
    const uint kvh = hq0 / (heads / kv_heads);
    const uint kvd = kv_heads * D;
    const uint maxpos = meta[t0 + nt - 1]; /* positions grow within a sequence */

    for (uint i = lid; i < R * D; i += WG) {
        const uint r = i / D, d = i % D, tb = r / GB, g = r % GB;
        q_l[i] = tb < nt ? BINV_LOAD(q, q_off + (ulong)(t0 + tb) * ldq + (ulong)(hq0 + g) * D + d)
                         : 0.0f;
    }

    float st_m[NPW], st_a[NPW], acc[NPW];
    int started[NPW];
    for (int k = 0; k < NPW; k++) started[k] = 0;

    const uint nch = maxpos / CH + 1;
    const uint c_first = sp * split_chunks;
    const uint c_last = (ulong)c_first + split_chunks < nch ? c_first + split_chunks : nch;
    for (uint c = c_first; c < c_last; c++) {
        const uint key0 = c * CH;
        const uint nk = maxpos + 1 - key0 < CH ? maxpos + 1 - key0 : CH;
        /* scores of the chunk's keys for all R rows */
        for (uint sub = 0; sub < nk; sub += J) {
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint i = lid; i < J * D; i += WG) {
                const uint jj = i / D, d = i % D;
                if (sub + jj < nk) {
                    const ulong slot = attn_slot(meta, pt_off, max_pages, seq, key0 + sub + jj);
                    kv_l[jj * DP + d] = BINV_LOAD(kpool, (slot * kvd) + (ulong)kvh * D + d);
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint i = lid; i < R * J; i += WG) {
                const uint r = i / J, jj = i % J;
                if (sub + jj < nk) {
                    float dot = 0.0f;
                    for (uint d = 0; d < D; d++) dot = fma(q_l[r * D + d], kv_l[jj * DP + d], dot);
                    s_l[r * CH + sub + jj] = dot * scale;
                }
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < R) {
            const uint tb = lid / GB;
            int n = 0;
            if (tb < nt) {
                const uint p = meta[t0 + tb];
                n = p + 1 > key0 ? (int)min((uint)CH, p + 1 - key0) : 0;
            }
            float m = -INFINITY;
            for (int j = 0; j < n; j++) {
                const float s = s_l[lid * CH + j];
                m = s > m ? s : m;
            }
            m_l[lid] = m;
            n_l[lid] = n;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint i = lid; i < R * CH; i += WG) {
            const uint r = i / CH, j = i % CH;
            if ((int)j < n_l[r]) s_l[i] = binv_exp(s_l[i] - m_l[r]);
        }
        for (int k = 0; k < NPW; k++) acc[k] = 0.0f;
        for (uint sub = 0; sub < nk; sub += J) {
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint i = lid; i < J * D; i += WG) {
                const uint jj = i / D, d = i % D;
                if (sub + jj < nk) {
                    const ulong slot = attn_slot(meta, pt_off, max_pages, seq, key0 + sub + jj);
                    kv_l[jj * DP + d] = BINV_LOAD(vpool, (slot * kvd) + (ulong)kvh * D + d);
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int k = 0; k < NPW; k++) {
                const uint oi = lid + k * WG;
                if (oi < NOUT) {
                    const uint r = oi / DP, d = oi % DP;
                    const int lim = min(n_l[r] - (int)sub, J);
                    float a = acc[k];
                    for (int jj = 0; jj < lim; jj++) {
                        const float v = d < D ? kv_l[jj * DP + d] : 1.0f;
                        a = fma(s_l[r * CH + sub + jj], v, a);
                    }
                    acc[k] = a;
                }
            }
        }
        for (int k = 0; k < NPW; k++) {
            const uint oi = lid + k * WG;
            if (oi < NOUT && n_l[oi / DP] > 0) {
                attn_merge_step(&st_m[k], &st_a[k], m_l[oi / DP], acc[k], !started[k]);
                started[k] = 1;
            }
        }
    }

    /* L of each row to every work-item of that row */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = 0; k < NPW; k++) {
        const uint oi = lid + k * WG;
        if (oi < NOUT && oi % DP == D) L_l[oi / DP] = started[k] ? st_a[k] : 1.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = 0; k < NPW; k++) {
        const uint oi = lid + k * WG;
        if (oi >= NOUT || !started[k]) continue;
        const uint r = oi / DP, d = oi % DP, tb = r / GB, g = r % GB;
        const uint t = t0 + tb, hq = hq0 + g;
        const uint nsplit = (meta[t] / CH) / split_chunks + 1;
        if (nsplit == 1) {
            if (d < D) BINV_STORE(o, o_off + (ulong)t * ldo + (ulong)hq * D + d, st_a[k] / L_l[r]);
        } else {
            const ulong rec = ((ulong)part_base[t] + sp) * heads + hq;
            part[rec * (D + 2) + 1 + d] = st_a[k];
            if (d == 0) part[rec * (D + 2)] = st_m[k];
        }
    }
}

/* Merges the split states of tokens that have more than one split, left to
 * right.  One work-group per (token, head); items loop over the columns. */
__kernel void attn_merge(__global const uint *meta, __global const uint *part_base,
                         __global const float *part, __global binv_t *o, ulong o_off, ulong ldo,
                         uint heads, uint split_chunks) {
    const uint t = get_group_id(0), hq = get_group_id(1);
    const uint nsplit = (meta[t] / CH) / split_chunks + 1;
    if (nsplit == 1) return;
    for (uint d = get_local_id(0); d < D; d += get_local_size(0)) {
        float M = 0.0f, A = 0.0f, ML = 0.0f, L = 0.0f;
        for (uint s = 0; s < nsplit; s++) {
            __global const float *rec = part + (((ulong)part_base[t] + s) * heads + hq) * (D + 2);
            attn_merge_step(&M, &A, rec[0], rec[1 + d], s == 0);
            attn_merge_step(&ML, &L, rec[0], rec[1 + D], s == 0);
        }
        BINV_STORE(o, o_off + (ulong)t * ldo + (ulong)hq * D + d, A / L);
    }
}
