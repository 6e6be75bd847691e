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
 * work-group, J keys per local tile, WG work-group size, VEC 16-byte loads. */

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
#ifndef VEC
#define VEC 0
#endif

#ifndef BLK
#define BLK 0
#endif

#define R (TB * GB)
#define DP (D + 1)               /* outputs per row: A_0..A_{D-1} and L */
#define NOUT (R * DP)            /* outputs per group */
#define PAGE 16

/* Private arrays that stay live across a barrier are declared with a size
 * that is a multiple of 16 bytes (PRIV4: float/int counts rounded up to 4),
 * whatever of them is used.  PoCL's cbs method keeps one copy of such an
 * array per work-item, packed at the array's size, while the code keeps the
 * 16-byte alignment that clang gives arrays of 16 bytes or more (x86-64):
 * with a 20-byte array every other copy is misaligned and the aligned vector
 * stores fault (docs/portability.md).  Storage only: the arithmetic is the
 * same. */
#define PRIV4(n) (((n) + 3) / 4 * 4)

/* Who owns which output (r, d) (d = D is L) in the chunk sums and merges.
 * BLK = 0: output oi = lid + k*WG, r = oi / DP, d = oi % DP.
 * BLK = 1 (D a multiple of 4, WG a multiple of D/4): item lid takes the
 *   column quad d4 = lid % (D/4) of rows rg, rg + NRG, ... (rg = lid / (D/4)):
 *   slot k = kr*5 + c is row rg + kr*NRG, column 4*d4 + c (c < 4) or L
 *   (c = 4, only for d4 = 0); it reads 4 values of V with one 16-byte local
 *   load and the probability once for the four (register blocking).  The
 *   sums are the same sequential chains either way. */
#if BLK
#define Q4 (D / 4)
#define NRG (WG / Q4)
#define RB2 ((R + NRG - 1) / NRG)
#define NPW (RB2 * 5)
#define DPK (D + 4)              /* local row pitch of K/V: 16-byte aligned rows */
#define RBS ((R + (WG / J) - 1) / (WG / J)) /* rows per item in the scores */
#else
#define NPW ((NOUT + WG - 1) / WG)
#define DPK (D + 1)              /* local row pitch of K/V: no bank conflicts */
#endif

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

/* The rotation of one interleaved pair (attn_rope, attn_append_rope): the
 * forward rotation of cl/common.cl's binv_rope_pair, the one place of RoPE's
 * arithmetic, so the fused append writes the bits of attn_rope followed by
 * attn_append (and binv_rope_backward's rotation shares the angle's bits). */
inline void attn_rope_pair(__global const binv_t *src, ulong sb, __global binv_t *dst, ulong db,
                           uint e, uint hd, uint pos, __global const float *freq) {
    binv_rope_pair(src, sb, dst, db, e, hd, pos, freq, 0);
}

/* In-place rotary embedding, interleaved pairs.  global (heads*D/2, tokens). */
__kernel void attn_rope(__global binv_t *x, ulong x_off, ulong ldx, __global const uint *pos,
                        ulong pos_off, uint heads, uint hd, __global const float *freq) {
    const uint e = get_global_id(0), t = get_global_id(1);
    if (e >= heads * (hd / 2)) return;
    const ulong base = x_off + t * ldx;
    attn_rope_pair(x, base, x, base, e, hd, pos[pos_off + t], freq);
}

/* attn_append with RoPE on the way (binv_kv_append_rope): pair e < kvd/2 of
 * token t writes rope(K_new) and V_new's two elements into the token's slot;
 * k_new is only read.  With nq > 0 (binv_kv_append_rope_q) items
 * kvd/2 <= e < kvd/2 + nq also rotate pair e - kvd/2 of Q's row in place, as
 * attn_rope does.  The position is the batch's (meta[t]), the same value
 * binv_rope reads from binv_kv_batch_positions.  global (kvd/2 + nq, tokens). */
