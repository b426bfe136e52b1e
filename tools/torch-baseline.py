#!/usr/bin/env python3
"""PyTorch baseline of one SDXL-Turbo UNet step's Linear / Conv2d / Attention calls.

Reads test/fixtures/sdxl-turbo-layout/unet-call-shapes.json (every Linear, Conv2d and attention
call of one real UNet step at 512², in execution order) and times, in fp16 eager PyTorch on CUDA:

* the sequence: every call of the file in order (random inputs and weights, one set per distinct
  shape), as one UNet step's worth of those calls: eager (a Python loop of launches, timed by CUDA
  events around the loop) and, where capture works, replayed as one CUDA graph (GPU time without
  the launch overhead);
* per distinct shape (the same cases, names and shape strings as tools/bench-kernels.ts, group
  norm + SiLU included): cuBLAS through F.linear, cuDNN through F.conv2d (cudnn.benchmark on, so
  cuDNN picks its algorithm), F.scaled_dot_product_attention (PyTorch picks flash / efficient /
  math; torch < 2.0 has none: softmax(q·kᵀ/√d)·v, labelled so), F.group_norm + F.silu; the
  median over repeats of a batch of back-to-back calls;
* the card's matmul peaks as PyTorch reaches them: 8192³ fp16 and fp32 (TF32 off).

Writes JSON (--json) and a Markdown table (--markdown). `--list` prints the cases without torch.
Part of the GPU bundle (tools/gpu-bundle.mjs, BENCHMARKS.md); no diffusers needed.
"""

import argparse
import json
import re
import statistics
import sys
import time
from math import prod

GROUPNORM_AFTER = re.compile(r"(\.conv1|\.conv2|^conv_out)$")


def distinct_cases(calls):
    """Distinct cases in first-seen order, with how often each occurs (as bench-kernels.ts)."""
    cases = {}

    def add(key, case):
        if key in cases:
            cases[key]["calls"] += 1
        else:
            case["calls"] = 1
            cases[key] = case

    for i, c in enumerate(calls):
        key, case = case_of(c)
        add(key, case)
        c["_key"] = key
    for c in calls:
        if c["type"] == "Conv2d" and GROUPNORM_AFTER.search(c["module"]):
            shape = c["input_shape"]
            add(("groupnorm", tuple(shape)), {
                "kernel": "groupnorm+silu", "shape": "×".join(map(str, shape[1:])) + " 32g",
                "op": "groupnorm", "x": shape, "flops": 0,
            })
    return list(cases.values())


def case_of(c):
    if c["type"] == "Linear":
        m = prod(c["input_shape"][:-1])
        n, k = c["weight_shape"]
        shape = f"{m}×{k}→{n}" + (" +b" if c["bias"] else "")
        return ("linear", m, k, n, c["bias"]), {
            "kernel": "linear", "shape": shape, "op": "linear", "m": m, "k": k, "n": n,
            "bias": c["bias"], "flops": 2 * m * n * k,
        }
    if c["type"] == "Conv2d":
        _, cin, h, w = c["input_shape"]
        o, _, kh, kw = c["weight_shape"]
        s, p = c["stride"][0], c["padding"][0]
        shape = f"{cin}×{h}×{w}→{o} {kh}×{kw}" + (f" s{s}" if s > 1 else "")
        return ("conv2d", tuple(c["input_shape"]), tuple(c["weight_shape"]), s, p, c["bias"]), {
            "kernel": "conv2d", "shape": shape, "op": "conv2d", "x": c["input_shape"],
            "w": c["weight_shape"], "stride": s, "padding": p, "bias": c["bias"], "flops": 2 * c["macs"],
        }
    if c["type"] == "Attention":
        b, lq, width = c["hidden_states_shape"]
        lk = c["context_shape"][1]
        shape = f"{lq}×{lk} {c['heads']}h×{c['head_dim']}"
        return ("attention", b, lq, lk, c["heads"], c["head_dim"]), {
            "kernel": "attention", "shape": shape, "op": "attention", "b": b, "lq": lq, "lk": lk,
            "heads": c["heads"], "d": c["head_dim"], "flops": 2 * (c["qk_macs"] + c["av_macs"]),
        }
    raise ValueError(f"unknown call type {c['type']}")


def small_subset(cases):
    """The cheapest case of each kernel (bench-kernels.ts --small takes one per variant)."""
    def cost(c):
        return c["flops"] + prod(c.get("x", [0])) + c.get("m", 0) * c.get("k", 0) + c.get("lq", 0)
    return [min((c for c in cases if c["kernel"] == k), key=cost) for k in dict.fromkeys(c["kernel"] for c in cases)]


