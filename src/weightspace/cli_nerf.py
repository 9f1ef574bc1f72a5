"""`weightspace nerf …`: NeRF functa on procedural multi-view scenes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from weightspace.cli_checks import fail as _fail
from weightspace.cli_checks import lightning, torch_device

app = typer.Typer(no_args_is_help=True, help="NeRF functa: a shared modulated NeRF, one latent per scene.")
console = Console()

MODEL, RECORD, LATENTS = "nerf.safetensors", "nerf.json", "latents.safetensors"
VIEW_SETS = ((), (0,), (0, 4), (0, 2, 4, 6), (0, 1, 2, 3, 4, 5, 6, 7))


@app.command("fit")
def nerf_fit(
    out: Path = typer.Option(..., "--out", "-o", help="directory: nerf.safetensors, nerf.json, latents.safetensors, "
                             "views.png"),
    per_class: int = typer.Option(40, help="scenes per class (1, 2 and 3 objects)"),
    size: int = typer.Option(24, help="image side in pixels"),
    views: int = typer.Option(8, help="training views per scene (an orbit)"),
    test_views: int = typer.Option(4, help="held-out views per scene, between the training ones"),
    samples: int = typer.Option(32, help="points per ray"),
    hidden: str = typer.Option("64,64,64", help="hidden widths of the shared SIREN field"),
    latent_dim: int = typer.Option(64),
    appearance_dim: int = typer.Option(0, help="last latent entries that shift the colour outputs directly, with "
                                       "their own inner rate (0: NeRF functa as published; 8 with --steps 1800 learns "
                                       "colour in part: BENCHMARKS.md nerf_functa_appearance)"),
    omega: float = typer.Option(30.0),
    steps: int = typer.Option(900, help="outer (meta) steps"),
    batch_size: int = typer.Option(8, help="scenes per outer step"),
    rays: int = typer.Option(256, help="random rays per outer step"),
    inner_steps: int = typer.Option(3),
    lr: float = typer.Option(3e-4, help="outer Adam learning rate (1e-3 collapses after ~850 steps)"),
    seed: int = typer.Option(0),
    progress: bool = typer.Option(True),
    device: str = typer.Option("auto"),
) -> None:
    """Meta-learn a modulated NeRF on procedural scenes' training views; report novel-view PSNR
    of held-out scenes from 0, 1, 2, 4 and all of their views; keep the training latents."""
    import json

    import numpy as np
    import torch
    from safetensors.torch import save_file

    from weightspace.cli_functa import _sizes
    from weightspace.inr.meta import MetaConfig, encode
    from weightspace.inr.modulated import save_modulated
    from weightspace.inr.nerf import RenderConfig
    from weightspace.signals.scenes import load_scenes
    from weightspace.tasks.nerf_functa import fit_nerf_functa, novel_views, object_chroma, plot_novel_views

    try:
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"--out {out}: exists and is not empty")
        if not 0 <= appearance_dim <= latent_dim:
            raise ValueError(f"--appearance-dim must lie in 0..--latent-dim ({latent_dim}), got {appearance_dim}")
        if views < 8:
            raise ValueError("--views must be at least 8 (novel views are scored from 1, 2, 4 and 8 observed views)")
        scenes = load_scenes(per_class, size=size, views=views, test_views=test_views, seed=seed,
                             config=RenderConfig(samples=samples))
        meta = MetaConfig(steps=steps, batch_size=batch_size, inner_steps=inner_steps, lr=lr, seed=seed,
                          progress=progress, points_per_step=rays)
        res = fit_nerf_functa(scenes, hidden=_sizes(hidden), latent_dim=latent_dim, omega=omega, meta=meta, seed=seed,
                              appearance_dim=appearance_dim, device=torch_device(device))
        out.mkdir(parents=True, exist_ok=True)
        save_modulated(res.model, out / MODEL)
        split = np.asarray(scenes.split)
        train = scenes.subset(split == "train")
        sub = torch.randperm(len(scenes.rays), generator=torch.Generator().manual_seed(seed))[:1024]
        latents = encode(res.model, train.values[:, sub], inner_steps, coords=scenes.rays[sub], batch_size=16,
                         decode=res.decode)
        save_file({"train": latents.contiguous()}, str(out / LATENTS))
        test = scenes.subset(split == "test")
        rows = novel_views(res.model, res.decode, test, VIEW_SETS, steps=inner_steps)
        truth_chroma = object_chroma(test.test_values, test.test_values, scenes.render.background)
        plot_novel_views(res.model, res.decode, test, out / "views.png", steps=inner_steps)
        record = {"scenes": {"per_class": per_class, "size": size, "views": views, "test_views": test_views,
                             "seed": seed}, "render": scenes.render.to_dict(), "meta": meta.to_dict(),
                  "novel_views": [{k: v for k, v in r.items() if k != "psnr_held_out_per_scene"} for r in rows],
                  "truth_chroma": truth_chroma}
        (out / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    console.print(f"wrote {out}: {MODEL}, {RECORD}, {LATENTS} ({len(latents)} training scenes), views.png")
    console.print(f"held-out views of {len(test)} test scenes, latent fitted by {inner_steps} inner steps on:")
    for r in rows:
        seen = f", observed views {r['psnr_observed']:.2f} dB" if "psnr_observed" in r else " (the zero latent)"
        console.print(f"  {r['views']} view(s): {r['psnr_held_out']:.2f} dB{seen}; object chroma "
                      f"{r['chroma_held_out']:.3f}")
    console.print(f"  truth's object chroma {truth_chroma:.3f} (0: grey renders; colour learnt as it nears the truth's)")


@app.command("sample")
def nerf_sample(
    run: Path = typer.Argument(..., help="directory of `nerf fit`"),
    out: Path = typer.Option(..., "--out", "-o", help="figure to write (.png): each sample from the held-out cameras"),
    count: int = typer.Option(6, "--count", "-n", help="scenes to generate"),
    epochs: int = typer.Option(300, help="diffusion training epochs over the training latents"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
) -> None:
    """Generate new scenes: a DDPM over the training scenes' latents, each sample rendered from
    the held-out cameras."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from weightspace.inr.modulated import load_modulated
    from weightspace.inr.nerf import NerfDecode, RenderConfig
    from weightspace.signals.scenes import cameras
    from weightspace.tasks.nerf_functa import plot_scene_rows, sample_scenes
    from weightspace.train import TrainConfig

    try:
        for name in (MODEL, RECORD, LATENTS):
            if not (run / name).is_file():
                raise ValueError(f"{run}: no {name}; give the directory `nerf fit` wrote")
        record = json.loads((run / RECORD).read_text())
        model = load_modulated(run / MODEL).to(torch_device(device))
        try:
            latents = load_file(str(run / LATENTS)).get("train")
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{run / LATENTS}: not a readable safetensors file ({str(e)[:120]})") from None
        if latents is None or latents.dim() != 2 or latents.shape[1] != model.latent_dim:
            raise ValueError(f"{run / LATENTS}: expected 'train' latents [N, {model.latent_dim}]")
        sc = record["scenes"]
        _, test_rays = cameras(sc["size"], sc["views"], sc["test_views"])
        decode = NerfDecode(RenderConfig(**record["render"]))
        cfg = TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, weight_decay=0.0, progress=False, seed=seed,
                          **lightning(device))
        samples = sample_scenes(model, decode, latents, test_rays, count, seed=seed, config=cfg)
        plot_scene_rows([(f"sample {i}", v) for i, v in enumerate(samples.views)], sc["size"], out)
    except (ValueError, KeyError, FileNotFoundError, json.JSONDecodeError) as e:
        _fail(str(e))
    console.print(f"wrote {out}: {count} generated scenes, {sc['test_views']} views each")
