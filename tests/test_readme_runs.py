"""README.md's command lines run, in order, at small sizes.

Every `weightspace` line of README.md's bash blocks has an entry in `SMALL`: the options
appended to it here (documented options of the same command; a later value of an option
overrides the README's), or the reason it is not run (it needs data this machine does not
have, or its point is its size). The lines run in one scratch folder in README order, so each
uses what the lines before it wrote, with the few input files the README assumes (an image,
a folder of photos) generated first. A README line without an entry fails the test, so a new
example has to be run or its skip explained.
"""

from __future__ import annotations

import shlex

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.test_readme import COMMAND_LINES
from weightspace.cli import app

FIT = ["--limit", "3", "--steps", "5"]
SMALL: dict[str, list[str] | str] = {
    "quickstart --out runs/quickstart --epochs 40": "fits 1,797 INRs: `python3 dev.py demo`'s own job (about 100 s)",
    "zoo fit-inrs --dataset mnist-subset -o zoos/mnist5k": FIT,
    "zoo fit-inrs --dataset ../shared/data/mnist -o zoos/mnist": "needs the full MNIST beside the checkout",
    "zoo info zoos/mnist5k": [],
    "zoo verify zoos/mnist5k": [],
    "train zoos/mnist5k --model dws --epochs 40": ["--epochs", "1", "--no-progress"],
    "models": [],
    "zoo fit-inrs --dataset digits --recipe nfn --inrs-per-train-image 10 -o zoos/nfn-digits": FIT,
    "zoo fit-inrs --dataset shapes --field sdf --resolution 32 -o zoos/shapes": ["--per-class", "1", "--resolution", "8",
                                                                                "--steps", "5"],
    "zoo fit-inrs --dataset tones -o zoos/tones": ["--per-class", "1", "--steps", "5"],
    "zoo fit-inrs --dataset digits --backend ray -o zoos/d": "starts a Ray cluster (tests/zoo/test_backends.py runs one)",
    "zoo render zoos/shapes --split test -o shapes.png --mesh meshes": [],
    "zoo import dwsnets path/to/mnist-inrs -o zoos/dws": "needs DWSNets' published INRs (tests/zoo/test_importers.py "
                                                         "imports their layout)",
    "zoo export zoos/mnist5k --format hf -o exports/mnist5k": [],
    "zoo export zoos/mnist5k --format numpy -o mnist5k.npz": [],
    "zoo import hf exports/mnist5k -o zoos/mnist5k-again": [],
    "train zoos/mnist5k --model dwsnets-mnist-inr --epochs 5": ["--epochs", "1", "--no-progress"],
    "train zoos/mnist5k --model graph --augment sign": ["--epochs", "1", "--no-progress"],
    "train zoos/mnist5k --model mlp --augment permutation,sign --mixup 0.2": ["--epochs", "1", "--no-progress"],
    "train zoos/mnist5k --model dws --augment sign+affine": ["--epochs", "1", "--no-progress"],
    "train zoos/mnist5k --model dws --compile --max-minutes 60": "compiles for a minute; tests/test_train.py compiles",
    "edit zoos/mnist5k --model dws_eq --figure edits.png": ["--epochs", "1", "--no-progress"],
    "train zoos/mnist5k --model dws --epochs 2 --out runs/dws-mnist5k": ["--no-progress"],
    "train zoos/mnist5k --model dws --epochs 2 --out runs/dws-mnist5k --resume": "the run above is complete: "
                                                                               "tests/test_runs.py resumes a killed one",
    "evaluate runs/dws-mnist5k zoos/mnist5k": [],
    "apply runs/dws-mnist5k zoos/mnist5k --split val -o predictions.csv": [],
    "apply runs/dws-mnist5k net.safetensors": [],
    "zoo fit-inrs --steps -10 -o /tmp/never-written": "shown failing: tests/test_readme.py checks that it does",
    "zoo train-classifiers -o zoos/cnn-mnist-small --dataset mnist-subset --runs 200 --epochs 6 "
    "--checkpoints 0,1,2,4,6 --n-train 1000 --n-test 500": ["--runs", "8", "--epochs", "1", "--checkpoints", "0,1",
                                                            "--n-train", "100", "--n-test", "50", "--runs-per-shard", "4"],
    "predict zoos/cnn-mnist-small -m statnn -m dws --target test_accuracy --out runs/acc": ["--epochs", "1",
                                                                                          "--no-progress"],
    "evaluate runs/acc/dws zoos/cnn-mnist-small": [],
    "predict zoos/cnn-mnist-small -m statnn --target optimizer": ["--epochs", "1", "--no-progress"],
    "zoo import-classifiers path/to/mnist -o zoos/smallcnnzoo --layout small-cnn-zoo": "needs the published Small CNN "
                                                                                       "Zoo (tests/zoo/test_import_"
                                                                                       "classifier_zoos.py)",
    "functa fit --dataset mnist-subset --limit 1000 -o runs/functa": ["--limit", "3", "--steps", "2", "--batch-size", "4",
                                                                      "--no-progress"],
    "functa encode runs/functa/functa.safetensors --dataset digits -o runs/digits-functaset": ["--limit", "2"],
    "functa sample runs/functa/functaset -o samples.png": ["--epochs", "2", "-n", "2"],
    "train runs/functa/functaset --model mlp": ["--epochs", "1", "--no-progress"],
    "functa fit --dataset shapes --field sdf --resolution 16 -o runs/functa-shapes": [
        "--per-class", "2", "--resolution", "6", "--steps", "2", "--hidden", "16,16", "--latent-dim", "8", "--no-progress"],
    "functa infer runs/functa-shapes/functaset --observe view:+z --observe random:0.05 --figure infer.png": [],
    "gasp fit --dataset mnist-subset --steps 2000 -o runs/gasp": ["--limit", "20", "--steps", "2", "--batch-size", "4",
                                                                  "--samples", "8", "--no-progress"],
    "gasp sample runs/gasp -n 8 --scale 4 -o gasp-samples.png": [],
    "nerf fit -o runs/nerf": ["--per-class", "2", "--size", "6", "--steps", "2", "--samples", "8", "--hidden", "16,16",
                              "--latent-dim", "8", "--no-progress"],
    "nerf sample runs/nerf -n 6 -o nerf-samples.png": ["--epochs", "2", "-n", "2"],
    "hyperinr fit --dataset shapes --field udf --resolution 12 -o runs/hyper": ["--per-class", "1", "--resolution", "6",
                                                                               "--steps", "3", "--encode-steps", "2",
                                                                               "--no-progress"],
    "hyperinr encode runs/hyper/hyperinr.safetensors --dataset shapes -o runs/hyper-new": ["--per-class", "1",
                                                                                          "--resolution", "6",
                                                                                          "--steps", "2",
                                                                                          "--no-progress"],
    "train runs/hyper/weights --model probe": ["--epochs", "1", "--no-progress"],
    "hyperrep fit zoos/cnn-mnist-small -o runs/hr --epochs 40": [
        "--epochs", "1", "--d-model", "16", "--layers", "1", "--latent-tokens", "2", "--latent-dim", "4", "--no-progress"],
    "hyperrep probe zoos/cnn-mnist-small runs/hr --figure map.png": ["--probes", "linear"],
    "hyperrep sample zoos/cnn-mnist-small runs/hr -n 100 --finetune-steps 100 --figure accuracy.png "
    "-o zoos/hr-samples": ["-n", "4", "--finetune-steps", "2", "--test-images", "50"],
    "hyperrep sample zoos/cnn-mnist-small runs/hr -n 50 --where 'test_accuracy>=0.9'": [
        "-n", "4", "--test-images", "50", "--where", "epoch==1"],  # the small zoo here has no model that good
    "zoo train-classifiers -o zoos/mlp-mnist-small --dataset mnist-subset --recipe mlp --runs 64 --epochs 4 "
    "--checkpoints 0,1,2,4 --n-train 1000 --n-test 500": ["--runs", "8", "--epochs", "1", "--checkpoints", "0,1", "--n-train", "100", "--n-test", "50", "--runs-per-shard", "4"],
    "hyperrep sane-fit zoos/cnn-mnist-small zoos/mlp-mnist-small -o runs/sane": [
        "--epochs", "1", "--d-model", "16", "--layers", "1", "--latent-dim", "4", "--window", "8", "--supersample", "1",
        "--no-progress"],
    "hyperrep sane-probe zoos/cnn-mnist-small runs/sane": ["--probes", "linear"],
    "zoo train-classifiers -o zoos/cnn8-small --dataset mnist-subset --width 8 --runs 64 --epochs 4 "
    "--checkpoints 0,1,2,4 --n-train 1000 --n-test 500": ["--runs", "8", "--epochs", "1", "--checkpoints", "0,1", "--n-train", "100", "--n-test", "50", "--runs-per-shard", "4"],
    "hyperrep sane-probe zoos/cnn8-small runs/sane": ["--probes", "linear"],
    "compress photo.png -o photo.wsc --method overfit --bpp 0.2": ["--steps", "10", "--no-progress"],
    "compress photo.png -o photo.wsc --method overfit --bpp 0.2 --effort high": ["--steps", "10", "--no-progress"],
    "compress photo.png -o photo.wsc --bpp 0.3": ["--steps", "5", "--no-progress"],
    "compress photo.png -o photo.wsc --psnr 30 --bits 8": ["--steps", "5", "--no-progress"],
    "decompress photo.wsc -o back.png": [],
    "compress-base mnist-subset -o mnist-base.safetensors --patch 28x28 --latent 64": ["--steps", "2", "--limit", "8",
                                                                                      "--batch-size", "4"],
    "compress digit.png -o digit.wsc --method coin++ --base mnist-base.safetensors --bpp 0.3": ["--no-progress"],
    "decompress digit.wsc -o back.png --base mnist-base.safetensors": [],
    "compress-base photos/ -o photo-base.safetensors --layout pyramid --patch 64x64 --hidden 32 --steps 5000": [
        "--steps", "2", "--batch-size", "2"],
    "compress camera.png -o camera.wsc --method coin++ --base photo-base.safetensors --bpp 0.25": ["--search", "1",
                                                                                                  "--no-progress"],
    "nern train-reference -o runs/resnet20.safetensors --arch resnet20 --dataset mnist-subset": [
        "--epochs", "1", "--width", "4", "--no-progress"],
    "nern fit runs/resnet20.safetensors -o runs/resnet20-nern.safetensors": ["--warmup-epochs", "1", "--epochs", "1",
                                                                             "--hidden", "16", "--kernels-per-step",
                                                                             "256", "--no-progress"],
    "nern reconstruct runs/resnet20-nern.safetensors -o runs/resnet20-rebuilt.safetensors": [],
}


