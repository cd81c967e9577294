"""Container images for artifacts: build (docker or buildah) and push to any OCI registry,
and what a GPU image carries of CUDA (cuda.py, decided at build from the target and the
model's operators)."""
