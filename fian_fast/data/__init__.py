"""Datasets of fian_fast: public annotation formats, feature stores, text and the synthetic set.

See :mod:`fian_fast.data.formats` (readers/writers), :mod:`fian_fast.data.records` (the common
record and cleaning), :mod:`fian_fast.data.features` (HDF5 / .npy stores, resampling),
:mod:`fian_fast.data.text` (tokenizer, GloVe, vocabulary), :mod:`fian_fast.data.windows` (queries
with several relevant windows), :mod:`fian_fast.data.synthetic` and :mod:`fian_fast.data.dataset`
(torch dataset, collate, :func:`load_split`).
"""
from .dataset import DATASETS, Batch, GroundingDataset, collate, load_split
from .features import HDF5Features, MemoryFeatures, NpyFolderFeatures, check_features, open_features, resample
from .formats import (FORMATS, read_annotations, read_charades_durations, read_charades_txt, read_grounding_json,
                      read_lighthouse, read_tacos)
from .records import CleaningReport, Record, clean_records
from .synthetic import make_synthetic, write_synthetic
from .text import GloveText, KumoGlove, Vocabulary, has_words, tokenize, word_vectors
from .windows import WINDOW_POLICIES, apply_windows

__all__ = [
    "DATASETS", "Batch", "GroundingDataset", "collate", "load_split", "HDF5Features", "MemoryFeatures",
    "NpyFolderFeatures", "check_features", "open_features", "resample", "FORMATS", "read_annotations",
    "read_charades_durations", "read_charades_txt", "read_grounding_json", "read_lighthouse", "read_tacos",
    "CleaningReport", "Record", "clean_records", "make_synthetic", "write_synthetic", "GloveText", "KumoGlove",
    "Vocabulary", "has_words", "tokenize", "word_vectors", "WINDOW_POLICIES", "apply_windows",
]
