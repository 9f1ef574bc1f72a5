"""A fuzzing harness for the decoder: a seed corpus of valid files and the one property.

The property (`decode_or_clean_error`): for any bytes, `decompress` either returns a
`Signal` or raises `CodecError`; anything else (another exception, a crash, a hang on a
claimed size) is a bug. Used by ``tests/compress/test_fuzz.py`` (hypothesis) and
``benchmarks/fuzz_codec.py`` (atheris / libFuzzer, when it installs).
"""

from __future__ import annotations

import struct
import zlib

import torch

from weightspace.compress import coin, coinpp, pyramid
from weightspace.compress.codec import compress, decompress
from weightspace.compress.format import CodecError
from weightspace.compress.signal import Signal
from weightspace.inr.modulated import ModulatedSirenConfig


def fuzz_base() -> coinpp.CoinppBase:
    """A tiny COIN++ base (untrained: decoding does not care how good it is), fixed by its seed."""
    model = coinpp.ModulatedSiren(ModulatedSirenConfig(2, 1, hidden=(8,), latent_dim=4, seed=0))
    return coinpp.CoinppBase(model, "image", (4, 4), 1, torch.zeros(4), torch.ones(4))


def fuzz_pyramid_base() -> pyramid.PyramidBase:
    """A tiny untrained latent-pyramid base for grey images, fixed by its seed."""
    net = pyramid.PyramidNet(pyramid.PyramidConfig(axes=2, channels=1, levels=3, hidden=4, conv=2, context=2))
    with torch.no_grad():  # make the entropy context non-trivial, so mutations exercise it
        net.neighbours.fill_(0.3)
    return pyramid.PyramidBase(net.requires_grad_(False), "image", fit_steps=20)


def fuzz_bases() -> tuple[coinpp.CoinppBase, pyramid.PyramidBase]:
    """One base of each COIN++ layout, for decoding the corpus (`decode_or_clean_error`)."""
    return fuzz_base(), fuzz_pyramid_base()


def seed_corpus(base: coinpp.CoinppBase | None = None, pbase: pyramid.PyramidBase | None = None) -> list[bytes]:
    """Valid files of every method and several kinds, small enough to mutate quickly."""
    base = base or fuzz_base()
    pbase = pbase or fuzz_pyramid_base()
    g = torch.Generator().manual_seed(0)
    quick = coin.CoinConfig(steps=5, bits=8, qat_steps=2)
    signals = [
        Signal(torch.rand(6, 5, 1, generator=g), "image"),
        Signal(torch.rand(4, 4, 3, generator=g), "image"),
        Signal(torch.rand(20, 1, generator=g), "audio", {"sample_rate": 8000}),
        Signal(torch.rand(3, 3, 3, 1, generator=g), "shape", {"lo": -1.0, "hi": 2.0}),
    ]
    files = [compress(s, method="coin", bpp=40.0, coin_config=quick).data for s in signals]
    files.append(compress(signals[0], method="coin++", bpp=64.0, base=base).data)
    files.append(compress(signals[0], method="coin++", bpp=64.0, base=pbase, search=1, fit_steps=20).data)
    return files


def with_crc(data: bytes) -> bytes:
    """``data`` with its last 4 bytes replaced by the CRC-32 of the rest (so mutations reach
    the header and payload checks instead of stopping at the checksum)."""
    if len(data) < 4:
        return data
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def decode_or_clean_error(data: bytes, *bases: coinpp.CoinppBase | pyramid.PyramidBase | None) -> str:
    """``"ok"`` if ``data`` decodes with one of ``bases`` (none given: with no base), else
    ``"error"``; raises whatever else the decoder raises (a bug)."""
    ok = False
    for base in bases or (None,):
        try:
            decompress(data, base=base)
            ok = True
        except CodecError:
            pass
    return "ok" if ok else "error"


__all__ = ["decode_or_clean_error", "fuzz_base", "fuzz_bases", "fuzz_pyramid_base", "seed_corpus", "with_crc"]
