"""How steady is the peak FLOP/s that MFU is measured against? One 0.3 s timing of 1024x1024
matmuls (what each train job once did) against lmcore's measurement (best of five 0.4 s timings
of 2048x2048 matmuls, taken once per machine and kept), each repeated, alone and beside a
process that keeps one core busy (as another job would).

    python bench/peak.py [--repeats 8] [--threads 2]
"""

import argparse
import multiprocessing
import platform
import time

import torch

from lmcore.train.runtime import matmul_rate


def single_timing(n=1024, seconds=0.3):
    a = torch.randn(n, n)
    a @ a
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def busy(stop):
    x = 0
    while not stop.is_set():
        x += 1


def spread(values):
    return f"{min(values) / 1e9:6.1f} to {max(values) / 1e9:6.1f} GFLOP/s (max/min {max(values) / min(values):.2f})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    for label, neighbour in (("alone", False), ("beside a busy core", True)):
        stop = multiprocessing.Event()
        proc = multiprocessing.Process(target=busy, args=(stop,)) if neighbour else None
        if proc:
            proc.start()
        single = [single_timing() for _ in range(args.repeats)]
        best = [matmul_rate(torch.device("cpu"), None) for _ in range(args.repeats)]
        if proc:
            stop.set()
            proc.join()
        print(f"{label:>20}: one 0.3 s timing {spread(single)}; lmcore's best of 5 x 0.4 s at 2048 {spread(best)}")


if __name__ == "__main__":
    main()
