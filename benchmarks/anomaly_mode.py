"""``python -m benchmarks.anomaly_mode``: what RecBole's import-time ``set_detect_anomaly(True)`` cost.

RecBole 1.2.1's ``sine.py`` turns autograd anomaly detection on when the sequential models are imported
(any RecBole model lookup does it); :mod:`recbole_msl.recbole_seam.registry` now turns it back off. This times a
training step with the mode on and off, interleaved so that load on a shared machine hits both alike,
for a GRU4Rec-sized GRU and a 4-layer, 576-wide Llama (SmolLM2's width and vocabulary).
"""

from __future__ import annotations

import statistics
import time

import torch


def _time(step, rounds: int, repeats: int) -> dict[bool, float]:
    seconds = {True: [], False: []}
    for _ in range(rounds):
        for mode in (True, False):
            torch.autograd.set_detect_anomaly(mode)
            start = time.perf_counter()
            for _ in range(repeats):
                step()
            seconds[mode].append((time.perf_counter() - start) / repeats)
    torch.autograd.set_detect_anomaly(False)
    return {mode: statistics.median(values) for mode, values in seconds.items()}


def gru_step():
    torch.manual_seed(0)
    embed, gru = torch.nn.Embedding(1700, 16), torch.nn.GRU(16, 16, batch_first=True)
    items = torch.randint(0, 1700, (1024, 10))
    return lambda: gru(embed(items))[0].sum().backward()


def llama_step():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                         num_hidden_layers=4, num_attention_heads=9, num_key_value_heads=3))
    tokens = torch.randint(0, 49152, (4, 100))
    return lambda: model(tokens).logits[:, -1].sum().backward()


def main() -> None:
    print("step          anomaly on   anomaly off   ratio")
    for name, make, repeats in (("GRU, batch 1024", gru_step, 10), ("Llama 4x576, 4x100", llama_step, 2)):
        times = _time(make(), rounds=3, repeats=repeats)
        print(f"{name:<20} {times[True]:8.3f} s  {times[False]:9.3f} s  {times[True] / times[False]:5.2f}x")


if __name__ == "__main__":
    main()
