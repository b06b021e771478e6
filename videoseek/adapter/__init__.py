"""The Cross-Modal Adapter (Jiang et al., 2022) on a frozen open_clip CLIP.

``config`` what an adapter is, ``layer`` its math, ``model`` where it goes in a CLIP, ``files`` how it is
stored, ``adapted`` one trainable adapter (training), ``bank`` many adapters served by one backbone (a package:
``pools`` their stacked weights, ``residency`` which are resident within the byte budget, ``routing`` which
batch rows use which, ``loading`` the ones read back from disk, ``adapter_bank`` the :class:`AdapterBank`).
"""

from videoseek.adapter.adapted import AdaptedClip
from videoseek.adapter.bank import AdapterBank, AdapterLoader, AdapterNotFound
from videoseek.adapter.config import (
    PAPER_SETTINGS,
    AdapterConfig,
    AdapterConfigError,
    BackboneShape,
    ParamCount,
    TowerShape,
    adapter_tensor_shapes,
    count_parameters,
)
from videoseek.adapter.files import (
    AdapterBaseMismatch,
    AdapterFile,
    AdapterFileError,
    load_adapter,
    save_adapter,
    store_adapter,
)
from videoseek.adapter.layer import CrossModalAdapter, SharedUpProjection, quick_gelu
from videoseek.adapter.model import (
    AdapterSite,
    AlreadyAdapted,
    InjectedAdapter,
    UnsupportedBackbone,
    adapter_parameters,
    backbone_shape,
    inject_adapters,
    mark_only_adapters_trainable,
)

__all__ = [
    "PAPER_SETTINGS",
    "AdaptedClip",
    "AdapterBank",
    "AdapterBaseMismatch",
    "AdapterConfig",
    "AdapterConfigError",
    "AdapterFile",
    "AdapterFileError",
    "AdapterLoader",
    "AdapterNotFound",
    "AdapterSite",
    "AlreadyAdapted",
    "BackboneShape",
    "CrossModalAdapter",
    "InjectedAdapter",
    "ParamCount",
    "SharedUpProjection",
    "TowerShape",
    "UnsupportedBackbone",
    "adapter_parameters",
    "adapter_tensor_shapes",
    "backbone_shape",
    "count_parameters",
    "inject_adapters",
    "load_adapter",
    "mark_only_adapters_trainable",
    "quick_gelu",
    "save_adapter",
    "store_adapter",
]
