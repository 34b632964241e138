"""The zoo's contract: Z = W x + b per layer, one logit, gradients everywhere, round trips."""

import pytest
import torch

from models import DenseLayer, ModelConfigError, PCatModel, create_model, list_models
from models.layers import ACTIVATIONS

IMAGE_SIZE = 16


def test_dense_layer_is_wx_plus_b_then_activation():
    torch.manual_seed(0)
    for name, activation in ACTIVATIONS.items():
        layer = DenseLayer(12, 5, activation=name).eval()
        x = torch.randn(4, 12)
        z, a = layer.forward_with_z(x)
        expected_z = x @ layer.weight.T + layer.bias  # the article's Z = W x + b
        torch.testing.assert_close(z, expected_z)
        torch.testing.assert_close(a, activation()(expected_z))
        torch.testing.assert_close(layer(x), a)


def test_dense_layer_norm_acts_between_z_and_activation():
    layer = DenseLayer(8, 6, activation="relu", norm="layer").eval()
    x = torch.randn(3, 8)
    z, a = layer.forward_with_z(x)
    torch.testing.assert_close(z, x @ layer.weight.T + layer.bias)
    torch.testing.assert_close(a, torch.relu(torch.nn.functional.layer_norm(z, (6,))))


@pytest.mark.parametrize("name", list_models())
def test_every_model_outputs_one_logit_per_image(name):
    model = create_model(name, image_size=IMAGE_SIZE)
    logits = model(torch.randn(5, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert logits.shape == (5,)


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)  # dropout and stochastic depth draw in train mode: the same draws every run
    model = create_model(name, image_size=IMAGE_SIZE)
    model(torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE)).sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert param.grad.abs().sum() > 0, f"{param_name} got an all-zero gradient"


@pytest.mark.parametrize("name", list_models())
def test_state_dict_round_trip_gives_identical_outputs(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, image_size=IMAGE_SIZE).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    torch.manual_seed(1)  # a differently initialised copy must become identical
    clone = create_model(name, image_size=IMAGE_SIZE).eval()
    clone.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    x = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", list_models())
def test_intermediates_are_the_forward_pass(name):
    model = create_model(name, image_size=IMAGE_SIZE).eval()
    x = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    logits, layers = model.forward_with_intermediates(x)
    torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
    assert list(layers)[-1] == "head"
    torch.testing.assert_close(layers["head"].z, logits)
    torch.testing.assert_close(layers["head"].a, torch.sigmoid(logits))  # A of the head is p_cat
    for trace in layers.values():
        assert trace.z.shape == trace.a.shape
    assert list(model.linear_layers()) == list(layers)  # W, b, Z and A share the layer names
    for name, linear in model.linear_layers().items():
        assert linear.out_features == (layers[name].z.shape[-1] if layers[name].z.ndim > 1 else 1)


def test_logreg_is_a_single_z_equals_wx_plus_b():
    model = create_model("logreg", image_size=IMAGE_SIZE)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 and linears[0].weight.shape == (1, 3 * IMAGE_SIZE**2)
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(model(x), (x.flatten(1) @ linears[0].weight.T + linears[0].bias)[:, 0])


def test_article_mlp_has_three_hidden_layers():
    model = create_model("mlp", image_size=IMAGE_SIZE)
    _, layers = model.forward_with_intermediates(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert list(layers) == ["layer1", "layer2", "layer3", "head"]


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ModelConfigError, match="known models: .*logreg.*mlp"):
        create_model("perceptron")


def test_unknown_argument_names_it_and_the_accepted_ones():
    with pytest.raises(ModelConfigError, match="'hiden_dims'.*hidden_dims"):
        create_model("mlp", hiden_dims=[4])


def test_mixer_rejects_an_image_size_its_patches_cannot_tile():
    with pytest.raises(ModelConfigError, match="not a multiple of patch_size 8"):
        create_model("mixer", image_size=30)


