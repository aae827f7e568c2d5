"""The package's public names resolve to the library's own objects."""

import minicomp


def test_public_api_resolves():
    for name in minicomp.__all__:
        assert callable(getattr(minicomp, name)) or isinstance(getattr(minicomp, name), type), name
    from minicomp.distill import kd_loss

    assert minicomp.kd_loss is kd_loss


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no_such_name"):
        minicomp.no_such_name  # noqa: B018
