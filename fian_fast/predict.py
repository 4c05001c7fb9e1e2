"""Ground sentences in videos with a trained FIAN, from Python: :class:`Predictor`.

::

    from fian_fast import Predictor
    predictor = Predictor.from_checkpoint("runs/syn/best.pt")           # loaded once
    moments = predictor.predict(["the person opens the door", "someone laughs"],
                                features, duration=31.5)                # one video, two sentences
    moments[0]   # [(start, end, score), ...] in seconds, best first

The sentences are tokenized and looked up in the checkpoint's vocabulary (words it lacks come
from its word-vector source when available, else zeros), the features ``[T, D]`` are resampled
to the model's fixed length as the training data were, the queries are batched on the model's
device, and each is decoded by the model's inference (section 3.5: ranking by score, temporal
NMS, top-n, frames to seconds).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._validation import check_fraction, check_top
from .data.features import resample
from .data.text import Vocabulary
from .model import FIAN

__all__ = ["Predictor", "Moment"]

#: one predicted moment: (start, end, score), seconds and σ(logit)
Moment = Tuple[float, float, float]

Features = Union[np.ndarray, torch.Tensor]


class Predictor:
    """A trained model and its vocabulary, ready to ground batches of sentences.

    Args:
        model: a :class:`~fian_fast.FIAN`; it is put in eval mode and stays on its device.
        vocab: the vocabulary it was trained with (extended with the words of each call).
        batch_size: queries per forward pass.
    """

    def __init__(self, model: FIAN, vocab: Vocabulary, batch_size: int = 64) -> None:
        fn = "Predictor"
        if not isinstance(model, FIAN):
            raise ValueError(f"{fn}: model should be a FIAN, got {type(model).__name__}")
        if not isinstance(vocab, Vocabulary):
            raise ValueError(f"{fn}: vocab should be a Vocabulary, got {type(vocab).__name__}")
        if vocab.dim != model.cfg.word_dim:
            raise ValueError(f"{fn}: vocab has {vocab.dim}-d word vectors, the model expects "
                             f"word_dim={model.cfg.word_dim}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{fn}: batch_size should be a positive int, got {batch_size!r}")
        self.model, self.vocab, self.batch_size = model.eval(), vocab, batch_size
        self.cfg = model.cfg

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "cpu", backend: Optional[str] = None,
                        batch_size: int = 64) -> "Predictor":
        """Load a checkpoint written by ``fian-fast train`` onto ``device`` (``backend``: the
        checkpoint's unless given)."""
        from .train import load_model   # the trainer's checkpoint reader; importing fian_fast stays light

        model, _, vocab, _ = load_model(path, device, backend)
        return cls(model, vocab, batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, queries: Union[str, Sequence[str]], features: Union[Features, Sequence[Features]],
                duration: Union[float, Sequence[float]], top_n: Optional[int] = None,
                nms_threshold: Optional[float] = None) -> List[List[Moment]]:
        """Ground each sentence of ``queries`` in its video.

        Args:
            queries: a sentence, or a sequence of sentences.
            features: one video's features ``[T, D]`` (numpy array or tensor, D = the model's
                ``video_dim``) in which every sentence is grounded, or a sequence of them, one
                per sentence (the same array may repeat: it is resampled once).
            duration: the video's duration in seconds, or with a sequence of ``features`` one
                per sentence.
            top_n, nms_threshold: the inference's top-n and NMS threshold (default: the
                config's).
        Returns:
            one list per sentence of ``(start, end, score)`` moments, seconds, best first
            (fewer than ``top_n`` when the NMS leaves fewer).
        """
        fn = "Predictor.predict"
        if top_n is not None:
            check_top(fn, "top_n", top_n)
        if nms_threshold is not None:
            check_fraction(fn, "nms_threshold", nms_threshold)
        sentences = self._sentences(fn, queries)
        videos, per_query = self._videos(fn, features, len(sentences))
        shared = isinstance(features, (np.ndarray, torch.Tensor))
        durations = self._durations(fn, duration, 1 if shared else len(sentences))
        if shared:
            durations = durations * len(sentences)
        self.vocab.extend(sentences)
        words = []
        for i, s in enumerate(sentences):
            try:
                words.append(self.vocab.encode(s, self.cfg.max_query_length))
            except ValueError:
                raise ValueError(f"{fn}: queries[{i}] has no words: {s!r}") from None
        resampled: Dict[int, Tuple[np.ndarray, int]] = {}
        out: List[List[Moment]] = []
        for lo in range(0, len(sentences), self.batch_size):
            rows = range(lo, min(lo + self.batch_size, len(sentences)))
            for v in {per_query[i] for i in rows} - set(resampled):
                resampled[v] = resample(videos[v], self.cfg.num_frames)
            out.extend(self._batch([words[i] for i in rows], [resampled[per_query[i]] for i in rows],
                                   [durations[i] for i in rows], top_n, nms_threshold))
        return out

    # ----------------------------------------------------------------------------- inputs
    @staticmethod
    def _sentences(fn: str, queries) -> List[str]:
        if isinstance(queries, str):
            return [queries]
        if not isinstance(queries, Sequence) or not queries:
            raise ValueError(f"{fn}: queries should be a sentence or a non-empty sequence of sentences, "
                             f"got {queries!r}")
        for i, q in enumerate(queries):
            if not isinstance(q, str):
                raise ValueError(f"{fn}: queries[{i}] should be a str, got {type(q).__name__}")
        return list(queries)

    def _videos(self, fn: str, features, n: int) -> Tuple[List[np.ndarray], List[int]]:
        """The distinct videos as float32 [T, D] and, per query, the index of its video."""
        if isinstance(features, (np.ndarray, torch.Tensor)):
            return [self._video(fn, "features", features)], [0] * n
        if not isinstance(features, Sequence) or len(features) != n:
            got = f"{len(features)} arrays" if isinstance(features, Sequence) else type(features).__name__
            raise ValueError(f"{fn}: features should be one [T, D] array or one per query ({n}), got {got}")
        videos: List[np.ndarray] = []
        seen: Dict[int, int] = {}
        per_query = []
        for i, f in enumerate(features):
            if id(f) not in seen:
                seen[id(f)] = len(videos)
                videos.append(self._video(fn, f"features[{i}]", f))
            per_query.append(seen[id(f)])
        return videos, per_query

    def _video(self, fn: str, name: str, f) -> np.ndarray:
        if isinstance(f, torch.Tensor):
            f = f.detach().cpu().numpy()
        if not isinstance(f, np.ndarray):
            raise ValueError(f"{fn}: {name} should be a numpy array or tensor [T, D], got {type(f).__name__}")
        D = self.cfg.video_dim
        if f.ndim != 2 or f.shape[0] < 1 or f.shape[1] != D:
            raise ValueError(f"{fn}: {name} should be [T, video_dim={D}] with T >= 1, got shape {tuple(f.shape)}")
        if not np.issubdtype(f.dtype, np.number) or np.issubdtype(f.dtype, np.complexfloating):
            raise ValueError(f"{fn}: {name} should hold real numbers, got dtype {f.dtype}")
        f = np.asarray(f, dtype=np.float32)
        finite = np.isfinite(f)
        if not finite.all():
            raise ValueError(f"{fn}: {name} should be finite, got {int(f.size - finite.sum())} non-finite values "
                             f"of {f.size}")
        return f

    @staticmethod
    def _durations(fn: str, duration, n: int) -> List[float]:
        """``n`` durations: one number for one video, else a sequence of ``n``."""
        values = [duration] if n == 1 and isinstance(duration, (int, float, np.number)) else duration
        if not isinstance(values, (Sequence, np.ndarray)) or len(values) != n:
            want = "one number" if n == 1 else f"a sequence of {n} numbers, one per features array"
            raise ValueError(f"{fn}: duration should be {want}, got {duration!r}")
        out = []
        for i, d in enumerate(values):
            if isinstance(d, bool) or not isinstance(d, (int, float, np.number)) or not math.isfinite(d) or d <= 0:
                where = "" if n == 1 else f" at index {i}"
                raise ValueError(f"{fn}: duration should be finite and > 0 seconds, got {d!r}{where}")
            out.append(float(d))
        return out

    # ------------------------------------------------------------------------------ batch
    def _batch(self, words: List[torch.Tensor], videos: List[Tuple[np.ndarray, int]], durations: List[float],
               top_n: Optional[int], nms_threshold: Optional[float]) -> List[List[Moment]]:
        dev = self.device
        query = torch.zeros(len(words), max(w.shape[0] for w in words), self.vocab.dim)
        for b, w in enumerate(words):
            query[b, :w.shape[0]] = w
        video = torch.from_numpy(np.stack([v for v, _ in videos]))
        pred = self.model.predict(video.to(dev), torch.tensor([n for _, n in videos], device=dev), query.to(dev),
                                  torch.tensor([w.shape[0] for w in words], device=dev),
                                  torch.tensor(durations, dtype=torch.float32, device=dev), top_n, nms_threshold,
                                  validate=False)   # checked above, on the host
        segments, scores, indices = (t.cpu().tolist() for t in pred)
        return [[(s, e, c) for (s, e), c, i in zip(segments[b], scores[b], indices[b]) if i >= 0]
                for b in range(len(words))]
