"""Charts on a ship: trained models exported to ONNX (:mod:`.export`, needs torch) and run by ONNX
Runtime without torch (:mod:`.runtime`, ``pip install "seaice_lib[edge]"``). docs/edge.md."""
