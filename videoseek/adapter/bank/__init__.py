"""Many adapters served by one frozen CLIP: one forward pass over rows that each name their own adapter.

Resident adapters live stacked: for each (tower, rank) there is one tensor per kind of weight, shaped
``[sites, slots, ...]``, and an adapter is one slot of each. A forward gathers each row's slot
(``index_select``) and applies all rows' adapters with two batched matmuls per site (``baddbmm``); a batch on a
single adapter uses plain matmuls on views of its slot. Rows naming no adapter get an exact zero delta, so they
equal the plain CLIP. Residency is an LRU bounded by the bytes the pools hold (free slots included, see
:class:`AdapterBank`); evicted adapters reload through the loader.

One job per module: ``pools`` the stacked tensors of one (tower, rank) and their slots; ``residency`` which
adapters are resident within the byte budget (LRU eviction, compaction); ``routing`` which rows use which slots
and the delta applied at each site (and why it reaches the sites through a per-thread route); ``loading``
reading adapters that are not resident; ``adapter_bank`` the :class:`AdapterBank` that ties them together.
"""

from videoseek.adapter.bank.adapter_bank import AdapterBank
from videoseek.adapter.bank.loading import AdapterLoader, AdapterNotFound

__all__ = ["AdapterBank", "AdapterLoader", "AdapterNotFound"]
