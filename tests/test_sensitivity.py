"""Prompt sensitivity of a toy model's x0 prediction (anse_lib.toyworld.sensitivity)."""
import pytest
import torch

from anse_lib.toyworld import ToyVideoPipeline, build_components
from anse_lib.toyworld.sensitivity import (
    attribute_variants,
    ideal_sensitivity_at_pure_noise,
    predicted_x0,
    prompt_sensitivity,
)


def test_attribute_variants_swap_one_word_each():
    assert attribute_variants("a big red circle moving right") == {
        "colour": "a big green circle moving right",
        "size": "a small red circle moving right",
        "shape": "a big red square moving right",
        "motion": "a big red circle moving up",
    }
    # an open size is not swapped; the last value wraps to the first
    assert attribute_variants("a green triangle staying still") == {
        "colour": "a blue triangle staying still",
        "shape": "a green circle staying still",
        "motion": "a green triangle moving left",
    }
    with pytest.raises(ValueError, match="needs a one-object prompt, got 2 objects"):
        attribute_variants("a red circle moving up and a blue square moving left")


def test_predicted_x0_inverts_v_prediction():
    pipe = ToyVideoPipeline(**build_components(seed=0, transformer_config=dict(num_layers=1)))
    x0, noise = torch.rand(2, 8, 3, 32, 32) * 2 - 1, torch.randn(2, 8, 3, 32, 32)
    t = torch.tensor([10, 600])
    noisy = pipe.scheduler.add_noise(x0, noise, t)
    v = pipe.scheduler.get_velocity(x0, noise, t)

    class Oracle(torch.nn.Module):  # returns the true velocity, whatever the prompt
        config = pipe.transformer.config

        def forward(self, hidden_states, encoder_hidden_states, timestep, image_rotary_emb, return_dict):
            return (v,)

    pipe.transformer = Oracle()
    assert torch.allclose(predicted_x0(pipe, noisy, t, ["", ""]), x0, atol=1e-5)


def test_prompt_sensitivity_is_zero_for_the_same_prompt_and_deterministic():
    pipe = ToyVideoPipeline(**build_components(seed=0, transformer_config=dict(num_layers=1)))
    prompt = "a big red circle moving right"
    table = prompt_sensitivity(pipe, prompt, {"same": prompt, "blue": "a big blue circle moving right"},
                               timesteps=(999, 500), num_videos=2, seed=3)
    assert list(table.columns) == ["timestep", "attribute", "variant", "rms"]
    assert table.loc[table.attribute == "same", "rms"].eq(0).all()
    assert table.loc[table.attribute == "blue", "rms"].gt(0).all()  # random weights still read the words
    again = prompt_sensitivity(pipe, prompt, {"blue": "a big blue circle moving right"}, timesteps=(999, 500),
                               num_videos=2, seed=3)
    assert again.rms.tolist() == table.loc[table.attribute == "blue", "rms"].tolist()


def test_the_best_model_at_pure_noise_must_hear_the_motion_word():
    ideal = ideal_sensitivity_at_pure_noise("a big red circle moving right", num_videos=256)
    same = ideal_sensitivity_at_pure_noise("a big red circle moving right",
                                           {"same": "a big red circle moving right"}, num_videos=256)["same"]
    assert same < 0.05  # Monte-Carlo floor: two independent sets of renders of one prompt
    # the mean video drifts with the motion: a signal comparable to the colour's
    assert ideal["motion"] > 0.1 and ideal["colour"] > 0.1 and ideal["motion"] > 4 * same


def test_plot_prompt_sensitivity_draws_a_line_per_attribute_and_the_ideal_crosses():
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    from anse_lib import viz

    table = pd.DataFrame({"timestep": [999, 500, 999, 500], "attribute": ["colour", "colour", "motion", "motion"],
                          "rms": [0.2, 0.05, 0.01, 0.002]})
    ax = viz.plot_prompt_sensitivity(table, {"colour": 0.3, "motion": 0.2})
    lines = ax.get_lines()
    assert len(lines) == 4  # two curves, two crosses
    x_cross = lines[1].get_xdata()[0]
    assert 999 < x_cross < 999 + 0.2 * (999 - 500) and list(lines[1].get_ydata()) == [0.3]  # beside, not on
    assert list(lines[2].get_xdata()) == [500, 999] and list(lines[2].get_ydata()) == [0.002, 0.01]


def test_frame_variation_of_still_and_moving_videos():
    from anse_lib.toyworld.sensitivity import frame_variation, frame_variation_at_pure_noise

    still = torch.rand(1, 1, 3, 16, 16).expand(2, 8, 3, 16, 16)
    assert frame_variation(still).lt(1e-6).all() and frame_variation(still).shape == (2,)
    pipe = ToyVideoPipeline(**build_components(seed=0, transformer_config=dict(num_layers=1, sample_height=16,
                                                                                 sample_width=16, patch_size=2)))
    moving = frame_variation_at_pure_noise(pipe, "a big red circle moving right", num_videos=2, num_renders=128)
    resting = frame_variation_at_pure_noise(pipe, "a big red circle staying still", num_videos=2, num_renders=128)
    assert moving["best"] > 0.1 > 0.01 > resting["best"]  # the mean render drifts only when the object moves
    assert moving["model"] >= 0 and moving == frame_variation_at_pure_noise(
        pipe, "a big red circle moving right", num_videos=2, num_renders=128)  # deterministic
