"""Container images for artifacts: build (docker or buildah) and push to any OCI registry."""
