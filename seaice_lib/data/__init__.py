"""The data pipeline, in stage order: portal download -> scene files (raw -> prepared) -> temporal
sequences -> zarr patch store -> torch samples (dataset, transforms, samplers, splits)."""
