"""The recipes build the book's networks."""

from __future__ import annotations

import pytest

from training.recipes import RECIPES, build_model, get_recipe


def _dense_layers(model):  # type: ignore[no-untyped-def]
    return [(layer.units, layer.activation.__name__) for layer in model.layers]


@pytest.mark.parametrize(
    ("name", "input_size", "layers", "loss"),
    [
        ("mnist", 784, [(512, "relu"), (10, "softmax")], "sparse_categorical_crossentropy"),
        ("imdb", 10_000, [(16, "relu"), (16, "relu"), (1, "sigmoid")], "binary_crossentropy"),
        (
            "reuters",
            10_000,
            [(64, "relu"), (64, "relu"), (46, "softmax")],
            "sparse_categorical_crossentropy",
        ),
        ("housing", 13, [(64, "relu"), (64, "relu"), (1, "linear")], "mse"),
    ],
)
def test_recipe_builds_the_book_architecture(name, input_size, layers, loss):  # type: ignore[no-untyped-def]
    model = build_model(get_recipe(name))

    assert model.input_shape == (None, input_size)
    assert _dense_layers(model) == layers
    assert model.loss == loss
    assert type(model.optimizer).__name__ == "RMSprop"


def test_recipes_train_as_long_as_the_book():
    assert {name: (r.epochs, r.batch_size) for name, r in RECIPES.items()} == {
        "mnist": (5, 128),
        "imdb": (4, 512),
        "reuters": (9, 512),
        "housing": (130, 16),
    }
    assert RECIPES["housing"].validation == "kfold" and RECIPES["housing"].folds == 4


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ValueError, match="mnist, imdb, reuters, housing"):
        get_recipe("cifar")
