"""Generates the hold music: a soft 16-second arpeggio loop (8 kHz mono), so the repo ships its own
with no licensing questions. Vonage streams mp3 for musicOnHoldUrl, so encode the WAV this writes:

    python scripts/make_hold_music.py hold.wav && lame -b 32 -m m hold.wav static/audio/hold.mp3
"""

import math
import struct
import sys
import wave
from pathlib import Path

RATE = 8000
NOTES = [261.63, 329.63, 392.0, 523.25, 392.0, 329.63, 293.66, 349.23, 440.0, 587.33, 440.0, 349.23]
out = Path(sys.argv[1] if len(sys.argv) > 1 else "hold.wav")
frames = bytearray()
note_len = RATE * 16 // len(NOTES)
for freq in NOTES:
    for i in range(note_len):
        t = i / RATE
        envelope = min(1.0, i / 400) * math.exp(-2.2 * t)
        sample = 0.28 * envelope * (math.sin(2 * math.pi * freq * t) + 0.3 * math.sin(4 * math.pi * freq * t))
        frames += struct.pack("<h", int(max(-1, min(1, sample)) * 32767))
with wave.open(str(out), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(RATE)
    w.writeframes(bytes(frames))
print(out, len(frames) // 2 / RATE, "seconds")
