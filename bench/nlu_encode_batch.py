"""What one sentence costs the encoder alone and in a batch (why concurrent turns share batches).

    .venv/bin/python bench/nlu_encode_batch.py [--repeat 200]

Encodes 1, 2, 4 and 8 typical caller sentences at once with one BLAS thread (as the web processes run),
prints milliseconds per batch and per sentence. A single sentence is bound by streaming the encoder's
weight matrices from memory, once per batch: flows.nlu.EncodeBatcher lets turns that run at the same time
share one encode. Nothing but this process; no services needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCES = [
    "Hi, what time do you close today?",
    "Do you have parking there?",
    "How much do you charge for a cleaning?",
    "I'd like to book an appointment for next week",
    "Can I talk to someone please",
    "Do you take my insurance?",
    "Where are you located?",
    "Yes, that's right",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="batches per size (default 200)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings.dev")
    import django

    django.setup()
    from flows import nlu

    nlu.pin_single_thread_blas()
    if not nlu.encoder_available():
        print("the sentence encoder is not installed (requirements.txt)", file=sys.stderr)
        return 1
    encode = nlu._encoder().encode
    encode(SENTENCES)  # load and warm
    print(f"{'sentences':>9} {'ms per batch':>13} {'ms per sentence':>16}")
    for size in (1, 2, 4, 8):
        started = time.perf_counter()
        for _ in range(args.repeat):
            encode(SENTENCES[:size])
        ms = (time.perf_counter() - started) * 1000 / args.repeat
        print(f"{size:>9} {ms:>13.2f} {ms / size:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
