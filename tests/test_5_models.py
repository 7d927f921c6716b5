"""Section 5, The models: the generator and the discriminator at the largest IMAGE_SIZE, 128 px (five upsampling
steps, (B, 3, 128, 128) images in [-1, 1], one logit per image, drawn by the EMA copy too). That every line
defining them stays in view: test_notebook_layout.py; that they learn: test_6_learning.py and
test_6_game_2d.py."""

import torch
from conftest import cpu_hardware


def test_128_px_networks_have_the_right_shapes(nb, make_config):
    """The largest IMAGE_SIZE the notebook offers: five upsampling steps, (B, 3, 128, 128) images in [-1, 1],
    one logit per image, and the EMA copy draws them too."""
    config = make_config(IMAGE_SIZE=128)
    gan = nb.build_gan(config, cpu_hardware(nb))
    assert nb.upsampling_steps(128) == 5
    noise = torch.randn(2, config.latent_dim, 1, 1)
    with torch.no_grad():
        images = gan.generator(noise)
        assert images.shape == (2, 3, 128, 128) and images.abs().max() <= 1
        assert gan.discriminator(images).shape == (2,)
    assert nb.draw(gan.drawing_generator, noise).shape == (2, 3, 128, 128)
    transposed = [m for m in gan.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    convolutions = [m for m in gan.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(transposed) == len(convolutions) == 6  # 1→4, then 4→8→16→32→64→128; and back
