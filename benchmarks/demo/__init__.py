"""``lean-inference demo`` in one place: the built-in workload (``workload``), the layer-by-layer
study over the pipeline (``study``) and the runner that serves it on the local engine (``runner``)."""

__all__: list[str] = []
