"""`weightspace compress / decompress / compress-base`: COIN and COIN++ codecs on files.

Registered at the top level of `weightspace.cli` (an unnamed sub-app). The file format is
documented in ``docs/format-coin.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from weightspace.cli_checks import COMMON_HELP, torch_device
from weightspace.cli_checks import fail as _fail

app = typer.Typer(no_args_is_help=True)
console = Console()


def _load_base(path: Path | None, device: str = "cpu"):
    if path is None:
        return None
    from weightspace.compress.codec import load_base

    return load_base(path, device=device)


@app.command("compress")
def compress_cmd(
    input: Annotated[Path, typer.Argument(help="image (.png/.jpg/...), audio (.wav), grid or volume (.npy)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="compressed file to write (.wsc)")],
    bpp: Annotated[float | None, typer.Option(help="target payload bits per pixel / sample / voxel")] = None,
    psnr: Annotated[float | None, typer.Option(help="target PSNR in dB (values in [0, 1], peak 1)")] = None,
    method: Annotated[str, typer.Option(help="coin | coin++ | overfit (images: latents and decoder fitted "
                                        "per image, no base; the best at low rates)")] = "coin",
    base: Annotated[Path | None, typer.Option(help="COIN++: the base network (from `weightspace compress-base`)")] = None,
    kind: Annotated[str | None, typer.Option(help=".npy with 3 axes: 'grid' reads [H, W, C] (default: a shape volume)")] = None,
    bits: Annotated[int, typer.Option(help="COIN: bits per weight (below 16: quantisation-aware fine-tuning)")] = 16,
    steps: Annotated[int | None, typer.Option(help="fitting steps (COIN: default 1000; overfit: of the first "
                                              "fit, default from --effort)")] = None,
    effort: Annotated[str, typer.Option(help="overfit: time-quality trade-off, fast | default | high | max "
                                        "(default: about a minute for a 256x256 image on 2 cores)")] = "default",
    refine_steps: Annotated[int, typer.Option(help="COIN++ patch base: Adam steps on the latents after the inner loop")] = 0,
    search: Annotated[int, typer.Option(help="COIN++ latent-pyramid base: fits of the rate search")] = 6,
    seed: Annotated[int, typer.Option(help=COMMON_HELP["seed"])] = 0,
    progress: Annotated[bool, typer.Option(help=COMMON_HELP["progress"])] = True,
    device: Annotated[str, typer.Option(help=COMMON_HELP["device"])] = "auto",
) -> None:
    """Compress a signal file to a target rate (--bpp) or quality (--psnr)."""
    from weightspace.compress.codec import compress
    from weightspace.compress.coin import CoinConfig
    from weightspace.compress.signal import read_signal

    if (bpp is None) == (psnr is None):
        _fail("give exactly one of --bpp and --psnr")
    if method not in ("coin", "coin++", "overfit"):
        _fail(f"unknown method {method!r}; expected coin, coin++ or overfit")
    from weightspace.compress.overfit import EFFORTS

    if effort not in EFFORTS:
        _fail(f"unknown effort {effort!r}; expected one of {', '.join(EFFORTS)}")
    if method == "overfit" and base is not None:
        _fail("--base is for coin++; the overfit method stores its networks in the file")
    dev = torch_device(device)
    try:
        overfit_config = None
        if method == "overfit":
            from weightspace.compress.overfit import OverfitConfig

            overfit_config = OverfitConfig.effort(effort, seed=seed, **({} if steps is None else {"steps": steps}))
        signal = read_signal(input, kind=kind)
        res = compress(
            signal, method=method, bpp=bpp, psnr_target=psnr, base=_load_base(base, dev),
            coin_config=CoinConfig(steps=1000 if steps is None else steps, bits=bits, seed=seed),
            refine_steps=refine_steps, search=search, overfit_config=overfit_config, progress=progress, device=dev,
        )
    except ValueError as e:
        _fail(str(e))
    out.write_bytes(res.data)
    note = "" if res.reached else " [yellow](target not reached)[/yellow]"
    console.print(
        f"wrote {out}: {len(res.data)} bytes, {res.bpp:.3f} bpp payload ({res.file_bpp:.3f} with the header), "
        f"PSNR {res.psnr:.2f} dB, {res.method}{note}"
    )


@app.command("decompress")
def decompress_cmd(
    file: Annotated[Path, typer.Argument(help="a file written by `weightspace compress`")],
    out: Annotated[Path, typer.Option("--out", "-o", help="image / .wav / .npy to write (by the signal's kind)")],
    base: Annotated[Path | None, typer.Option(help="COIN++ files: the base network they name")] = None,
    max_work: Annotated[float | None, typer.Option(help="decode files needing up to this many multiply-adds "
                                                   "(default: max(2^34, 2^20 per byte of file))")] = None,
    device: Annotated[str, typer.Option(help=COMMON_HELP["device"])] = "auto",
) -> None:
    """Decode a compressed file back to an image, audio clip, grid or volume."""
    from weightspace.compress.codec import decompress
    from weightspace.compress.signal import write_signal

    try:
        if not file.is_file():
            raise ValueError(f"{file}: no such file")
        dev = torch_device(device)
        signal = decompress(file.read_bytes(), base=_load_base(base, dev), max_work=max_work, device=dev)
        write_signal(signal, out)
    except ValueError as e:
        _fail(f"{file}: {e}")
    console.print(f"wrote {out}: {signal.kind} {list(signal.values.shape)}")


def _training_signals(dataset: str, seed: int, limit: int | None):
    """``(values [N, *grid, C], kind)`` of a dataset's training split."""
    if dataset == "spherical-harmonics":
        from weightspace.signals.grids import load_spherical_harmonics

        data = load_spherical_harmonics(seed=seed)
    elif dataset.endswith(".npy"):
        from weightspace.signals.grids import load_grid_npy

        data = load_grid_npy(dataset)
    else:
        from weightspace.signals.load import load_signals

        data = load_signals(dataset, seed=seed)
    if "train" in data.split:
        data = data.select_split("train")
    values = data.targets()
    if limit is not None:
        values = values[:limit]
    if getattr(data, "grid", True) is False:
        raise ValueError(f"{dataset}: scattered points cannot be cut into patches; use grid samples")
    return values.reshape(values.shape[0], *data.signal_shape), data.kind


