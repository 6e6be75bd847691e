#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_api.c (fuzz/corpus/api/): one valid
call sequence per op family and dtype, in the harness's byte encoding (see
the rd_* decoders in fuzz_api.c).  Sizes below 64 are one byte."""
import os, sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "api")
os.makedirs(out, exist_ok=True)
ENV = [0, 0, 0, 0]          # own ctx, main queue, no wait list, no event
ENV_EV = [0, 0, 0xE0, 1]    # wait on a completed event, return an event
OPS = dict(gemm=0, rms=1, addrms=2, ln=3, sm=4, lsm=5, rsum=6, rmean=7, swiglu=8, batch=9,
           rope=11, append=12, attn=13, ctx=14, misc=15, append_rope=16, append_rope_q=17,
           rmsbwd=18, selected=19, swiglu_bwd=20, rope_bwd=21)

def gemm(dt, ta, tb, m, n, k, env=ENV):
    lda = m if ta else k
    ldb = k if tb else n
    return [OPS["gemm"]] + env + [dt, ta, tb, m, n, k, 0, 0, 0, 1, 2, 0, lda, 0, ldb, 0, n]

def rows(op, dt, r, c, inplace=False, env=ENV):
    shape = 0x07 | (0x18 if inplace else 0)
    return [OPS[op]] + env + [dt, r, c, 0, 1, 2, 3, 4] + [0] * 8 + [0, shape]

def swiglu(dt, r, c, mode=0, env=ENV):
    return [OPS["swiglu"]] + env + [dt, r, c, 0, 1, 2] + [0] * 6 + [0x07 | mode]

def rmsbwd(dt, r, c, shape=0x07, env=ENV):
    # handles x h0, w h1, dy h2, dx h3, dweight h4; offsets and lds 0 (shape: ld = cols)
    return [OPS["rmsbwd"]] + env + [dt, r, c, 0, 1, 2, 3, 4] + [0] * 8 + [0, shape]

def swiglu_bwd(dt, r, c, shape=0x07, env=ENV):
    # gate h0, up h1, dy h2, dgate h3, dup h4; offsets and lds 0 (shape: ld = cols,
    # 0x18 in place over gate and up, 0x20 dgate over dy, 0x60 [dgate | dup], 0x80 [gate | up])
    return [OPS["swiglu_bwd"]] + env + [dt, r, c, 0, 1, 2, 3, 4] + [0] * 10 + [shape]

def batch(seqs, max_pages, num_pages=4):
    b = [OPS["batch"], 0, 0, num_pages, max_pages, len(seqs)]
    for q, extra, pages in seqs:
        b += [q, extra] + pages + [0] * (max_pages - len(pages))
    return b + [0]

def cache(dt, pages_from_batch=True, rope=False):
    # b: head_dim % 64 + 1 (RoPE fusions: 2 * (head_dim % 32 + 1)), kv_heads % 4 + 1,
    # num_pages = batch's
    return [0x07 if pages_from_batch else 0x03, dt, 4, 1, 7 if rope else 15, 3, 4]  # kvh 2, hd 16, K h3, V h4

def append(dt, env=ENV):
    return [OPS["append"]] + env + cache(dt) + [0, 1, 0, 0, 0, 0, 0x03]

def append_rope(dt, env=ENV):
    return [OPS["append_rope"]] + env + cache(dt, rope=True) + [0, 1, 0, 0, 0, 0, 0x03, 0]

def append_rope_q(dt, env=ENV, qkv=False):
    # heads = kvh * (1 % 4 + 1) = 4, q in h2 with ldq = heads*hd; or one qkv row
    # per token in h2 (q | k | v | 1 pad element)
    shape = 0x3F if qkv else 0x0F
    return ([OPS["append_rope_q"]] + env + cache(dt, rope=True) + [0, 1, 0, 0, 0, 0, shape, 0] +
            [1, 2, 0, 0])

def selected(dt, r, c, hx, hi, ho, place, mode, env=ENV):
    # ld = cols, the harness writes x and ids (mode: see do_selected), placement
    return [OPS["selected"]] + env + [dt] + r + c + [hx, hi, ho, 0, 0, 0, 0,
                                                     0x83 | place << 2 | mode << 5, 7]

def rope(dt, env=ENV, op="rope"):
    return [OPS[op]] + env + [dt, 0, 4, 7, 2, 11, 0, 0, 0, 0, 0x07]  # hd 16, positions

def attn(dt, env=ENV):
    return [OPS["attn"]] + env + cache(dt) + [1, 0, 2, 5, 0, 0, 0, 0, 0x07]  # heads 2*(1%4+1)=4

seeds = {}
for dt, name in ((0, "f32"), (1, "f16"), (2, "bf16")):
    seeds[f"gemm_nn_{name}"] = gemm(dt, 0, 0, 4, 8, 16)
    seeds[f"gemm_nt_{name}"] = gemm(dt, 0, 1, 3, 5, 40, ENV_EV)
    seeds[f"gemm_tn_{name}"] = gemm(dt, 1, 0, 7, 2, 9)
    seeds[f"gemm_k0_{name}"] = gemm(dt, 0, 0, 2, 3, 0)
    for op in ("rms", "addrms", "ln", "sm", "lsm", "rsum", "rmean"):
        seeds[f"{op}_{name}"] = rows(op, dt, 3, 40)
    seeds[f"rms_inplace_{name}"] = rows("rms", dt, 2, 33, True, ENV_EV)
    seeds[f"swiglu_{name}"] = swiglu(dt, 3, 24)
    seeds[f"rmsbwd_{name}"] = rmsbwd(dt, 3, 40)
    seeds[f"rmsbwd_acc_dy_{name}"] = rmsbwd(dt, 2, 33, 0x97, ENV_EV)  # dx over dy, accumulate
    seeds[f"swiglu_gateup_{name}"] = swiglu(dt, 2, 20, 0x20)
    seeds[f"swiglu_inplace_{name}"] = swiglu(dt, 2, 20, 0x08)
    seeds[f"step_{name}"] = (batch([(3, 7, [0]), (1, 19, [1, 2])], 2) + append(dt) + rope(dt) +
                             attn(dt))
    seeds[f"decode_{name}"] = (batch([(1, 30, [3, 2])], 2) + append(dt, ENV_EV) + attn(dt, ENV_EV))
    seeds[f"fused_step_{name}"] = (batch([(3, 7, [0]), (1, 19, [1, 2])], 2) + append_rope_q(dt) +
                                   attn(dt))
    seeds[f"fused_qkv_{name}"] = (batch([(3, 7, [0]), (1, 19, [1, 2])], 2) +
                                  append_rope_q(dt, ENV_EV, qkv=True))
    seeds[f"fused_decode_{name}"] = (batch([(1, 30, [3, 2])], 2) + append_rope(dt, ENV_EV) +
                                     attn(dt, ENV_EV))
    seeds[f"swiglu_bwd_{name}"] = swiglu_bwd(dt, 3, 24)
    seeds[f"swiglu_bwd_inplace_{name}"] = swiglu_bwd(dt, 2, 20, 0x1F, ENV_EV)
    seeds[f"swiglu_bwd_packed_{name}"] = swiglu_bwd(dt, 2, 20, 0xE7)
    seeds[f"rope_bwd_{name}"] = (batch([(3, 7, [0]), (1, 19, [1, 2])], 2) +
                                 rope(dt, op="rope_bwd") + rope(dt, ENV_EV, op="rope_bwd"))
seeds["swiglu_bwd_dy_f32"] = swiglu_bwd(0, 3, 24, 0x27)  # dgate over dy
# 3 x 40 (first and last columns among the ids); 2 x 1500 (two chunks), out
# right after ids; 2 x 4097 in the whole arena (five chunks: the split path on
# a device with more than one compute unit), one id out of range (NaN).
seeds["selected_f32"] = selected(0, [3], [40], 0, 1, 2, 0, 1)
seeds["selected_f16"] = selected(1, [2], [0xC0 | 23, 28], 0, 1, 1, 5, 0, ENV_EV)
seeds["selected_bf16"] = selected(2, [2], [0xF2], 9, 14, 14, 5, 2)
seeds["ctx_default"] = [OPS["ctx"], 0, 0, 0, 0, 0, 0]
seeds["ctx_torn"] = [OPS["ctx"], 0xC0 | 20, 0, 0, 0, 0, 0]
seeds["misc"] = [OPS["misc"], 0, 0, 5, 0, 0, 0, 0]
seeds["hostile_gemm"] = [OPS["gemm"]] + ENV + [0, 0, 0, 0xE7, 0xE1, 0xE7, 0, 0, 0, 1, 2, 0, 0xE7, 0, 0xE4, 0, 0xE1]
seeds["hostile_pool"] = (batch([(1, 0, [0])], 1) + [OPS["append"]] + ENV +
                         [0x03, 0, 0xE7, 1, 15, 3, 4] + [0, 1, 0, 0, 0, 0, 0x03])
for name, body in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([len(name) & 0xFF] + body))
print(f"{len(seeds)} seeds in {out}")
