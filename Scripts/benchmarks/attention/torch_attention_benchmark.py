# torch's scaled_dot_product_attention timed like Sources/attention-benchmark/main.swift (2 threads,
# float32, GQA via enable_gqa). Run: python torch_attention_benchmark.py   (needs torch; CI never runs it)
import time
import torch
import torch.nn.functional as F

torch.set_num_threads(2)


def training_step(b, h, k, t, dh, causal, repeats):
    q = torch.randn(b, h, t, dh, requires_grad=True)
    key = torch.randn(b, k, t, dh, requires_grad=True)
    v = torch.randn(b, k, t, dh, requires_grad=True)
    g = torch.randn(b, h, t, dh)
    forward, total, cpu = [], [], []
    for i in range(repeats + 1):
        c0, t0 = time.process_time(), time.perf_counter()
        out = F.scaled_dot_product_attention(q, key, v, is_causal=causal, enable_gqa=True)
        t1 = time.perf_counter()
        out.backward(g)
        t2, c1 = time.perf_counter(), time.process_time()
        q.grad = key.grad = v.grad = None
        if i == 0:
            continue
        forward.append(t1 - t0)
        total.append(t2 - t0)
        cpu.append(c1 - c0)
    med = lambda xs: sorted(xs)[len(xs) // 2] * 1000
    print(f"torch B{b} H{h} K{k} T{t} Dh{dh} causal {causal}: forward {med(forward):.2f} ms (best {min(forward)*1000:.2f}), "
          f"forward+backward {med(total):.2f} ms (best {min(total)*1000:.2f}), cpu {min(cpu)*1000:.2f} ms")


def decode_step(h, k, tk, dh, repeats):
    q, key, v = torch.randn(1, h, 1, dh), torch.randn(1, k, tk, dh), torch.randn(1, k, tk, dh)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            F.scaled_dot_product_attention(q, key, v, enable_gqa=True)
            times.append(time.perf_counter() - t0)
    print(f"torch decode H{h} K{k} Tk{tk} Dh{dh}: {sorted(times)[len(times)//2]*1000:.2f} ms (best {min(times)*1000:.2f})")


for causal in (True, False):
    training_step(8, 8, 2, 128, 64, causal, 20)
for causal in (True, False):
    training_step(1, 8, 2, 2048, 64, causal, 5)
decode_step(32, 8, 2048, 128, 100)
