"""``python tests/helpers/tiny_hub_cli.py ARGS``: the real ``videoseek`` command, with one more pretrained tag.

open_clip knows no architecture small enough to serve from a test hub (random ViT-B-32 weights are 600 MB), so
this registers the tiny test architecture and a pretrained tag for it (``fake_hf_hub.HUB_SPEC``) whose weights
open_clip's config names in the hub repository ``fake_hf_hub.HUB_REPO``, as its own tags name theirs; then it
runs the command. Everything else (the download, the caches, HF_ENDPOINT) is videoseek's and huggingface_hub's.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import open_clip
from adapter_kit import TINY_NAME, register_tiny_configs
from fake_hf_hub import HUB_REPO, HUB_TAG


def register_hub_tag() -> None:
    with tempfile.TemporaryDirectory(prefix="tiny-configs-") as directory:  # open_clip reads them at once
        register_tiny_configs(Path(directory))
    tags = open_clip.pretrained._PRETRAINED.setdefault(TINY_NAME, {})
    tags[HUB_TAG] = open_clip.pretrained._pcfg(hf_hub=f"{HUB_REPO}/", quick_gelu=True)


if __name__ == "__main__":
    register_hub_tag()
    from videoseek.cli import main

    sys.argv[0] = "videoseek"
    main()
