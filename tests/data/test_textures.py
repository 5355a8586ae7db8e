"""Textured backgrounds: seeded, of the size asked, with the detail each kind promises."""

import numpy as np
import pytest

from fer_keras.data.textures import TEXTURES, texture, textured_background


@pytest.mark.parametrize("name", list(TEXTURES))
def test_each_texture_is_seeded_sized_and_not_flat(name):
    a = texture(name, 120, 160, np.random.default_rng(1))
    assert a.shape == (120, 160) and a.dtype == np.uint8
    assert np.array_equal(a, texture(name, 120, 160, np.random.default_rng(1)))
    assert not np.array_equal(a, texture(name, 120, 160, np.random.default_rng(2)))
    assert a.std() > 10  # visible texture, not a flat wall


def test_the_noise_grains_are_ordered_fine_to_coarse():
    def neighbour_difference(name):
        return np.mean([np.abs(np.diff(texture(name, 96, 96, np.random.default_rng(s)).astype(float), axis=1)).mean()
                        / texture(name, 96, 96, np.random.default_rng(s)).std() for s in range(5)])

    fine, medium, coarse = (neighbour_difference(f"noise-{g}") for g in ("fine", "medium", "coarse"))
    assert fine > medium > coarse


def test_a_random_texture_names_its_kind_and_unknown_names_are_refused():
    names = {textured_background(32, 32, np.random.default_rng(s))[1] for s in range(60)}
    assert names == set(TEXTURES)
    with pytest.raises(ValueError, match="unknown texture 'plaid'"):
        texture("plaid", 8, 8, np.random.default_rng(0))
