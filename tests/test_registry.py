"""Plug-in discovery: built-in modules, entry points, duplicate and unknown names, `descbench list`."""

import sys
import textwrap

import numpy as np
import pytest
import torch

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
    def broken(args):
        raise DescbenchError("plug-in foo.py is broken; fix it")

    monkeypatch.setattr(cli, "_list", broken)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert "descbench list: error: plug-in foo.py is broken; fix it" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------- broken plug-ins
@pytest.fixture
def plugin_folder(tmp_path, monkeypatch):
    """Extra modules of the ``descriptors`` package, in a temporary folder added to its __path__."""
    import descriptors

    folder = tmp_path / "more_descriptors"
    folder.mkdir()
    monkeypatch.setattr(descriptors, "__path__", list(descriptors.__path__) + [str(folder)])
    monkeypatch.setattr(registry, "_CACHE", None)

    def add(name: str, source: str):
        path = folder / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    yield add
    registry._CACHE = None
    for name in list(sys.modules):
        if name.startswith("descriptors.zz_"):
            del sys.modules[name]


GOOD_MODULE = """
    import numpy as np
    from descbench.registry import Descriptor

    DESCRIPTORS = [Descriptor(name="zz-good", citation="test", patch_size=8, dim=2,
                              describe=lambda p: np.zeros((len(p), 2), np.float32))]
"""


