"""Prints the markdown tables of docs/BENCHMARKS.md from one call's g4_bench_moe and moe_peers.py JSON files.

    python3 bench/moe_report.py g4.json peers.json [--variant ""|_fused|_materialised]
Ratios are peer time / g4moe time (> 1: g4moe faster); fractions of peak use the cuBLAS dense peak of the same run.
"""
import json, sys

K, I, H = 8, 704, 2816


def main():
    g = json.load(open(sys.argv[1]))
    p = json.load(open(sys.argv[2]))
    variant = sys.argv[sys.argv.index("--variant") + 1] if "--variant" in sys.argv else ""
    peak = g["cublas_dense_bf16_8192_tflops"]
    print(f"dense bf16 peak: cuBLAS {peak:.0f} TFLOP/s, torch {p['torch_dense_bf16_8192_tflops']:.0f} TFLOP/s\n")
    print("| tokens | routing | pass | g4moe ms | TFLOP/s | % of peak | torch_mm ms | ratio | HF grouped_mm ms | ratio | HF eager ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for T in (4096, 16384):
        fl = 2 * T * K * 3 * I * H
        for r in ("gate", "balanced"):
            k = f"{r}_T{T}"
            for ps, mult in (("fwd", 1), ("fwdbwd", 3)):
                ms = g.get(f"g4_{ps}_ms_{k}{variant}")
                if ms is None:
                    continue
                tf = mult * fl / ms / 1e9
                nm = p.get(f"nemo_torch_mm_{ps}_ms_{k}")
                hf = p.get(f"hf_grouped_mm_{ps}_ms_{k}")
                he = p.get(f"hf_eager_{ps}_ms_{k}")
                f = lambda v: f"{v:.2f}" if isinstance(v, float) else "-"
                rt = lambda v: f"{v / ms:.2f}x" if isinstance(v, float) else "-"
                print(f"| {T} | {r} | {ps.replace('fwdbwd', 'fwd+bwd')} | {ms:.2f} | {tf:.0f} | {100 * tf / peak:.0f}% | "
                      f"{f(nm)} | {rt(nm)} | {f(hf)} | {rt(hf)} | {f(he)} |")
    print("\n| GEMM (16384 tokens, real gate) | time, TFLOP/s, % of peak |")
    print("| --- | --- |")
    for op in ("fwd_gate_up", "fwd_down", "dgrad_down", "dgrad_gate_up", "wgrad_down", "wgrad_gate_up",
               "fwd_gate_up_gathered", "dgrad_down_gathered"):
        ms = g.get(f"gemm_{op}_ms_T16384")
        cell = "-" if ms is None else (f"{ms:.2f} ms, {g[f'gemm_{op}_tflops_T16384']:.0f} TF/s, "
                                       f"{100 * g[f'gemm_{op}_frac_peak_T16384']:.0f}%")
        print(f"| {op} | {cell} |")
    if "cublas_grouped_fwd_gate_up_ms_T16384" in g:
        print(f"\ncuBLAS grouped GEMM (cublasGemmGroupedBatchedEx), fwd gate_up, 16384 tokens: "
              f"{g['cublas_grouped_fwd_gate_up_ms_T16384']:.2f} ms, {g['cublas_grouped_fwd_gate_up_tflops_T16384']:.0f} TFLOP/s")


if __name__ == "__main__":
    main()
