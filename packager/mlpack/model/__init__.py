"""The model itself, before any target: inspecting an ONNX file (info.py: valid, loadable,
its signature), its files on disk, inline or external data (files.py), the rewrite of
operators that need a C library locale (locale_ops.py), and the digits demo model a build
without MODEL trains and converts (demo.py)."""
