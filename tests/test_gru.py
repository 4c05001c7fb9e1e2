"""BiGRU without packing (eq. 1-3): equal to a packed ``nn.GRU`` at every valid position, forward
and backward, with no host copy of the lengths."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fian_fast._host_reads import count_host_reads
from fian_fast.model.encoders import BiGRU, reverse_within_lengths

# float64: the two run the same recurrence in a different order of operations only; float32
# allows a few ulps of that order (measured: 6e-8 on unit-scale values).
TOL = {torch.float64: dict(atol=1e-12, rtol=1e-12), torch.float32: dict(atol=1e-6, rtol=1e-5)}


def packed_gru(module: BiGRU, x, lengths):
    gru = torch.nn.GRU(x.shape[2], module.gru.hidden_size, batch_first=True, bidirectional=True).to(x.dtype)
    gru.load_state_dict(module.gru.state_dict())
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=x.shape[1])
    return out, gru


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("lengths", [[17, 1, 9, 17, 4], [1], [3, 3]], ids=["B5-L17", "B1-L1", "B2-equal"])
def test_matches_packed_gru_forward_and_backward(dtype, lengths):
    torch.manual_seed(0)
    L = max(lengths)
    module = BiGRU(6, 10).to(dtype)
    x = torch.randn(len(lengths), L, 6, dtype=dtype)
    lengths = torch.tensor(lengths)
    x[torch.arange(L)[None, :] >= lengths[:, None]] = 7.0      # padding content must not matter
    x_ref = x.clone().requires_grad_()
    x = x.requires_grad_()
    out = module(x, lengths)
    want, gru = packed_gru(module, x_ref, lengths)
    torch.testing.assert_close(out, want, **TOL[dtype])
    grad = torch.randn_like(out)
    out.backward(grad)
    want.backward(grad)
    valid = (torch.arange(L)[None, :] < lengths[:, None])[..., None]
    torch.testing.assert_close(x.grad * valid, x_ref.grad * valid, **TOL[dtype])
    for (name, p), q in zip(module.gru.named_parameters(), gru.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **TOL[dtype], msg=name)


def test_padding_rows_are_exactly_zero_and_lengths_stay_on_the_device():
    module = BiGRU(4, 8)
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 2, 4])
    with count_host_reads() as reads:
        out = module(x, lengths)
    assert reads.total == 0
    assert torch.count_nonzero(out[1, 2:]) == 0 and torch.count_nonzero(out[2, 4:]) == 0
    assert torch.count_nonzero(out[0]) == out[0].numel()


def test_reverse_within_lengths_is_an_involution_that_keeps_padding_in_place():
    x = torch.arange(12.0).view(2, 6, 1)
    r = reverse_within_lengths(x, torch.tensor([4, 6]))
    assert r[0, :, 0].tolist() == [3, 2, 1, 0, 4, 5]
    assert r[1, :, 0].tolist() == [11, 10, 9, 8, 7, 6]
    assert torch.equal(reverse_within_lengths(r, torch.tensor([4, 6])), x)


def test_state_dict_has_the_names_of_nn_gru():
    gru = torch.nn.GRU(5, 4, batch_first=True, bidirectional=True)
    module = BiGRU(5, 8)
    assert set(module.state_dict()) == {f"gru.{k}" for k in gru.state_dict()}
    module.gru.load_state_dict(gru.state_dict())