def test_broken_module_is_listed_as_an_error_and_refused_elsewhere(plugin_folder, capsys):
    plugin_folder("zz_good", GOOD_MODULE)
    syntax = plugin_folder("zz_syntax", "def oops(:\n")
    missing = plugin_folder("zz_missing", "import a_package_that_is_not_installed\n")
    bad_dim = plugin_folder("zz_bad_dim", GOOD_MODULE.replace("dim=2", "dim=0").replace("zz-good", "zz-bad"))
    assert cli.main(["list"]) == 2
    captured = capsys.readouterr()
    assert "zz-good" in captured.out and "raw" in captured.out  # the others are still listed
    err = captured.err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 3 and all(line.startswith("descbench list: error: ") for line in lines)
    assert f"{syntax} is broken" in err and "SyntaxError" in err
    assert f"{missing} is broken" in err and "No module named 'a_package_that_is_not_installed'" in err
    assert f"{bad_dim} is broken" in err and "dim must be a positive integer, got 0" in err
    # every other command refuses with the same one-line messages (no traceback)
    with pytest.raises(DescbenchError, match=r"zz_syntax\.py is broken"):
        registry.get("raw")
    assert cli.main(["evaluate", "ubc", "--descriptor", "raw", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "zz_missing.py is broken" in err and "Traceback" not in err


def test_broken_module_traceback_with_debug(plugin_folder):
    plugin_folder("zz_raises", "raise RuntimeError('boom at import')\n")
    with pytest.raises(DescbenchError, match=r"zz_raises\.py is broken.*RuntimeError: boom at import"):
        registry.discover()
    with pytest.raises(DescbenchError, match="boom at import"):
        cli.main(["--debug", "evaluate", "ubc", "--descriptor", "raw", "--out", "unused"])


def test_broken_entry_point_is_skipped_with_a_warning(installed_plugin, tmp_path, caplog):
    installed_plugin("fake_plugin_ok", "fake-ok")
    installed_plugin("fake_plugin_bad", "fake-bad")
    (tmp_path / "fake_plugin_bad.py").write_text("import a_package_that_is_not_installed\n")
    installed_plugin("fake_plugin_dim", "fake-dim")
    path = tmp_path / "fake_plugin_dim.py"
    path.write_text(path.read_text().replace("dim=4", "dim=-3"))
    with caplog.at_level("WARNING", logger="descbench.registry"):
        found = registry.discover()
    assert "fake-ok" in found and "raw" in found
    assert "fake-bad" not in found and "fake-dim" not in found
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert any("package 'fake_plugin_bad'" in w and "a_package_that_is_not_installed" in w for w in warnings)
    assert any("package 'fake_plugin_dim'" in w and "dim must be a positive integer" in w for w in warnings)


@pytest.mark.parametrize("field, value", [("dim", 0), ("dim", -1), ("dim", 2.5), ("dim", True),
                                          ("dim", "128"), ("patch_size", 0), ("patch_size", -32)])
def test_descriptor_needs_positive_integer_dim_and_patch_size(field, value):
    kwargs = dict(name="x", citation="", patch_size=32, dim=4, describe=lambda p: p)
    kwargs[field] = value
    with pytest.raises(DescbenchError, match=rf"'x': {field} must be a positive integer.*test_registry\.py"):
        registry.Descriptor(**kwargs)
    assert registry.Descriptor(name="x", citation="", patch_size=np.int64(8), dim=np.int32(3),
                               describe=lambda p: p).dim == 3


# ---------------------------------------------------------------------------- model files
def test_missing_model_file_is_a_clear_error(tmp_path):
    from descbench.models import load_model

    with pytest.raises(DescbenchError, match=r"missing\.pt does not exist"):
        load_model(tmp_path / "missing.pt")


def _good_payload():
    net = registry.get("hardnet").network()
    return {"format_version": 1, "method": "hardnet",
            "state_dict": {k: v.clone() for k, v in net.state_dict().items()}, "meta_json": "{}"}


def _drop(key):
    def edit(p):
        del p[key]
        return p
    return edit


def _set(key, value):
    def edit(p):
        p[key] = value(p) if callable(value) else value
        return p
    return edit


def _int64(p):
    p["state_dict"] = {k: v.long() for k, v in p["state_dict"].items()}
    return p


def _nan(p):
    key = next(k for k, v in p["state_dict"].items() if v.is_floating_point())
    p["state_dict"][key] = torch.full_like(p["state_dict"][key], float("nan"))
    return p



@pytest.mark.parametrize("edit, message", [
    (lambda p: [1, 2, 3], r"holds a list, not a dict"),
    (_drop("method"), r"lacks the entries method"),
    (_drop("state_dict"), r"lacks the entries state_dict"),
    (_drop("meta_json"), r"lacks the entries meta_json"),
    (_set("format_version", 7), r"format_version is 7"),
    (_set("method", 3), r"'method' must be a descriptor name"),
    (_set("method", "no-such-method"), r"model of 'no-such-method', which is not a registered descriptor"),
    (_set("method", "raw"), r"not a learned descriptor"),
    (_set("state_dict", lambda p: list(p["state_dict"].values())), r"'state_dict' must be a dict .* list"),
    (_set("state_dict", {"weight": 1.0}), r"'state_dict' must be a dict of named tensors"),
    (_set("meta_json", "{not json"), r"'meta_json' is not valid JSON"),
    (_set("meta_json", {"a": 1}), r"'meta_json' must be a JSON string"),
    (_set("meta_json", "[1, 2]"), r"'meta_json' must hold a JSON object"),
    (_int64, r"is torch.int64 but the network of 'hardnet' needs torch.float32"),
    (_nan, r"contains NaN or Inf"),
    (_set("state_dict", lambda p: dict(list(p["state_dict"].items())[:-3])), r"weights do not fit"),
])
def test_malformed_model_file_is_a_clear_error(tmp_path, edit, message):
    from descbench.models import load_model

    path = tmp_path / "model.pt"
    torch.save(edit(_good_payload()), path)
    with pytest.raises(DescbenchError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content, message", [
    (lambda good: b"", r"is empty \(0 bytes\)"),
    (lambda good: good[: len(good) // 2], r"is not a torch zip archive: it is truncated"),
    (lambda good: good[:100], r"is not a torch zip archive"),
    (lambda good: b"PK\x03\x04 this is a text file, not a model\n" * 20, r"is not a torch zip archive"),
])
def test_truncated_or_foreign_model_file_is_a_clear_error(tmp_path, content, message):
    from descbench.models import load_model, save_model

    good = tmp_path / "good.pt"
    payload = _good_payload()
    save_model(good, "hardnet", payload["state_dict"], {"seed": 0})
    net, desc, meta = load_model(good)  # the valid file loads
    assert desc.name == "hardnet" and meta == {"seed": 0}
    bad = tmp_path / "model.pt"
    bad.write_bytes(content(good.read_bytes()))
    with pytest.raises(DescbenchError, match=message) as info:
        load_model(bad)
    assert str(bad) in str(info.value)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran at load time",))


def test_model_file_with_code_is_refused(tmp_path, capsys):
    from descbench.models import load_model

    path = tmp_path / "model.pt"
    payload = _good_payload()
    payload["meta_json"] = _RunsCode()  # weights_only refuses to unpickle it
    torch.save(payload, path)
    with pytest.raises(DescbenchError, match=r"model.pt is not a readable descbench model file"):
        load_model(path)
    assert "this ran" not in capsys.readouterr().out
