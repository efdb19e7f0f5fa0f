"""Speech ratio of a waveform with webrtcvad (fraction of frames classified as speech)."""

from __future__ import annotations

import numpy as np
import webrtcvad


def speech_ratio(audio: np.ndarray, sample_rate: int, mode: int = 2, frame_ms: int = 30) -> float:
    """Fraction of `frame_ms` frames of int16 mono `audio` that webrtcvad calls speech.
    A trailing partial frame is ignored; empty audio has ratio 0."""
    frame = sample_rate * frame_ms // 1000
    n = len(audio) // frame
    if n == 0:
        return 0.0
    vad = webrtcvad.Vad(mode)
    pcm = np.ascontiguousarray(audio[: n * frame], dtype="<i2").tobytes()
    step = frame * 2  # bytes per frame (int16)
    voiced = sum(vad.is_speech(pcm[i * step : (i + 1) * step], sample_rate) for i in range(n))
    return voiced / n
