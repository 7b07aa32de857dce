"""Evaluation: UBC FPR95 (``fpr95``, ``ubc``), HPatches verification / matching / retrieval
(``hpatches``, with ``ranking`` and ``distances``), task files (``tasks``), descriptor extraction and
descriptor files (``extract``); CLI in ``commands``."""
