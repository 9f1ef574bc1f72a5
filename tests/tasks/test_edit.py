import pytest
import torch

from weightspace import permute
from weightspace.core.transforms import Standardize
from weightspace.inr.siren import get_recipe
from weightspace.models.registry import create_model
from weightspace.signals import load_digits
from weightspace.signals.base import grid_coordinates
from weightspace.tasks.edit import DilationEdit, apply_edit, dilate, edit_zoo
from weightspace.train import TrainConfig
from weightspace.zoo.build import build_inr_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    data = load_digits(limit=24)
    return build_inr_zoo(data, tmp_path_factory.mktemp("z"), get_recipe("dwsnets", steps=60), shard_size=32, progress=False)


def test_dilate_is_a_maximum_filter():
    img = torch.zeros(1, 5, 5, 1)
    img[0, 2, 2, 0] = 1.0
    out = dilate(img)
    assert out[0, 1:4, 1:4, 0].eq(1).all() and out.sum() == 9


def test_zero_edit_is_the_identity(zoo):
    w, _ = zoo.load("train")
    norm = Standardize.fit(w)
    zero = w.map(torch.zeros_like)
    assert all(torch.equal(a, b) for a, b in zip(apply_edit(w, zero, norm).tensors(), w.tensors()))


@pytest.mark.parametrize("name,symmetric", [("dws_eq", True), ("nfn_np_eq", True), ("mlp_eq", False)])
def test_edited_function_does_not_depend_on_neuron_order(zoo, name, symmetric, gen):
    # an equivariant editor edits a permuted INR into the permuted edit: the same function
    w, _ = zoo.load("test")
    w = w.to(torch.float64)
    torch.manual_seed(0)
    model = create_model(name, zoo.spec).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # away from the near-zero initial output
    task = DilationEdit(get_recipe("dwsnets"), grid_coordinates((8, 8)).double(), Standardize.fit(w))
    moved = permute(w, zoo.spec.sample_permutation(len(w), generator=gen))
    diff = (task.outputs(model, moved) - task.outputs(model, w)).abs().max()
    assert (diff < 1e-8) if symmetric else (diff > 1e-4)


def test_training_an_editor_beats_not_editing(zoo):
    res = edit_zoo(zoo, "dws_eq", config=TrainConfig(epochs=4, batch_size=8, lr=3e-3, progress=False))
    assert res.test_mse < 0.8 * res.identity_mse, res.row()
    with pytest.raises(ValueError, match="editing needs an equivariant"):
        edit_zoo(zoo, "dws")
