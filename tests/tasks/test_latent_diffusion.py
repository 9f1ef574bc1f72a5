import torch

from weightspace.tasks.generate import nearest_neighbours, plot_samples_with_neighbours
from weightspace.tasks.latent_diffusion import LatentDenoiser, train_latent_diffusion
from weightspace.train import TrainConfig


def test_sampler_gives_finite_vectors_of_the_data_scale(gen):
    mean = torch.tensor([5.0, -3.0, 0.0, 10.0])
    data = mean + 0.5 * torch.randn(256, 4, generator=gen)
    res = train_latent_diffusion(data[:200], data[200:], hidden=64, depth=2, steps=50,
                                 config=TrainConfig(epochs=80, batch_size=32, lr=3e-3, weight_decay=0.0, progress=False))
    samples = res.model.sample(64, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (64, 4) and torch.isfinite(samples).all()
    # samples land where the data is, in the data's units (standardisation undone)
    assert (samples.mean(0) - mean).abs().max() < 0.5
    assert samples.std(0).max() < 2.0
    again = res.model.sample(64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(samples, again)


def test_an_untrained_denoiser_does_not_match_the_data(gen):
    model = LatentDenoiser(4, hidden=16, depth=1, steps=50)
    model.set_standardisation(torch.tensor([5.0, -3.0, 0.0, 10.0]) + 0.5 * torch.randn(100, 4, generator=gen))
    samples = model.sample(64, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(samples).all() and samples.std(0).max() > 0.5


def test_nearest_neighbours_and_figure(tmp_path, gen):
    train = torch.rand(20, 16, 1, generator=gen)
    samples = train[[3, 7]] + 0.01
    idx, dist = nearest_neighbours(samples, train, chunk=6)
    assert idx.tolist() == [3, 7] and torch.allclose(dist, torch.full((2,), 0.01), atol=1e-5)
    path, _, _ = plot_samples_with_neighbours(samples, train, (4, 4, 1), tmp_path / "f.png", train_labels=list(range(20)))
    assert path.exists() and path.stat().st_size > 0
    # 3D grids are shown as their middle slice
    path, _, _ = plot_samples_with_neighbours(torch.rand(2, 64, 1, generator=gen), torch.rand(5, 64, 1, generator=gen),
                                              (4, 4, 4, 1), tmp_path / "g.png")
    assert path.exists()
