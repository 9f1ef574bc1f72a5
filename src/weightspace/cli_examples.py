"""One example per command, shown at the end of its ``--help`` (`weightspace.cli_checks.guard`).

Each is a command line of README.md, where a test parses it with the real parser; a test also
holds every command to an example here, so the two stay the same.
"""

EXAMPLES: dict[str, str] = {
    "train": "weightspace train zoos/mnist5k --model dws --epochs 40",
    "evaluate": "weightspace evaluate runs/dws-mnist5k zoos/mnist5k",
    "apply": "weightspace apply runs/dws-mnist5k zoos/mnist5k --split val -o predictions.csv",
    "edit": "weightspace edit zoos/mnist5k --model dws_eq --figure edits.png",
    "models": "weightspace models",
    "quickstart": "weightspace quickstart --out runs/quickstart --epochs 40",
    "predict": "weightspace predict zoos/cnn-mnist-small -m statnn -m dws --target test_accuracy --out runs/acc",
    "zoo info": "weightspace zoo info zoos/mnist5k",
    "zoo verify": "weightspace zoo verify zoos/mnist5k",
    "zoo fit-inrs": "weightspace zoo fit-inrs --dataset mnist-subset -o zoos/mnist5k",
    "zoo render": "weightspace zoo render zoos/shapes --split test -o shapes.png --mesh meshes",
    "zoo import": "weightspace zoo import dwsnets path/to/mnist-inrs -o zoos/dws",
    "zoo export": "weightspace zoo export zoos/mnist5k --format hf -o exports/mnist5k",
    "zoo train-classifiers": "weightspace zoo train-classifiers -o zoos/cnn-mnist-small --dataset mnist-subset --runs 200 --epochs 6 --checkpoints 0,1,2,4,6 --n-train 1000 --n-test 500",
    "zoo import-classifiers": "weightspace zoo import-classifiers path/to/mnist -o zoos/smallcnnzoo --layout small-cnn-zoo",
    "hyperrep fit": "weightspace hyperrep fit zoos/cnn-mnist-small -o runs/hr --epochs 40",
    "hyperrep probe": "weightspace hyperrep probe zoos/cnn-mnist-small runs/hr --figure map.png",
    "hyperrep sample": "weightspace hyperrep sample zoos/cnn-mnist-small runs/hr -n 100 --finetune-steps 100 --figure accuracy.png -o zoos/hr-samples",
    "hyperrep sane-fit": "weightspace hyperrep sane-fit zoos/cnn-mnist-small zoos/mlp-mnist-small -o runs/sane",
    "hyperrep sane-probe": "weightspace hyperrep sane-probe zoos/cnn8-small runs/sane",
    "nern train-reference": "weightspace nern train-reference -o runs/resnet20.safetensors --arch resnet20 --dataset mnist-subset",
    "nern fit": "weightspace nern fit runs/resnet20.safetensors -o runs/resnet20-nern.safetensors",
    "nern reconstruct": "weightspace nern reconstruct runs/resnet20-nern.safetensors -o runs/resnet20-rebuilt.safetensors",
    "functa fit": "weightspace functa fit --dataset mnist-subset --limit 1000 -o runs/functa",
    "functa encode": "weightspace functa encode runs/functa/functa.safetensors --dataset digits -o runs/digits-functaset",
    "functa sample": "weightspace functa sample runs/functa/functaset -o samples.png",
    "functa infer": "weightspace functa infer runs/functa-shapes/functaset --observe view:+z --observe random:0.05 --figure infer.png",
    "gasp fit": "weightspace gasp fit --dataset mnist-subset --steps 2000 -o runs/gasp",
    "gasp sample": "weightspace gasp sample runs/gasp -n 8 --scale 4 -o gasp-samples.png",
    "nerf fit": "weightspace nerf fit -o runs/nerf",
    "nerf sample": "weightspace nerf sample runs/nerf -n 6 -o nerf-samples.png",
    "hyperinr fit": "weightspace hyperinr fit --dataset shapes --field udf --resolution 12 -o runs/hyper",
    "hyperinr encode": "weightspace hyperinr encode runs/hyper/hyperinr.safetensors --dataset shapes -o runs/hyper-new",
    "compress": "weightspace compress photo.png -o photo.wsc --bpp 0.3",
    "decompress": "weightspace decompress photo.wsc -o back.png",
    "compress-base": "weightspace compress-base mnist-subset -o mnist-base.safetensors --patch 28x28 --latent 64",
}
