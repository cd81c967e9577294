"""What lets a user trust an artifact: the inputs that decide a build and its one timestamp,
so that a rebuild gives the same bytes (reproducible.py); the software bill of materials
(sbom.py, written by the build step in sbom_step.py); and the OpenSSF model-signing
signature over the artifact folder that sign, verify, deploy, push and rollout check
(signing.py)."""
