/* activation_backward.cl — backward of the elementwise ops: SwiGLU
 * (binv_swiglu_backward) and RoPE (binv_rope_backward).  No reduction: each
 * output element is a fixed formula of its own inputs, so the results are
 * batch invariant and deterministic by construction, and the library's
 * exp/sin/cos and correctly rounded division make the bits portable
 * (docs/schedules.md writes the formulas down).
 *
 * Built after cl/activation.cl (act_sigmoid, the forward's sigmoid) in one
 * program; cl/common.cl supplies binv_rope_pair, RoPE's one rotation. */
#pragma OPENCL FP_CONTRACT OFF

/* SwiGLU backward.  Forward y = silu(g) * u, silu(g) = g * s, s = sigmoid(g).
 * With s = act_sigmoid(g) (the forward's bits) and sn = act_sigmoid(-g) (the
 * same e = binv_exp(-|g|), the other quotient: 1 - s, correctly rounded from
 * e, not 1 - s rounded from s, which loses s's relative accuracy for large
 * g), in f32 in this order:
 *   dup   = dy * (g * s)
 *   dgate = (dy * u) * (s * fma(g, sn, 1))      [dsilu = s (1 + g (1 - s))]
 * each rounded to the dtype once on store.  An element reads g, u and dy
 * before it writes, so an output may be an input's own view (in place). */
__kernel void act_swiglu_backward(uint rows, uint cols, __global const binv_t *g, ulong g_off,
                                  ulong ldg, __global const binv_t *u, ulong u_off, ulong ldu,
                                  __global const binv_t *dy, ulong dy_off, ulong lddy,
                                  __global binv_t *dg, ulong dg_off, ulong lddg,
                                  __global binv_t *du, ulong du_off, ulong lddu) {
    const uint c = get_global_id(0), r = get_global_id(1);
    if (c >= cols) return;
    const float gv = BINV_LOAD(g, g_off + r * ldg + c);
    const float uv = BINV_LOAD(u, u_off + r * ldu + c);
    const float dv = BINV_LOAD(dy, dy_off + r * lddy + c);
    const float s = act_sigmoid(gv), sn = act_sigmoid(-gv);
    const float dup = dv * (gv * s);
    const float dgate = (dv * uv) * (s * fma(gv, sn, 1.0f));
    BINV_STORE(du, du_off + r * lddu + c, dup);
    BINV_STORE(dg, dg_off + r * lddg + c, dgate);
}

/* RoPE backward, in place: the rotation by -a of each pair of dy, with the
 * forward's angle and sin/cos bits (binv_rope_pair, inverse = 1):
 *   dx0 = dy0*c - dy1*(-s),  dx1 = dy0*(-s) + dy1*c.
 * Arguments and global size (heads*hd/2, tokens) as attn_rope's. */
__kernel void act_rope_backward(__global binv_t *x, ulong x_off, ulong ldx,
                                __global const uint *pos, ulong pos_off, uint heads, uint hd,
                                __global const float *freq) {
    const uint e = get_global_id(0), t = get_global_id(1);
    if (e >= heads * (hd / 2)) return;
    const ulong base = x_off + t * ldx;
    binv_rope_pair(x, base, x, base, e, hd, pos[pos_off + t], freq, 1);
}
