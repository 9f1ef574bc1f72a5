"""Neural compression: COIN, COIN++ and the overfit codec in one versioned file format (``docs/format-coin.md``)."""

from weightspace.compress.codec import Compressed, compress, decode_work, decompress, inspect
from weightspace.compress.coin import CoinConfig, coin_architecture
from weightspace.compress.coinpp import CoinppBase, train_base
from weightspace.compress.format import CodecError
from weightspace.compress.overfit import EFFORTS, OverfitConfig
from weightspace.compress.signal import Signal, read_signal, write_signal
from weightspace.compress.work import DecodeWorkError

__all__ = [
    "CodecError",
    "CoinConfig",
    "CoinppBase",
    "Compressed",
    "DecodeWorkError",
    "EFFORTS",
    "OverfitConfig",
    "Signal",
    "coin_architecture",
    "compress",
    "decode_work",
    "decompress",
    "inspect",
    "read_signal",
    "train_base",
    "write_signal",
]
