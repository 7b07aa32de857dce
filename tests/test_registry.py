"""Plug-in discovery: built-in modules, entry points, duplicate and unknown names, `descbench list`."""

import sys
import textwrap

import numpy as np
import pytest

from descbench import cli, registry
from descbench.errors import DescbenchError


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package installed the way pip leaves it: a module plus a dist-info with an entry point."""

    def install(module_name: str, descriptor_name: str) -> None:
        (tmp_path / f"{module_name}.py").write_text(textwrap.dedent(f"""
            import numpy as np
            from descbench.registry import Descriptor

            def describe(patches):
                return patches.reshape(len(patches), -1)[:, :4].astype(np.float32)

            DESCRIPTORS = [Descriptor(name={descriptor_name!r}, citation="test plug-in",
                                      patch_size=32, dim=4, describe=describe)]
        """))
        dist = tmp_path / f"{module_name}-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module_name}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(
            f"[{registry.ENTRY_POINT_GROUP}]\n{module_name} = {module_name}\n")

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_CACHE", None)
    yield install
    registry._CACHE = None
    for name in list(sys.modules):
        if name.startswith("fake_plugin"):
            del sys.modules[name]


def test_builtin_raw_is_registered_and_describes():
    raw = registry.get("raw")
    patches = np.random.default_rng(0).integers(0, 256, (5, 64, 64), dtype=np.uint8)
    out = raw.describe(patches)
    assert out.shape == (5, raw.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_raw_is_invariant_to_affine_intensity_change():
    raw = registry.get("raw")
    patches = np.random.default_rng(1).integers(20, 120, (3, 32, 32), dtype=np.uint8)
    brighter = (patches.astype(np.int32) * 2 + 10).astype(np.uint8)
    np.testing.assert_allclose(raw.describe(patches), raw.describe(brighter), atol=1e-5)


def test_entry_point_plugin_is_found(installed_plugin):
    installed_plugin("fake_plugin_a", "fake-desc")
    found = registry.discover()
    assert "fake-desc" in found and "raw" in found
    assert found["fake-desc"].describe(np.zeros((2, 32, 32), np.uint8)).shape == (2, 4)


def test_duplicate_name_names_both_origins(installed_plugin):
    installed_plugin("fake_plugin_b", "raw")
    with pytest.raises(DescbenchError, match=r"'raw' is registered twice.*descriptors\.raw.*fake_plugin_b"):
        registry.discover()


def test_unknown_name_lists_known_ones():
    with pytest.raises(DescbenchError, match=r"unknown descriptor 'nope'.*raw"):
        registry.get("nope")


def test_descriptor_needs_exactly_one_of_describe_or_network():
    with pytest.raises(DescbenchError, match="exactly one"):
        registry.Descriptor(name="x", citation="", patch_size=32, dim=1)


def test_cli_list_prints_every_descriptor(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in registry.all_descriptors():
        assert name in out


def test_cli_error_is_a_message_not_a_traceback(monkeypatch, capsys):
    def broken():
        raise DescbenchError("plug-in foo.py is broken; fix it")

    monkeypatch.setattr(registry, "all_descriptors", broken)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert "descbench list: error: plug-in foo.py is broken; fix it" in err
    assert "Traceback" not in err


def test_missing_model_file_is_a_clear_error(tmp_path):
    from descbench.models import load_model

    with pytest.raises(DescbenchError, match=r"missing\.pt does not exist"):
        load_model(tmp_path / "missing.pt")