def _inputs(root) -> None:
    """The files README.md assumes the user has: an image, a digit, a folder of photos."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    photo = np.stack([(xx * 4) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(photo).save(root / "photo.png")
    Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(root / "digit.png")
    Image.fromarray(photo[..., 0]).save(root / "camera.png")  # grey, like the photos/ base
    (root / "photos" / "a").mkdir(parents=True)
    for k in range(2):
        Image.fromarray(np.roll(photo, 8 * k, axis=0)).save(root / "photos" / "a" / f"{k}.png")


def test_every_readme_line_is_run_or_its_skip_explained() -> None:
    lines = [line for line, _ in COMMAND_LINES]
    assert not set(lines) - set(SMALL), f"README lines with no entry in SMALL: {sorted(set(lines) - set(SMALL))}"
    assert not set(SMALL) - set(lines), f"entries for lines no longer in README.md: {sorted(set(SMALL) - set(lines))}"


@pytest.mark.slow
def test_readme_commands_run_in_order_at_small_sizes(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _inputs(tmp_path)
    runner = CliRunner()
    ran = []
    for line, _ in COMMAND_LINES:
        extra = SMALL[line]
        if isinstance(extra, str):
            continue
        if line == "apply runs/dws-mnist5k net.safetensors":  # one network's state dict, taken from the zoo
            from safetensors.torch import save_file

            from weightspace.zoo.store import Zoo

            w = Zoo.open("zoos/mnist5k").weights([0])
            save_file({k: v.contiguous() for k, v in w.to_state_dict(0).items()}, "net.safetensors")
        r = runner.invoke(app, [*shlex.split(line), *extra])
        assert r.exit_code == 0, f"weightspace {line} {' '.join(extra)}\n{r.output[-1500:]}"
        ran.append(line)
    assert len(ran) >= 40, ran
