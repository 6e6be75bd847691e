/* activation.cl — elementwise activations (no reduction: each output is a
 * function of its own inputs only, so batch invariance is immediate; the
 * library's exp makes the bits portable).
 *   swiglu: e = binv_exp(-|g|); sig = g >= 0 ? 1 / (1 + e) : e / (1 + e);
 *           y = (g * sig) * u, f32, rounded to the dtype once.
 *   (exp of -|g| never overflows, so silu of a very negative g is the tiny
 *   value it should be, not 0 from g / inf.) */

/* sigmoid(g) as swiglu computes it, the one place of that arithmetic
 * (binv_swiglu_backward, cl/activation_backward.cl, calls it too, so its s
 * has the forward's bits). */
inline float act_sigmoid(float g) {
    const float e = binv_exp(-fabs(g));
    return g >= 0.0f ? BINV_DIV(1.0f, 1.0f + e) : BINV_DIV(e, 1.0f + e);
}

__kernel void act_swiglu(uint rows, uint cols, __global const binv_t *g, ulong g_off, ulong ldg,
                         __global const binv_t *u, ulong u_off, ulong ldu, __global binv_t *y,
                         ulong y_off, ulong ldy) {
    const uint c = get_global_id(0), r = get_global_id(1);
    if (c >= cols) return;
    const float gv = BINV_LOAD(g, g_off + r * ldg + c);
    const float uv = BINV_LOAD(u, u_off + r * ldu + c);
    const float sig = act_sigmoid(gv);
    BINV_STORE(y, y_off + r * ldy + c, (gv * sig) * uv);
}