__kernel void attn_append_rope(__global const uint *meta, uint ntok, uint pt_off, uint max_pages,
                               uint kvd, uint hd, __global const binv_t *kn, ulong k_off,
                               ulong ldk, __global const binv_raw_t *vn, ulong v_off, ulong ldv,
                               __global binv_t *kpool, __global binv_raw_t *vpool,
                               __global const float *freq, uint nq, __global binv_t *q,
                               ulong q_off, ulong ldq) {
    const uint e = get_global_id(0), t = get_global_id(1);
    const uint kp = kvd / 2, pos = meta[t];
    if (e >= kp) {
        if (e - kp >= nq) return;
        const ulong qb = q_off + t * ldq;
        attn_rope_pair(q, qb, q, qb, e - kp, hd, pos, freq);
        return;
    }
    const uint seq = meta[ntok + t];
    const ulong row = attn_slot(meta, pt_off, max_pages, seq, pos) * kvd;
    attn_rope_pair(kn, k_off + t * ldk, kpool, row, e, hd, pos, freq);
    vpool[row + 2 * e] = vn[v_off + t * ldv + 2 * e];
    vpool[row + 2 * e + 1] = vn[v_off + t * ldv + 2 * e + 1];
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

/* Loads keys [sub, sub + J) of the chunk (those < nk) of one KV head into
 * registers (attn_fetch), then into kv_l as f32 (attn_put).  The loop over a
 * chunk's tiles issues the next tile's loads before it computes on the
 * current one, so the loads are in flight during the arithmetic (software
 * pipelining through registers).  VEC: 16-byte loads (head_dim a multiple of
 * BINV_VW, pools 16-byte aligned). */
#if VEC
#define LW BINV_VW
#else
#define LW 1
#endif
#define NLD ((J * D / LW + WG - 1) / WG)
#define NLDP (PRIV4(NLD * LW) / LW) /* tile rows declared (NLD used) */
inline void attn_fetch(__global const binv_t *pool, __local const uint *slot_l, uint kvd,
                       uint kvh, uint sub, uint nk, uint lid, float v[NLD][LW]) {
#pragma unroll
    for (uint n = 0; n < NLD; n++) {
        const uint i = lid + n * WG, jj = i / (D / LW), d = (i % (D / LW)) * LW;
        if (i < J * D / LW && sub + jj < nk) {
            const ulong idx = (ulong)slot_l[sub + jj] * kvd + (ulong)kvh * D + d;
#if VEC
            binv_load_vec(pool, idx, v[n]);
#else
            v[n][0] = BINV_LOAD(pool, idx);
#endif
        }
    }
}
inline void attn_put(uint sub, uint nk, uint lid, float v[NLD][LW], __local float *kv_l) {
#pragma unroll
    for (uint n = 0; n < NLD; n++) {
        const uint i = lid + n * WG, jj = i / (D / LW), d = (i % (D / LW)) * LW;
        if (i < J * D / LW && sub + jj < nk)
            for (uint k = 0; k < LW; k++) kv_l[jj * DPK + d + k] = v[n][k];
    }
}

/* One step of a chunk's tile loop: the tile fetched last step goes to local
 * memory, then the next tile's loads are issued (in flight while the caller
 * computes on this one).  Every work-item calls it (barriers). */
inline void attn_tile_step(__global const binv_t *pool, __local const uint *slot_l, uint kvd,
                           uint kvh, uint sub, uint nk, uint lid, float tile[NLD][LW],
                           __local float *kv_l) {
    barrier(CLK_LOCAL_MEM_FENCE);
    attn_put(sub, nk, lid, tile, kv_l);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (sub + J < nk) attn_fetch(pool, slot_l, kvd, kvh, sub + J, nk, lid, tile);
}

/* Lanes per row for the max (a power of two, R * MAXL <= WG).  The max of a
 * set is exact, so its tree is free: only the sign of a zero maximum can
 * depend on it, and that never reaches an output (exp(s - m) and the merge
 * weights are the same for m = +0 and m = -0). */
#if WG / R >= 64
#define MAXL 64
#elif WG / R >= 32
#define MAXL 32
#elif WG / R >= 16
#define MAXL 16
#elif WG / R >= 8
#define MAXL 8
#elif WG / R >= 4
#define MAXL 4
#elif WG / R >= 2
#define MAXL 2
#else
#define MAXL 1
#endif

/* Output slot k of item lid: its row and column; 0 if the slot is unused. */
inline int attn_out(uint lid, int k, uint *r, uint *d) {
#if BLK
    const uint d4 = lid % Q4, c = (uint)k % 5;
    *r = lid / Q4 + (uint)(k / 5) * NRG;
    *d = c < 4 ? 4 * d4 + c : D;
    return *r < R && (c < 4 || d4 == 0);
#else
    const uint oi = lid + (uint)k * WG;
    *r = oi / DP;
    *d = oi % DP;
    return oi < NOUT;
#endif
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
    __local float4 q4[(R * D + 3) / 4];
    __local float4 kv4[(J * DPK + 3) / 4];
    __local float *q_l = (__local float *)q4, *kv_l = (__local float *)kv4;
    __local float s_l[R * CH];
    __local float m_l[R];
    __local int n_l[R];
    __local float L_l[R];
    __local uint slot_l[CH];
    __local float mx_l[WG];

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

    float st_m[PRIV4(NPW)], st_a[PRIV4(NPW)], acc[PRIV4(NPW)];
    float tile[NLDP][LW];
    int started[PRIV4(NPW)];
    for (int k = 0; k < NPW; k++) started[k] = 0;

    const uint nch = maxpos / CH + 1;
    const uint c_first = sp * split_chunks;
    const uint c_last = (ulong)c_first + split_chunks < nch ? c_first + split_chunks : nch;
    /* The chunk loop tests its bound at the bottom.  c_first < c_last for
     * every work item the host builds (split sp of a token whose last
     * position is maxpos has sp * split_chunks <= maxpos / CH), so it runs at
     * least once and nothing computed before it reaches the code after it by
     * a path that skips it.  With the test at the top, the compiler merged the
     * output rows attn_out gives inside and after the loop through a PHI node
     * at the barrier after the loop, and PoCL 6's cbs code then stored L_l at
     * a garbage row for some work-items (docs/portability.md). */
    for (uint c = c_first;;) {
        const uint key0 = c * CH;
        const uint nk = maxpos + 1 - key0 < CH ? maxpos + 1 - key0 : CH;
        /* cache slot of every key of the chunk; keys of each row */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint j = lid; j < nk; j += WG)
            slot_l[j] = (uint)attn_slot(meta, pt_off, max_pages, seq, key0 + j);
        if (lid < R) {
            const uint tb = lid / GB;
            int n = 0;
            if (tb < nt) {
                const uint p = meta[t0 + tb];
                n = p + 1 > key0 ? (int)min((uint)CH, p + 1 - key0) : 0;
            }
            n_l[lid] = n;
        }
        /* scores of the chunk's keys for all R rows */
        barrier(CLK_LOCAL_MEM_FENCE);
        attn_fetch(kpool, slot_l, kvd, kvh, 0, nk, lid, tile);
        for (uint sub = 0; sub < nk; sub += J) {
            attn_tile_step(kpool, slot_l, kvd, kvh, sub, nk, lid, tile, kv_l);
#if BLK
            {   /* key jj = lid % J against rows rg, rg + WG/J, ...: one 16-byte
                 * load of K per 4 columns, shared by the rows */
                const uint jj = lid % J, rg = lid / J;
                float dot[RBS];
                for (int k = 0; k < RBS; k++) dot[k] = 0.0f;
                if (sub + jj < nk)
                    for (uint d4 = 0; d4 < D / 4; d4++) {
                        const float4 kv = kv4[(jj * DPK) / 4 + d4];
#pragma unroll
                        for (int k = 0; k < RBS; k++) {
                            const uint r = rg + (uint)k * (WG / J);
                            if (r < R) {
                                const float4 qv = q4[(r * D) / 4 + d4];
                                float t = dot[k];
                                t = fma(qv.x, kv.x, t);
                                t = fma(qv.y, kv.y, t);
                                t = fma(qv.z, kv.z, t);
                                dot[k] = fma(qv.w, kv.w, t);
                            }
                        }
                    }
                for (int k = 0; k < RBS; k++) {
                    const uint r = rg + (uint)k * (WG / J);
                    if (r < R && sub + jj < nk) s_l[r * CH + sub + jj] = dot[k] * scale;
                }
            }
#else
            for (uint i = lid; i < R * J; i += WG) {
                const uint r = i / J, jj = i % J;
                if (sub + jj < nk) {
                    float dot = 0.0f;
                    for (uint d = 0; d < D; d++) dot = fma(q_l[r * D + d], kv_l[jj * DPK + d], dot);
                    s_l[r * CH + sub + jj] = dot * scale;
                }
            }
#endif
        }
        attn_fetch(vpool, slot_l, kvd, kvh, 0, nk, lid, tile); /* in flight during max, exp */
        barrier(CLK_LOCAL_MEM_FENCE);
        {
            const uint r = lid / MAXL, ln = lid % MAXL;
            float m = -INFINITY;
            if (r < R)
                for (int j = (int)ln; j < n_l[r]; j += MAXL) {
                    const float sv = s_l[r * CH + j];
                    m = sv > m ? sv : m;
                }
            mx_l[lid] = m;
            for (uint h = MAXL / 2; h > 0; h /= 2) {
                barrier(CLK_LOCAL_MEM_FENCE);
                if (ln < h) {
                    const float o2 = mx_l[lid + h];
                    mx_l[lid] = o2 > mx_l[lid] ? o2 : mx_l[lid];
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            if (lid < R) m_l[lid] = mx_l[lid * MAXL];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint i = lid; i < R * CH; i += WG) {
            const uint r = i / CH, j = i % CH;
            if ((int)j < n_l[r]) s_l[i] = binv_exp(s_l[i] - m_l[r]);
        }
        for (int k = 0; k < NPW; k++) acc[k] = 0.0f;
        for (uint sub = 0; sub < nk; sub += J) {
            attn_tile_step(vpool, slot_l, kvd, kvh, sub, nk, lid, tile, kv_l);
#if BLK
            for (int kr = 0; kr < RB2; kr++) {
                const uint d4 = lid % Q4, r = lid / Q4 + (uint)kr * NRG;
                if (r < R) {
                    const int lim = min(n_l[r] - (int)sub, J);
                    float a0 = acc[kr * 5], a1 = acc[kr * 5 + 1], a2 = acc[kr * 5 + 2],
                          a3 = acc[kr * 5 + 3], al = acc[kr * 5 + 4];
                    for (int jj = 0; jj < lim; jj++) {
                        const float p = s_l[r * CH + sub + jj];
                        const float4 v = kv4[(jj * DPK) / 4 + d4];
                        a0 = fma(p, v.x, a0);
                        a1 = fma(p, v.y, a1);
                        a2 = fma(p, v.z, a2);
                        a3 = fma(p, v.w, a3);
                        al = fma(p, 1.0f, al);
                    }
                    acc[kr * 5] = a0; acc[kr * 5 + 1] = a1; acc[kr * 5 + 2] = a2;
                    acc[kr * 5 + 3] = a3; acc[kr * 5 + 4] = al;
                }
            }
#else
            for (int k = 0; k < NPW; k++) {
                const uint oi = lid + k * WG;
                if (oi < NOUT) {
                    const uint r = oi / DP, d = oi % DP;
                    const int lim = min(n_l[r] - (int)sub, J);
                    float a = acc[k];
                    for (int jj = 0; jj < lim; jj++) {
                        const float v = d < D ? kv_l[jj * DPK + d] : 1.0f;
                        a = fma(s_l[r * CH + sub + jj], v, a);
                    }
                    acc[k] = a;
                }
            }
#endif
        }
        for (int k = 0; k < NPW; k++) {
            uint r, d;
            if (attn_out(lid, k, &r, &d) && n_l[r] > 0) {
                attn_merge_step(&st_m[k], &st_a[k], m_l[r], acc[k], !started[k]);
                started[k] = 1;
            }
        }
        if (++c >= c_last) break;
    }

    /* L of each row to every work-item of that row */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = 0; k < NPW; k++) {
        uint r, d;
        if (attn_out(lid, k, &r, &d) && d == D) L_l[r] = started[k] ? st_a[k] : 1.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = 0; k < NPW; k++) {
        uint r, d;
        if (!attn_out(lid, k, &r, &d) || !started[k]) continue;
        const uint tb = r / GB, g = r % GB;
        const uint t = t0 + tb, hq = hq0 + g;
        const uint nsplit = (meta[t] / CH) / split_chunks + 1;
        if (nsplit == 1) {
            if (d < D) BINV_STORE(o, o_off + (ulong)t * ldo + (ulong)hq * D + d, BINV_DIV(st_a[k], L_l[r]));
        } else {
            const ulong rec = ((ulong)part_base[t] + sp) * heads + hq;
            part[rec * (D + 2) + 1 + d] = st_a[k];
            if (d == 0) part[rec * (D + 2)] = st_m[k];
        }
    }
}

/* Merges the split states of tokens that have more than one split, left to
 * right.  One work-group per (token, head).  The running maximum and the two
 * weights of each merge (x = exp(M - M'), y = exp(m_s - M'), exactly as
 * attn_merge_step computes them) are worked out once per state in local
 * memory, MS states at a time; then every item folds its columns with two
 * fma per state. */
#define MS 128
__kernel void attn_merge(__global const uint *meta, __global const uint *part_base,
                         __global const float *part, __global binv_t *o, ulong o_off, ulong ldo,
                         uint heads, uint split_chunks) {
    __local float xw[MS], yw[MS], mm[MS];
    __local float carry;
    const uint t = get_group_id(0), hq = get_group_id(1), lid = get_local_id(0);
    const uint nl = get_local_size(0);
    const uint nsplit = (meta[t] / CH) / split_chunks + 1;
    if (nsplit == 1) return; /* the whole group: no barrier is skipped by part of it */
    __global const float *base = part + ((ulong)part_base[t] * heads + hq) * (D + 2);
    const ulong stride = (ulong)heads * (D + 2);
    float A[PRIV4((D + 1 + 31) / 32)]; /* columns lid, lid + nl, ... (nl >= 32); column D is L */
    for (uint s0 = 0; s0 < nsplit; s0 += MS) {
        const uint n = min((uint)MS, nsplit - s0);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint k = lid; k < n; k += nl) mm[k] = base[(s0 + k) * stride];
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0) {
            float M = carry;
            for (uint k = 0; k < n; k++) {
                const float m = mm[k];
                if (s0 + k == 0) {
                    M = m;
                    continue;
                }
                const float mn = M > m ? M : m;
                xw[k] = M - mn;
                yw[k] = m - mn;
                M = mn;
            }
            carry = M;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint k = lid; k < n; k += nl)
            if (s0 + k > 0) {
                xw[k] = binv_exp(xw[k]);
                yw[k] = binv_exp(yw[k]);
            }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint c = 0, d = lid; d <= D; c++, d += nl) {
            float a = A[c];
            for (uint k = 0; k < n; k++) {
                const float v = base[(s0 + k) * stride + 1 + d];
                a = s0 + k == 0 ? v : fma(v, yw[k], a * xw[k]);
            }
            A[c] = a;
        }
    }
    /* L (column D) to every item, then the outputs */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint c = 0, d = lid; d <= D; c++, d += nl)
        if (d == D) carry = A[c];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint c = 0, d = lid; d < D; c++, d += nl)
        BINV_STORE(o, o_off + (ulong)t * ldo + (ulong)hq * D + d, BINV_DIV(A[c], carry));
}
