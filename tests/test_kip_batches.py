"""KIP's real batches (engine.objectives._EpochBatches): every row once per epoch, views not copies."""
import torch

from engine.objectives import _EpochBatches


def test_each_row_once_per_epoch_and_batches_are_views():
    x = torch.arange(10.0)[:, None].repeat(1, 3)
    y = torch.arange(10)
    batches = _EpochBatches([x, y, None], 3, seed=4)
    seen = []
    for _ in range(3):                                   # one epoch: 3 batches of 3, the 10th row dropped
        xb, yb, fb = batches.next()
        assert fb is None and xb.shape == (3, 3) and torch.equal(xb[:, 0].long(), yb)
        assert xb.data_ptr() == batches.epoch[0][batches.at - 3:].data_ptr()    # a view of the epoch's copy
        seen += yb.tolist()
    assert len(set(seen)) == 9
    first_epoch = seen
    seen = [v for _ in range(3) for v in batches.next()[1].tolist()]
    assert len(set(seen)) == 9 and seen != first_epoch             # a fresh permutation


def test_a_batch_covering_every_row_is_the_arrays_themselves():
    x, y = torch.randn(5, 2), torch.arange(5)
    batches = _EpochBatches([x, y, None], 8, seed=0)
    xb, yb, _ = batches.next()
    assert xb is x and yb is y