def fmt(x):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def markdown_table(header, rows, right):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    def line(r):
        return "| " + " | ".join(str(v).rjust(w) if i in right else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="test/fixtures/sdxl-turbo-layout/unet-call-shapes.json")
    ap.add_argument("--json", help="write the results as JSON")
    ap.add_argument("--markdown", help="write the tables as Markdown")
    ap.add_argument("--small", action="store_true", help="the cheapest shape of each kernel, the first 100 calls of the sequence")
    ap.add_argument("--reps", type=int, default=20, help="timed repeats (sequence and each case)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--list", action="store_true", help="print the cases and exit (no torch needed)")
    args = ap.parse_args()

    with open(args.shapes) as f:
        calls = json.load(f)["calls"]
    cases = distinct_cases(calls)
    if args.list:
        for c in cases:
            print(f"{c['kernel']:15} {c['shape']:22} {c['calls']:4}")
        print(f"{len(calls)} calls, {len(cases)} distinct cases")
        return 0
    if args.small:
        cases = small_subset(cases)
        calls = calls[:100]

    import torch
    import torch.nn.functional as F

    dev = torch.device(args.device)
    on_cuda = dev.type == "cuda"
    if on_cuda and not torch.cuda.is_available():
        print("torch-baseline: CUDA is not available", file=sys.stderr)
        return 2
    dtype = torch.float16 if on_cuda else torch.float32
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)

    def sync():
        if on_cuda:
            torch.cuda.synchronize()

    def timer():
        """Returns (start, stop) where stop() gives ms since start (CUDA events, else wall)."""
        if on_cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            def stop():
                b.record()
                b.synchronize()
                return a.elapsed_time(b)
            return stop
        t0 = time.perf_counter()
        return lambda: (time.perf_counter() - t0) * 1e3

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, device=dev, dtype=dtype) * scale

    # torch < 2.0 has no SDPA: time the plain softmax(q·kᵀ/√d)·v instead, and say so per row.
    sdpa = getattr(F, "scaled_dot_product_attention", None)
    backends = {
        "linear": "cuBLAS (F.linear)" if on_cuda else "F.linear",
        "conv2d": "cuDNN (F.conv2d)" if on_cuda else "F.conv2d",
        "attention": "SDPA" if sdpa else "softmax(q·kᵀ)·v (torch < 2.0: no SDPA)",
        "groupnorm": "F.group_norm + F.silu",
    }

    def make(case):
        """A zero-argument callable doing the case's op once, on inputs made here."""
        op = case["op"]
        if op == "linear":
            x, w = randn(case["m"], case["k"]), randn(case["n"], case["k"], scale=case["k"] ** -0.5)
            b = randn(case["n"]) if case["bias"] else None
            return lambda: F.linear(x, w, b)
        if op == "conv2d":
            x = randn(*case["x"])
            o, cin, kh, kw = case["w"]
            w = randn(*case["w"], scale=(cin * kh * kw) ** -0.5)
            b = randn(o) if case["bias"] else None
            s, p = case["stride"], case["padding"]
            return lambda: F.conv2d(x, w, b, stride=s, padding=p)
        if op == "attention":
            bsz, h, d = case["b"], case["heads"], case["d"]
            # [B, L, H·d] as the UNet holds them, viewed as [B, H, L, d] (strided, no copies)
            q = randn(bsz, case["lq"], h * d).view(bsz, case["lq"], h, d).transpose(1, 2)
            k = randn(bsz, case["lk"], h * d).view(bsz, case["lk"], h, d).transpose(1, 2)
            v = randn(bsz, case["lk"], h * d).view(bsz, case["lk"], h, d).transpose(1, 2)
            if sdpa:
                return lambda: sdpa(q, k, v)
            scale = d ** -0.5
            return lambda: torch.softmax((q @ k.transpose(-1, -2)) * scale, dim=-1) @ v
        if op == "groupnorm":
            x = randn(*case["x"])
            c = case["x"][1]
            g, b = 1 + 0.1 * randn(c), 0.05 * randn(c)
            return lambda: F.silu(F.group_norm(x, 32, g, b, 1e-5))
        raise ValueError(op)

    info = {"torch": torch.__version__, "device": str(dev), "dtype": str(dtype).replace("torch.", "")}
    if on_cuda:
        p = torch.cuda.get_device_properties(dev)
        info.update({
            "name": p.name, "multiprocessors": p.multi_processor_count, "memoryGiB": round(p.total_memory / 2**30, 1),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        })
    print(f"torch-baseline: {info}", flush=True)

    # The card's matmul peaks as PyTorch reaches them (fastest of a few square products).
    peaks = {}
    size = (4096 if args.small else 8192) if on_cuda else 1024  # a CPU run checks the script, not the peak
    for name, dt in (("fp16", torch.float16), ("fp32", torch.float32)):
        if not on_cuda and dt == torch.float16:
            continue
        a = torch.randn(size, size, device=dev, dtype=dt)
        b = torch.randn(size, size, device=dev, dtype=dt)
        for _ in range(3):
            a @ b
        sync()
        best = min(_time(timer, lambda: a @ b, 1) for _ in range(5))
        peaks[name] = {"size": size, "tflops": 2 * size**3 / (best * 1e9), "ms": best}
        del a, b
    print("matmul peaks: " + ", ".join(f"{k} {fmt(v['tflops'])} TFLOP/s ({v['size']}³)" for k, v in peaks.items()), flush=True)

    # Per distinct case: median over reps of (batch of `iters` back-to-back calls) / iters.
    rows, results = [], []
    total = 0.0
    for case in cases:
        fn = make(case)
        for _ in range(3):
            fn()
        sync()
        one = _time(timer, fn, 1)
        iters = max(1, min(50, int(2.0 / max(one, 1e-3))))  # ≈ 2 ms per batch
        samples = [_time(timer, fn, iters) / iters for _ in range(max(3, args.reps // 4))]
        ms = statistics.median(samples)
        total += case["calls"] * ms
        tflops = case["flops"] / (ms * 1e9) if case["flops"] else None
        backend = backends[case["op"]]
        results.append({"kernel": case["kernel"], "shape": case["shape"], "calls": case["calls"], "backend": backend,
                        "medianMs": ms, "minMs": min(samples), "iters": iters, "tflops": tflops})
        rows.append([case["kernel"], case["shape"], str(case["calls"]), backend, fmt(ms * 1e3), fmt(tflops)])
        print("  ".join(rows[-1]), flush=True)
        del fn
    if on_cuda:
        torch.cuda.empty_cache()

    # The sequence: every call of the file in order, inputs shared per distinct shape.
    fns = {}
    seq = []
    for c in calls:
        key, case = case_of(c)
        if key not in fns:
            fns[key] = make(case)
        seq.append(fns[key])

    def step():
        for fn in seq:
            fn()

    for _ in range(3):
        step()
    sync()
    eager = [_time(timer, step, 1) for _ in range(args.reps)]
    sequence = {"calls": len(seq), "eagerMedianMs": statistics.median(eager), "eagerMinMs": min(eager), "graphMedianMs": None, "graphError": None}
    if on_cuda:
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                step()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            graph.replay()
            sync()
            replays = [_time(timer, graph.replay, 1) for _ in range(args.reps)]
            sequence["graphMedianMs"] = statistics.median(replays)
            del graph
        except Exception as e:  # capture is an extra, not the baseline
            sequence["graphError"] = f"{type(e).__name__}: {e}"
    if sequence["graphMedianMs"] is not None:
        graph_said = f"CUDA graph {fmt(sequence['graphMedianMs'])} ms"
    else:
        graph_said = f"CUDA graph: {sequence['graphError'] or 'not on ' + dev.type}"
    print(f"sequence of {len(seq)} calls: eager {fmt(sequence['eagerMedianMs'])} ms (median of {args.reps}), {graph_said}", flush=True)

    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": sys.argv[1:], "info": info, "small": args.small,
           "peaks": peaks, "cases": results, "sumCallsTimesMedianMs": total, "sequence": sequence}
    table = markdown_table(["kernel", "shape", "calls", "PyTorch op", "median µs", "TFLOP/s"], rows, {2, 4, 5})
    summary = (f"PyTorch {info['torch']} on {info.get('name', info['device'])}, {info['dtype']} eager. "
               f"Matmul peaks: " + ", ".join(f"{k} {fmt(v['tflops'])} TFLOP/s" for k, v in peaks.items()) + ".\n\n"
               f"Σ calls × median over the {len(results)} cases: {fmt(total)} ms. "
               f"Sequence of the file's {len(seq)} calls in order: eager {fmt(sequence['eagerMedianMs'])} ms"
               + (f", as one CUDA graph {fmt(sequence['graphMedianMs'])} ms" if sequence["graphMedianMs"] is not None else "") + ".")
    print("\n" + table + "\n\n" + summary, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n\n" + summary + "\n")
    return 0


def _time(timer, fn, iters):
    stop = timer()
    for _ in range(iters):
        fn()
    return stop()


if __name__ == "__main__":
    sys.exit(main())