def test_mixer_token_mixing_is_wx_plus_b_across_patches():
    model = create_model("mixer", image_size=IMAGE_SIZE, patch_size=4, depth=1).eval()
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    _, layers = model.forward_with_intermediates(x)
    block = model.blocks[0]
    h = layers["embed"].a  # (B, N, D)
    x_tokens = block.token_norm(h).transpose(1, 2)  # (B, D, N): one feature across all patches
    expected = x_tokens @ block.token_fc1.weight.T + block.token_fc1.bias
    torch.testing.assert_close(layers["block1.token_fc1"].z, expected)


def test_per_image_normalisation_takes_out_brightness_and_contrast():
    generator = torch.Generator().manual_seed(0)
    photo = torch.randint(0, 100, (1, 3, 8, 8), dtype=torch.uint8, generator=generator)
    brighter = photo * 2 + 10  # the same photo, more contrast and light
    flat = torch.full((1, 3, 8, 8), 77, dtype=torch.uint8)  # no contrast at all: must not divide by 0
    model = PCatModel("logreg", image_size=8, input_norm="per_image")
    x = model.normalize(torch.cat([photo, brighter, flat]))
    torch.testing.assert_close(x[0], x[1])
    torch.testing.assert_close(x[0].mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(x[0].std(), torch.tensor(1.0))
    assert torch.equal(x[2], torch.zeros_like(x[2]))
    model = PCatModel("logreg", image_size=8)  # the default: the training split's statistics
    model.set_channel_stats(torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.0]))
    expected = (photo / 255 - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 1e-3]  # a constant channel's std is floored, not divided by
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(model.normalize(photo), expected)


def test_spatial_shift_moves_each_quarter_of_the_channels_one_token():
    from models.shift_mlp import spatial_shift

    h = torch.randn(2, 5, 6, 8)  # (B, H, W, C): quarters of 2 channels
    out = spatial_shift(h)
    torch.testing.assert_close(out[:, 1:, :, 0:2], h[:, :-1, :, 0:2])  # moved down
    torch.testing.assert_close(out[:, :-1, :, 2:4], h[:, 1:, :, 2:4])  # up
    torch.testing.assert_close(out[:, :, 1:, 4:6], h[:, :, :-1, 4:6])  # right
    torch.testing.assert_close(out[:, :, :-1, 6:8], h[:, :, 1:, 6:8])  # left
    torch.testing.assert_close(out[:, 0, :, 0:2], h[:, 0, :, 0:2])  # nothing shifts into the border


def test_merge_neighbours_concatenates_each_2x2_group():
    from models.patches import merge_neighbours

    h = torch.randn(1, 4, 6, 3)
    merged = merge_neighbours(h)
    assert merged.shape == (1, 2, 3, 12)
    group = torch.cat([h[0, 2, 4], h[0, 2, 5], h[0, 3, 4], h[0, 3, 5]])  # tokens of output (1, 2)
    torch.testing.assert_close(merged[0, 1, 2], group)


def test_shift_mlp_first_block_sees_only_neighbouring_patches():
    model = create_model("shift_mlp", image_size=32, patch_size=4, widths=[8, 16], depths=[1, 1]).eval()
    x = torch.randn(1, 3, 32, 32)
    far, near = x.clone(), x.clone()
    far[:, :, 28:, 28:] += 1.0  # the bottom-right patch, (7, 7) on the 8x8 grid
    near[:, :, 4:8, 0:4] += 1.0  # the patch below (0, 0)
    name = "stage1.block1.post_shift_channel_fc"
    z = {
        k: model.forward_with_intermediates(v)[1][name].z[0, 0]
        for k, v in (("x", x), ("far", far), ("near", near))
    }
    torch.testing.assert_close(z["far"], z["x"], rtol=0, atol=0)  # token (0, 0) cannot see patch (7, 7)
    assert not torch.allclose(z["near"], z["x"])  # but sees its neighbour through the shift


def test_shift_mlp_rejects_a_grid_its_stages_cannot_halve():
    with pytest.raises(ModelConfigError, match="multiple of 16"):
        create_model("shift_mlp", image_size=40, patch_size=4, widths=[8, 16, 32], depths=[1, 1, 1])
    with pytest.raises(ModelConfigError, match="multiples of 4"):
        create_model("shift_mlp", image_size=32, widths=[6, 16], depths=[1, 1])
