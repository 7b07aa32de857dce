"""The authors' released weights as descriptors, one per release of ``descbench.weights``, named
``<method>@<train set>`` (``hardnet-plus@liberty``, ``sosnet@hpatches_a``, ``tfeat@yosemite``,
``hardnet8v2``, ``hardnet++``, ...).

They are learned descriptors without a training recipe: ``network()`` builds the release's network and
loads its verified files from the weights folder (``$DESCBENCH_WEIGHTS_DIR``, else ``data/weights``;
the evaluation passes ``DATA/weights`` of its ``--data``), with the authors' preprocessing inside. Get
the files with ``descbench download weights NAME --data DATA``. The citation line says where the weights
come from (repository, commit, licence as the repository states it) and what they were trained on;
releases trained on HPatches carry ``hpatches_overlap`` so the evaluation can refuse overlapping test
sequences.
"""

from __future__ import annotations

from dataclasses import fields
from functools import partial

from descbench import weights
from descbench.registry import Descriptor


def load(name: str, weights_dir=None):
    """The released network ``name`` from ``weights_dir`` (default: ``weights.default_weights_dir()``)."""
    return weights.load_network(name, weights_dir)


def _source(release: weights.Release) -> str:
    if release.repo:
        return f"github.com/{release.repo}@{release.commit}"
    return release.file("weights").mirrors[0].url


def descriptor(release: weights.Release) -> Descriptor:
    """The registry entry of one release."""
    extra = {"released": release} if "released" in {f.name for f in fields(Descriptor)} else {}
    return Descriptor(name=release.name, citation=f"{release.citation} -- {release.summary()}",
                      patch_size=release.patch_size, dim=release.dim, network=partial(load, release.name),
                      recipe=None, source=_source(release), **extra)


DESCRIPTORS = [descriptor(release) for release in weights.RELEASES.values()]
