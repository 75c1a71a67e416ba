"""Soft against hard DPO labels, on simulated judges whose noise is known.

Each answer is a string of colour words, each word worth a hidden amount; an answer's true
quality is the sum. A simulated judge reports P(a beats b) = sigmoid(skill * (q_a - q_b) +
noise * N(0, 1)) (the debiasing simulation's judge), so the noisier the judge, the more of
its preferences are wrong, and the nearer 0.5 its wrong ones tend to be. The same
preferences train a small random model with DPO twice: hard labels (chosen beats rejected)
and soft ones (``train.dpo.soft_labels``: ``p_chosen`` is the target). The readout is the
trained policy's implicit reward, beta * (log pi - log ref), on held-out pairs whose truth
is known: the share it orders correctly, averaged over seeds.

    python benchmarks/soft_labels.py [--pairs 256] [--seeds 1] [--noise 0 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import emit, quiet
from datasets import Dataset

from rlaif.config import DpoConfig, TrainConfig
from rlaif.models.loading import DEFAULT_MODEL, load_tokenizer, resolve_model
from rlaif.stages import train
from rlaif.testing.simulated import SimulatedJudge
from rlaif.testing.tiny_model import write_tiny_model

WORDS = ("red", "blue", "green", "black", "white", "pink", "grey", "brown")
PROMPT = "Colours:"
"""Plain text, no chat template: short sequences keep a step fast on a CPU."""


def answers(rng: np.random.Generator, n: int, length: int = 6) -> list[list[int]]:
    return [list(rng.integers(0, len(WORDS), size=length)) for _ in range(n)]


def text(words: list[int]) -> str:
    return " ".join(WORDS[w] for w in words)


def preferences(
    rng: np.random.Generator, judge: SimulatedJudge, values: np.ndarray, n: int
) -> Dataset:
    """``n`` preferences as the aggregate stage writes them: chosen is the judge's pick,
    ``p_chosen`` its probability for it."""
    rows = []
    for a, b in zip(answers(rng, n), answers(rng, n), strict=True):
        gap = values[a].sum() - values[b].sum()
        p_a = 1.0 / (1.0 + np.exp(-(judge.skill * gap + judge.noise * rng.normal())))
        chosen, rejected = (a, b) if p_a >= 0.5 else (b, a)
        rows.append(
            {
                "prompt": PROMPT,
                "chosen": " " + text(chosen),
                "rejected": " " + text(rejected),
                "p_chosen": float(max(p_a, 1.0 - p_a)),
                "wrong": bool(values[chosen].sum() < values[rejected].sum()),
            }
        )
    return Dataset.from_list(rows)


def completion_logps(model_dir: Path | str, answers: list[str]) -> np.ndarray:
    """log P(answer | prompt), one per answer, tokenized as DPO tokenized them."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    head = tokenizer(PROMPT)["input_ids"]
    out = []
    with torch.no_grad():
        for answer in answers:
            ids = torch.tensor([head + tokenizer(answer)["input_ids"]])
            logps = torch.log_softmax(model(ids).logits[0, :-1], dim=-1)
            token_logps = logps.gather(1, ids[0, 1:, None])[:, 0]
            out.append(token_logps[len(head) - 1 :].sum().item())
    return np.array(out)


def heldout_accuracy(policy: Path, reference: Path, values: np.ndarray, seed: int) -> float:
    rng = np.random.default_rng(10_000 + seed)
    a, b = answers(rng, 200), answers(rng, 200)
    truth = np.array([values[x].sum() > values[y].sum() for x, y in zip(a, b, strict=True)])
    texts = [" " + text(x) for x in a] + [" " + text(y) for y in b]
    ratio = completion_logps(policy, texts) - completion_logps(reference, texts)
    margin = ratio[: len(a)] - ratio[len(a) :]
    return float(np.mean((margin > 0) == truth))


def run(
    model: Path, noise: float, seed: int, soft: bool, pairs: int, work: Path
) -> tuple[float, float]:
    """Held-out accuracy of the trained policy's implicit reward, and the share of its
    training labels that were wrong."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=len(WORDS))
    judge = SimulatedJudge(skill=1.0, noise=noise)
    data = preferences(rng, judge, values, pairs)
    dpo = DpoConfig(
        beta=0.1,
        learning_rate=5e-3,
        max_steps=pairs // 8 * 2,
        per_device_train_batch_size=8,
        max_length=64,
        logging_steps=50,
        soft_labels=soft,
    )
    out = work / f"{noise}-{seed}-{soft}"
    started = time.monotonic()
    train(data, TrainConfig(dpo=dpo, save_steps=10_000), model=str(model), output_dir=out)
    print(f"  noise {noise} seed {seed} soft {soft}: trained in {time.monotonic() - started:.0f}s")
    return heldout_accuracy(out / "model", model, values, seed), float(np.mean(data["wrong"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 2.0])
    args = parser.parse_args()
    quiet()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = write_tiny_model(work / "sft", resolve_model(DEFAULT_MODEL))
        for noise in args.noise:
            figures = {}
            for soft in (False, True):
                runs = [
                    run(model, noise, seed, soft, args.pairs, work) for seed in range(args.seeds)
                ]
                figures["soft" if soft else "hard"] = round(statistics.mean(a for a, _ in runs), 3)
            figures["wrong_labels"] = round(statistics.mean(w for _, w in runs), 3)
            results[str(noise)] = figures
            print(f"judge noise {noise}: held-out accuracy {figures}", flush=True)
    emit({"benchmark": "soft_labels", "pairs": args.pairs, "seeds": args.seeds, **results})


if __name__ == "__main__":
    main()