@app.command("compress-base")
def compress_base_cmd(
    dataset: Annotated[str, typer.Argument(help="signals to meta-learn on: a `zoo fit-inrs` dataset name or path, "
                                           "'spherical-harmonics', or a .npy of lat-lon fields")],
    out: Annotated[Path, typer.Option("--out", "-o", help="base network file to write (.safetensors)")],
    patch: Annotated[str, typer.Option(help="patch (crop, for --layout pyramid) shape, e.g. 28x28 (images), "
                                       "256 (audio), 8x8x8 (shapes)")],
    layout: Annotated[str, typer.Option(help="'patch': a modulation vector per patch (COIN++); 'pyramid': "
                                        "multi-resolution latent grids (better at low rates)")] = "patch",
    levels: Annotated[int, typer.Option(help="pyramid: latent grids")] = 7,
    hidden: Annotated[str, typer.Option(help="hidden widths of the modulated SIREN (pyramid: one width)")] = "64,64,64",
    latent: Annotated[int, typer.Option(help="latent (modulation) size per patch")] = 64,
    steps: Annotated[int, typer.Option(help="outer meta-learning steps")] = 500,
    inner_steps: Annotated[int, typer.Option(help=COMMON_HELP["inner_steps"])] = 3,
    batch_size: Annotated[int, typer.Option(help=COMMON_HELP["batch_size"])] = 32,
    lr: Annotated[float, typer.Option(help=COMMON_HELP["lr"])] = 1e-3,
    first_order: Annotated[bool, typer.Option(help="first-order MAML (cheaper)")] = False,
    limit: Annotated[int | None, typer.Option(help="at most this many training signals")] = None,
    seed: Annotated[int, typer.Option(help=COMMON_HELP["seed"])] = 0,
    device: Annotated[str, typer.Option(help=COMMON_HELP["device"])] = "auto",
) -> None:
    """Meta-learn a COIN++ base network on a dataset's training signals (stored once)."""
    from weightspace.compress import pyramid
    from weightspace.compress.coinpp import patches_of, train_base
    from weightspace.inr.meta import MetaConfig
    from weightspace.inr.modulated import ModulatedSirenConfig

    dev = torch_device(device)
    try:
        if layout not in ("patch", "pyramid"):
            raise ValueError(f"unknown layout {layout!r}; expected 'patch' or 'pyramid'")
        patch_shape = tuple(int(p) for p in patch.lower().split("x"))
        widths = tuple(int(h) for h in hidden.split(","))
        values, kind = _training_signals(dataset, seed, limit)
        patches = patches_of(values, patch_shape)
        if layout == "pyramid":
            config = pyramid.PyramidConfig(axes=len(patch_shape), channels=values.shape[-1], levels=levels,
                                           hidden=widths[0], seed=seed)
            crops = patches.reshape(-1, *patch_shape, values.shape[-1])
            train = pyramid.TrainConfig(steps=steps, batch_size=batch_size, seed=seed, progress=True)
            pbase = pyramid.train_pyramid_base(crops, kind, config, train, device=dev)
            pbase.save(out)
            console.print(f"wrote {out}: COIN++ latent-pyramid base {pbase.id} for {kind} crops {patch}, "
                          f"{levels} levels, {crops.shape[0]} training crops")
            return
        config = ModulatedSirenConfig(len(patch_shape), values.shape[-1], hidden=widths, latent_dim=latent, seed=seed)
        meta = MetaConfig(steps=steps, batch_size=batch_size, inner_steps=inner_steps, lr=lr,
                          first_order=first_order, seed=seed)
        base = train_base(patches, kind, patch_shape, config, meta, device=dev)
    except ValueError as e:
        _fail(str(e))
    base.save(out)
    console.print(f"wrote {out}: COIN++ base {base.id} for {kind} patches {patch}, latent {latent}, "
                  f"{patches.shape[0]} training patches")
