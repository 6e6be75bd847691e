#!/usr/bin/env python3
"""PyTorch counterpart of `binv-bench --op decode`: the same Llama-shaped model
(synthetic weights, tied embeddings) decoding one token per sequence per step,
in bf16 with cuBLAS, scaled_dot_product_attention and a contiguous KV cache,
eager and replayed from a CUDA graph.  A step's logits stay on the device, as
in binv-bench.  The floor is the same: (weight bytes + K/V bytes of the
contexts) / copy bandwidth, where the copy bandwidth is measured here with a
device-to-device copy of 1 GiB counted as bytes read + bytes written.

Optional everywhere: without PyTorch or a CUDA device it says so and exits 0.

    python3 bench/torch_reference.py [--model 1b|dim,hidden,layers,heads,kv_heads,vocab]
        [--batch 1,8,64] [--ctx 1024,4096] [--steps 20] [--csv FILE]
"""
import argparse
import csv
import sys
import time


def parse_list(s):
    return [int(x) for x in s.split(",") if x]


SHAPES = {"1b": (2048, 8192, 16, 32, 8, 128256), "tiny": (256, 768, 2, 8, 2, 4096)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="1b")
    ap.add_argument("--batch", default="1,8,64")
    ap.add_argument("--ctx", default="1024,4096")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--csv", default=None)
    ap.add_argument("--no-graph", action="store_true", help="eager only")
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch_reference: PyTorch is not installed; nothing to measure")
        return 0
    if not torch.cuda.is_available():
        print("torch_reference: no CUDA device; nothing to measure")
        return 0
    shape = SHAPES.get(a.model) or tuple(parse_list(a.model))
    if len(shape) != 6:
        ap.error("--model: 1b, tiny or dim,hidden,layers,heads,kv_heads,vocab")
    dim, hidden, layers, heads, kv_heads, vocab = shape
    hd = dim // heads
    kvd = kv_heads * hd
    batches, ctxs = parse_list(a.batch), parse_list(a.ctx)
    dev, dt = torch.device("cuda"), torch.bfloat16
    torch.manual_seed(1)
    g = torch.Generator(device=dev).manual_seed(1)

    def w(n, k):
        return (torch.randn(n, k, device=dev, generator=g) / k ** 0.5).to(dt)

    L = []
    for _ in range(layers):
        L.append(dict(att=torch.ones(dim, device=dev, dtype=dt), wqkv=w(dim + 2 * kvd, dim),
                      wo=w(dim, dim), ffn=torch.ones(dim, device=dev, dtype=dt),
                      w13=w(2 * hidden, dim), w2=w(dim, hidden)))
    emb = torch.randn(vocab, dim, device=dev, generator=g).to(dt)
    final = torch.ones(dim, device=dev, dtype=dt)
    wbytes = 2 * (layers * ((dim + 2 * kvd) * dim + dim * dim + 3 * hidden * dim + 2 * dim)
                  + dim + vocab * dim)
    has_gqa = "enable_gqa" in F.scaled_dot_product_attention.__doc__

    # Device copy bandwidth, read + written bytes over time (binv-bench's convention).
    src = torch.empty(1 << 28, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    copy_gbs = 2 * src.numel() * 4 / sorted(ts)[2] / 1e9
    del src, dst
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, copy bandwidth "
          f"{copy_gbs:.0f} GB/s, GQA in SDPA: {has_gqa}")
    print(f"model dim {dim}, hidden {hidden}, {layers} layers, {heads}/{kv_heads} heads, "
          f"vocab {vocab}, bf16, tied embeddings")
    theta = 10000.0
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, device=dev, dtype=torch.float32) / hd)

    def rope(x, pos):  # x: [B, H, 1, hd], rotating pairs (2i, 2i+1) like the library
        ang = pos.float()[:, None] * inv[None, :]
        c, s = ang.cos()[:, None, None, :], ang.sin()[:, None, None, :]
        xr = x.float().unflatten(-1, (hd // 2, 2))
        x0, x1 = xr[..., 0], xr[..., 1]
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).flatten(-2).to(dt)

    def rms(x, wt):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(dt) * wt

    rows = []
    print(f"{'impl':<13} {'batch':>6} {'ctx':>7} {'ms':>9} {'tok/s':>10} {'floor ms':>9} "
          f"{'x floor':>8}")
    for B in batches:
        for C in ctxs:
            kc = torch.zeros(layers, B, kv_heads, C + 1, hd, device=dev, dtype=dt)
            vc = torch.zeros_like(kc)
            tok = torch.arange(B, device=dev) * 7 + 1
            pos = torch.full((B,), C, device=dev, dtype=torch.long)

            def step():
                x = emb[tok]  # [B, dim]
                for li, p in enumerate(L):
                    h = rms(x, p["att"])
                    qkv = F.linear(h, p["wqkv"])
                    q = qkv[:, :dim].view(B, heads, 1, hd)
                    k = qkv[:, dim:dim + kvd].view(B, kv_heads, 1, hd)
                    v = qkv[:, dim + kvd:].view(B, kv_heads, 1, hd)
                    q, k = rope(q, pos), rope(k, pos)
                    kc[li, :, :, C:C + 1] = k
                    vc[li, :, :, C:C + 1] = v
                    K, V = kc[li], vc[li]
                    if has_gqa:
                        o = F.scaled_dot_product_attention(q, K, V, enable_gqa=True)
                    else:
                        r = heads // kv_heads
                        o = F.scaled_dot_product_attention(q, K.repeat_interleave(r, 1),
                                                           V.repeat_interleave(r, 1))
                    x = x + F.linear(o.reshape(B, dim), p["wo"])
                    h = rms(x, p["ffn"])
                    gu = F.linear(h, p["w13"])
                    x = x + F.linear(F.silu(gu[:, :hidden]) * gu[:, hidden:], p["w2"])
                return F.linear(rms(x, final), emb)

            kvb = 2 * layers * kvd * 2 * B * C
            floor_ms = (wbytes + kvb) / (copy_gbs * 1e6)
            modes = [("torch-eager", None)]
            with torch.no_grad():
                for _ in range(3):
                    step()
                torch.cuda.synchronize()
                if not a.no_graph:
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for _ in range(2):
                            step()
                    torch.cuda.current_stream().wait_stream(s)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        step()
                    modes.append(("torch-graph", graph))
                for name, graph in modes:
                    ts = []
                    for _ in range(a.steps):
                        t0 = time.perf_counter()
                        if graph is None:
                            step()
                        else:
                            graph.replay()
                        torch.cuda.synchronize()
                        ts.append(1e3 * (time.perf_counter() - t0))
                    ms = sorted(ts)[len(ts) // 2]
                    print(f"{name:<13} {B:>6} {C:>7} {ms:>9.3f} {1e3 * B / ms:>10.0f} "
                          f"{floor_ms:>9.3f} {ms / floor_ms:>8.2f}")
                    rows.append(dict(device=torch.cuda.get_device_name(), impl=name, dtype="bf16",
                                     dim=dim, hidden=hidden, layers=layers, heads=heads,
                                     kv_heads=kv_heads, vocab=vocab, batch=B, ctx=C,
                                     steps=a.steps, ms_per_step=round(ms, 4),
                                     tokens_per_s=round(1e3 * B / ms, 1), weight_bytes=wbytes,
                                     kv_bytes=kvb, copy_gbs=round(copy_gbs, 1),
                                     floor_ms=round(floor_ms, 4),
                                     over_floor=round(ms / floor_ms, 3)))
            del kc, vc
            torch.cuda.empty_cache()
    if a.csv and rows:
        with open(a.csv, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
        print(f"CSV: {a.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
