"""A zoo (or one split of it) as a PyTorch map-style dataset, read from the memory-mapped shards.

    >>> ds = ZooDataset(Zoo.open("zoos/mnist5k"), split="train", target="label")
    >>> w, y = ds[3]                        # one network: Weights [1, ...], a 0-d target
    >>> w, y = ds[[3, 7, 9]]                # a batch in one gather: Weights [3, ...], targets [3]
    >>> for w, y in ds.loader(batch_size=64, shuffle=True, seed=0): ...

Nothing is copied into memory up front: each item or batch gathers its networks from the
shards' memory maps (`Zoo.weights`), so a 70k-network zoo costs only what a batch needs.
`loader` batches with a `BatchSampler` (one gather per batch, not one per network).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from weightspace.core.weights import Weights
from weightspace.zoo.store import Zoo, require_complete


class ZooDataset(Dataset):
    """Networks of ``zoo`` (all, or those of ``split``) with one table column as the target.

    ``ds[i]`` is ``(Weights [1, ...], target)``; ``ds[list_of_positions]`` a batch
    ``(Weights [B, ...], targets [B])``; with ``target=None`` only the Weights. Targets are
    int64 for integer columns, float32 for other numeric columns. ``positions`` are into the
    split (``ds.ids`` gives each position's network id). An incomplete zoo is refused unless
    ``allow_incomplete`` (`require_complete`).
    """

    def __init__(self, zoo: Zoo, split: str | None = None, target: str | None = "label", *,
                 allow_incomplete: bool = False) -> None:
        require_complete(zoo, allow_incomplete)
        self.zoo, self.split = zoo, split
        self.positions = np.arange(len(zoo)) if split is None else zoo.split(split)
        rows = zoo.table.iloc[self.positions]
        self.ids = rows["id"].to_numpy()
        self.targets: torch.Tensor | None = None
        if target is not None:
            if target not in rows.columns:
                raise KeyError(f"{zoo.path}: no column {target!r}; columns: {sorted(rows.columns)}")
            values = rows[target].to_numpy()
            if not np.issubdtype(values.dtype, np.number):
                raise ValueError(f"{zoo.path}: column {target!r} is {values.dtype}, not numeric")
            dtype = torch.int64 if np.issubdtype(values.dtype, np.integer) else torch.float32
            self.targets = torch.as_tensor(np.array(values)).to(dtype)  # a copy: the table's arrays are read-only

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int | Sequence[int] | np.ndarray | torch.Tensor):
        single = np.ndim(index) == 0
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for a dataset of {len(self)} networks")
        idx = idx % max(len(self), 1)
        w: Weights = self.zoo.weights(self.positions[idx])
        if self.targets is None:
            return w
        y = self.targets[torch.from_numpy(idx)]
        return (w, y[0]) if single else (w, y)

    def loader(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> DataLoader:
        """Batches ``(Weights [B, ...], targets [B])``, one gather each; seeded order when shuffled."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        sampler = RandomSampler(self, generator=torch.Generator().manual_seed(seed)) if shuffle else SequentialSampler(self)
        return DataLoader(self, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last=drop_last))


__all__ = ["ZooDataset"]
