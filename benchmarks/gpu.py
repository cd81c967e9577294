"""The cuda-gpu target on a real GPU: its artifacts' own serving code, on CUDA, against the CPU.

    python -m benchmarks.gpu [--out bench-out/gpu] [--no-write]      # all three steps on a GPU host
    python -m benchmarks.gpu build [--out DIR] [--quick]             # needs mlpack: the artifacts
    python -m benchmarks.gpu run [--out DIR] [--allow-cpu]           # needs numpy, onnxruntime-gpu, tokenizers, onnx
    python -m benchmarks.gpu report [--out DIR] [--no-write]         # the BENCHMARKS.md section
    python -m benchmarks.gpu --quick --check                         # any host: the build side only

`build` makes cuda-gpu artifacts of the embedded demo (a scikit-learn MLP), the
all-MiniLM-L6-v2 sentence encoder (real weights, benchmarks/minilm_model.py; text in,
tokenizing included) and a small CNN (onnx.helper), and keeps what `run` needs: each
Bento's app folder (mlpack_runtime, runtime.json, the fp16 model, the tokenizer), the CUDA
libraries its image would carry (mlpack.image.cuda), probe inputs, and the float model's outputs
on them (this host's CPU) for the cosine column.

`run` serves each app through its own `mlpack_runtime.ServedModel`, one fresh process per
configuration: fp16 on CUDA (as shipped), fp32 on CUDA and fp32 on the CPU (the shipped
model with its weights widened back to float32: the float model's arithmetic with
fp16-rounded weights). CUDA processes see only the CUDA libraries the artifact's image
carries (a folder of links into this host's NVIDIA wheels on LD_LIBRARY_PATH), and the
run fails unless their sessions run on CUDAExecutionProvider (`--allow-cpu` runs the
machinery on a CPU host, marked so, for CI). It times `infer` (what every route calls) at
batch 1, 32 and 256, the model alone at 32, sweeps MiniLM's batch size (the Bento's
adaptive batching is set from it), records which CUDA libraries the process mapped, and,
where mlpack imports, runs the optimizer for cuda-gpu on the demo here (timing and gating
on CUDA). `report` writes the "GPU serving (cuda-gpu)" section of BENCHMARKS.md with the
GPU's name and driver.

Where no GPU ran it, BENCHMARKS.md says so: no figure is made up.

`--quick --check` (CI, any host) measures no GPU figure: it runs `build --quick` into a
temporary folder (or `--out`; with `--built`, it checks the `build --quick` already in
`--out` instead) and checks what the build decides on the CPU: every artifact
ships fp16, gated in the runtime it pins, its image carries cuDNN's convolution libraries
only where the model has convolutions, and the fp16 model is at most FP16_SIZE_LIMIT of the
float model's bytes (fp16 halves the weights; the graph and integer tensors stay).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADING = "GPU serving (cuda-gpu)"
BATCHES = (1, 32, 256)
SWEEP = (1, 8, 32, 64, 128, 256, 512, 1024)  # MiniLM fp16 on CUDA: the batching curve
MODEL_ALONE_BATCH = 32
BUDGET_S = 1.0  # timing per configuration and batch size, after warm-up
MIN_RUNS = 5
CONFIGS = ("fp16-cuda", "fp32-cuda", "fp32-cpu")
CUDA = "CUDAExecutionProvider"
FP16_SIZE_LIMIT = 0.65  # the demo measures 0.63: a small MLP whose graph outweighs half its weights


# ---- build (this host: mlpack) --------------------------------------------------------------

def build(out: Path, quick: bool = False) -> dict:
    """Artifacts for cuda-gpu, and what `run` needs from each; writes out/plan.json."""
    import numpy as np

    from mlpack.build import BuildRequest, build as build_artifact
    from mlpack.model.demo import demo_model
    from mlpack.render.facts import container_facts
    from mlpack.progress import Progress
    from mlpack.render.context import RenderContext

    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    models: list[dict] = []
    demo, validation = demo_model()
    with np.load(validation) as data:
        pixels = data["pixels"][:256].astype(np.float32)
    models.append({"name": "demo", "model": demo, "calibration": validation, "inputs": {"pixels": pixels}})
    cnn = _cnn_model(work / "cnn.onnx")
    images = np.random.default_rng(1).random((256, 3, 32, 32), dtype=np.float32)
    np.savez(work / "cnn.npz", images=images[:64])
    models.append({"name": "cnn", "model": cnn, "calibration": work / "cnn.npz", "inputs": {"images": images}})
    if not quick:
        from benchmarks.minilm_model import build_minilm, package_dir, sentences

        folder = work / "minilm"
        folder.mkdir(parents=True, exist_ok=True)
        model = build_minilm(folder / "model.onnx")
        shutil.copyfile(package_dir() / "tokenizer.json", folder / "tokenizer.json")
        texts = sentences(96 + 256)
        (folder / "sentences.txt").write_text("\n".join(texts[:96]) + "\n")
        models.append({"name": "minilm", "model": model, "calibration": folder / "sentences.txt",
                       "text": texts[96:]})

    plan = {"artifacts": []}
    for spec in models:
        result = build_artifact(BuildRequest(model=spec["model"], target="cuda-gpu", out=work / "artifacts",
                                             name=spec["name"], calibration=spec["calibration"], force=True),
                                Progress(quiet=True))
        app = out / "apps" / spec["name"]
        shutil.rmtree(app, ignore_errors=True)
        shutil.copytree(result.path / "bento" / "src", app)
        cuda = container_facts(RenderContext.from_manifest(result.manifest)).cuda
        (out / "inputs").mkdir(exist_ok=True)
        payload = {"text": spec["text"]} if "text" in spec else spec["inputs"]
        if "text" in spec:
            (out / "inputs" / f"{spec['name']}.json").write_text(json.dumps(payload))
        else:
            np.savez(out / "inputs" / f"{spec['name']}.npz", **payload)
        reference = _float_outputs(result, spec, payload)
        np.save(out / "inputs" / f"{spec['name']}-reference.npy", reference)
        plan["artifacts"].append({
            "name": spec["name"], "variant": result.manifest.model.variant,
            "model_bytes": result.manifest.model.size_bytes, "float_bytes": spec["model"].stat().st_size,
            "cudnn": list(cuda.cudnn_keep), "why_cudnn": cuda.why_cudnn,
            "nvrtc": any("nvrtc" in r for r in result.manifest.requirements.server),
            "gated_with": result.manifest.optimization.gated_with,
        })
    # The demo's float model and data, for the optimizer's run on the GPU host.
    shutil.copyfile(demo, out / "inputs" / "demo-float.onnx")
    shutil.copyfile(validation, out / "inputs" / "demo-validation.npz")
    plan["onnxruntime"] = result.manifest.requirements.runtime[0]
    plan["cuda_wheels"] = list(result.manifest.target.cuda.wheels)
    (out / "plan.json").write_text(json.dumps(plan, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return plan


def _cnn_model(path: Path) -> Path:
    """A small convolutional classifier (3x32x32 in, 10 classes out): Conv, BatchNorm-free,
    MaxPool, GlobalAveragePool, Gemm; random weights, fixed seed."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "images"
    for i, (cin, cout) in enumerate(((3, 16), (16, 32), (32, 64))):
        w = (rng.standard_normal((cout, cin, 3, 3)) * (2 / (cin * 9)) ** 0.5).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
                  helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2])]
        x = f"p{i}"
    inits += [numpy_helper.from_array((rng.standard_normal((64, 10)) * 0.1).astype(np.float32), "fc"),
              numpy_helper.from_array(np.zeros(10, np.float32), "fcb")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"])]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                           ["batch", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _float_outputs(result, spec: dict, payload: dict):
    """The float model's first output on the probes, on this host's CPU: the cosine's reference."""
    import numpy as np
    import onnxruntime as ort

    source = spec["model"]
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    if "text" in spec:  # tokenized by the artifact's own processing, as the service does
        from mlpack.runtime.config import load_runtime
        from mlpack.runtime.processing import load_processing

        app = result.path / "bento" / "src"
        config = load_runtime(app / "runtime.json")
        processing = load_processing(config.processing, str(app), config.inputs, config.outputs)
        feeds = processing.preprocess({"text": np.array(payload["text"], dtype=object)})
    else:
        feeds = {k: np.asarray(v, dtype=np.float32) for k, v in payload.items()}
    return np.asarray(session.run(None, feeds)[-1 if "text" not in spec else 0], dtype=np.float32)


# ---- run (the GPU host: numpy, onnxruntime-gpu, tokenizers, onnx) ----------------------------

def run(out: Path, allow_cpu: bool = False) -> dict:
    plan = json.loads((out / "plan.json").read_text())
    results = {"host": host_facts(), "allow_cpu": allow_cpu, "artifacts": {}, "plan": plan}
    failures = []
    for artifact in plan["artifacts"]:
        name = artifact["name"]
        apps = {"fp16-cuda": out / "apps" / name, "fp32-cuda": _widened(out / "apps" / name, out / "fp32" / name),
                "fp32-cpu": _cpu_only(_widened(out / "apps" / name, out / "fp32-cpu" / name))}
        rows = {}
        for config in CONFIGS:
            app = apps[config]
            sweep = name == "minilm" and config == "fp16-cuda"
            rows[config] = measured = _measure_in_child(out, name, app, config, artifact, allow_cpu, sweep)
            if config.endswith("cuda") and measured.get("provider") != CUDA and not allow_cpu:
                failures.append(f"{name} {config}: the session ran on {measured.get('provider')} "
                                f"({measured.get('error', 'no error')})")
        results["artifacts"][name] = rows
        print(f"{name}: " + "; ".join(f"{c} on {r.get('provider')}" for c, r in rows.items()), flush=True)
    results["optimizer"] = _optimizer_on_target(out)
    (out / "gpu.json").write_text(json.dumps(results, indent=2))
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise SystemExit(f"not on CUDA: {failures[0]}{more}")
    return results


def host_facts() -> dict:
    facts = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        import onnxruntime

        facts["onnxruntime"] = f"{onnxruntime.capi.build_and_package_info.package_name} {onnxruntime.__version__}"
    except Exception as exc:  # the report says what was there
        facts["onnxruntime"] = f"not importable: {exc}"
    smi = shutil.which("nvidia-smi")
    if smi:
        done = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            facts["gpu"], facts["driver"] = [p.strip() for p in done.stdout.strip().splitlines()[0].split(",")]
    return facts


def cuda_library_folder(dest: Path, artifact: dict) -> Path:
    """A folder of links to exactly the CUDA libraries the artifact's image carries, taken
    from this host's NVIDIA wheels (nvidia/cu13/lib, nvidia/cudnn/lib of any site folder)."""
    wanted = ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", *artifact["cudnn"]]
    if artifact.get("nvrtc"):
        wanted += ["libnvrtc.so.13", "libnvrtc-builtins.so.13.0"]
    dest.mkdir(parents=True, exist_ok=True)
    roots = [Path(p) for p in sys.path if p and Path(p, "nvidia").is_dir()]
    for name in wanted:
        found = next((Path(f) for root in roots for f in glob.glob(str(root / "nvidia" / "*" / "lib" / name))), None)
        if found is not None and not (dest / name).exists():
            (dest / name).symlink_to(found)
    return dest


def _measure_in_child(out: Path, name: str, app: Path, config: str, artifact: dict, allow_cpu: bool,
                      sweep: bool) -> dict:
    env = {**os.environ, "MLPACK_AGENT_DISABLED": "1"}  # the serving code alone, no telemetry socket
    if config.endswith("cuda"):
        libs = cuda_library_folder(out / "cuda-libs" / name, artifact)
        env["LD_LIBRARY_PATH"] = str(libs)
        if allow_cpu:
            env["MLPACK_ALLOW_CPU"] = "1"
    else:
        env.pop("LD_LIBRARY_PATH", None)
    result = out / "measure" / f"{name}-{config}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    probes = out / "inputs" / f"{name}.json"  # text; arrays are in NAME.npz
    probes = probes if probes.is_file() else probes.with_suffix(".npz")
    command = [sys.executable, "-m", "benchmarks.gpu", "measure", str(app), str(probes), str(result), config] + (["--sweep"] if sweep else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not result.is_file():
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {"provider": None, "error": lines[-1] if lines else f"exit {done.returncode}"}
    measured = json.loads(result.read_text())
    reference = __import__("numpy").load(out / "inputs" / f"{name}-reference.npy")
    measured["cosine_min"], measured["cosine_mean"] = _cosine(reference, measured.pop("outputs"))
    return measured


def _cosine(reference, got) -> tuple[float, float]:
    import numpy as np

    a, b = np.asarray(reference, np.float64), np.asarray(got, np.float64).reshape(len(reference), -1)
    a = a.reshape(len(a), -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
    return float(cos.min()), float(cos.mean())


def measure(app: Path, probes: Path, result: Path, config: str, sweep: bool) -> None:
    """In a fresh process: the app's own ServedModel, timed; the JSON goes to `result`."""
    import numpy as np

    sys.path.insert(0, str(app))
    from mlpack_runtime.served import ServedModel

    model = ServedModel(app)
    if probes.suffix == ".json":
        key, rows = next(iter(json.loads(probes.read_text()).items()))
        values = np.array(rows, dtype=object)
    else:
        with np.load(probes) as arrays:
            key = arrays.files[0]
            values = arrays[key].astype(np.float32)
    outputs = model.infer({key: values})
    served = {"provider": model.session.get_providers()[0], "mapped": _mapped_libraries(), "latency": {},
              "outputs": np.asarray(outputs[-1 if key != "text" else 0], np.float32).tolist()}
    for batch in (SWEEP if sweep else BATCHES):
        part = {key: values[np.arange(batch) % len(values)]}
        served["latency"][str(batch)] = _timed(lambda: model.infer(part))
    feeds = model.processing.preprocess({key: values[np.arange(MODEL_ALONE_BATCH) % len(values)]})
    served["model_alone_ms"] = _timed(lambda: model.session.run(None, feeds))
    result.write_text(json.dumps(served))


def _cpu_only(app: Path) -> Path:
    """A copy of an app that runs on the CPU: the fp32-on-CPU rows."""
    path = app / "runtime.json"
    runtime = json.loads(path.read_text())
    runtime["session"]["execution_providers"] = ["CPUExecutionProvider"]
    path.write_text(json.dumps(runtime))
    return app


def _timed(call) -> float:
    for _ in range(3):  # warm up: the first runs allocate and pick kernels
        call()
    times, started = [], time.perf_counter()
    while len(times) < MIN_RUNS or time.perf_counter() - started < BUDGET_S:
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= 2000:
            break
    return statistics.median(times)


def _mapped_libraries() -> dict[str, float]:
    """The shared libraries of CUDA, cuDNN and onnxruntime this process mapped, in MiB on disk."""
    found = {}
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if "/" in line else ""
            name = os.path.basename(path)
            if name.startswith(("libcu", "libnvrtc", "libonnxruntime", "onnxruntime_pybind")) and os.path.exists(path):
                found[name] = round(os.path.getsize(path) / 2**20, 1)
    return dict(sorted(found.items()))


def _widened(app: Path, dest: Path) -> Path:
    """A copy of an app whose model computes in float32: fp16 weights widened, casts to fp16 made fp32."""
    import onnx
    from onnx import TensorProto, numpy_helper

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(app, dest)
    runtime = json.loads((dest / "runtime.json").read_text())
    path = dest / runtime["model_file"]
    model = onnx.load(str(path))
    for graph in [model.graph]:
        for i, tensor in enumerate(graph.initializer):
            if tensor.data_type == TensorProto.FLOAT16:
                wide = numpy_helper.from_array(numpy_helper.to_array(tensor).astype("float32"), tensor.name)
                graph.initializer[i].CopyFrom(wide)
        for node in graph.node:
            for attr in node.attribute:
                if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                    attr.i = TensorProto.FLOAT
                if attr.HasField("t") and attr.t.data_type == TensorProto.FLOAT16:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype("float32")))
        for info in (*graph.value_info, *graph.input, *graph.output):
            if info.type.tensor_type.elem_type == TensorProto.FLOAT16:
                info.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.save(model, str(path))
    return dest


def _optimizer_on_target(out: Path) -> dict:
    """mlpack's optimizer for cuda-gpu on the demo, here: candidates timed (and fp16 gated) on
    the target's provider when it loads. Skipped, and said, where mlpack does not import."""
    try:
        from mlpack.model.info import inspect_model
        from mlpack.optimize import optimize_model
        from mlpack.targets import load_target
    except ImportError as exc:
        return {"skipped": f"mlpack does not import here ({exc})"}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = optimize_model(inspect_model(out / "inputs" / "demo-float.onnx"), load_target("cuda-gpu"),
                                    Path(tmp), data_path=out / "inputs" / "demo-validation.npz")
        except Exception as exc:  # the serving figures above stand on their own
            return {"skipped": f"the optimizer failed: {type(exc).__name__}: {exc}"}
        return {"measured_on": result.measured_on, "gated_with": result.gated_with, "chosen": result.chosen.name,
                "why": result.why, "table": result.table()}


# ---- report ---------------------------------------------------------------------------------

def report(out: Path) -> str:
    data = json.loads((out / "gpu.json").read_text())
    host, plan = data["host"], data["plan"]
    where = (f"{host.get('gpu', 'no GPU')} (driver {host.get('driver', '-')}), {host['cpus']} CPU cores, "
             f"Python {host['python']}, {host['onnxruntime']}")
    lines = [f"## {HEADING}", "",
             "`python -m benchmarks.gpu` (build here, run on the GPU host: see the script's docstring). "
             f"Measured on {where}, each configuration in a fresh process through the artifact's own "
             "`mlpack_runtime.ServedModel` (`infer`: what every route calls; MiniLM takes text, tokenizing "
             "included), medians. CUDA processes saw only the CUDA libraries the artifact's image carries "
             f"({', '.join(plan['cuda_wheels'])}; the GPU host's own NVIDIA wheels of the same CUDA major, "
             "linked one by one). fp32 is the shipped fp16 model with its weights widened back to float32; "
             "cosine is against the float model's output on the build host's CPU.", ""]
    if data["allow_cpu"]:
        lines += ["**Run with --allow-cpu on a host without a GPU: the CUDA rows ran on the CPU. "
                  "These are not GPU figures.**", ""]
    for artifact in plan["artifacts"]:
        name, rows = artifact["name"], data["artifacts"][artifact["name"]]
        lines += [f"### {name} ({artifact['variant']}, {artifact['model_bytes'] / 2**20:.1f} MiB; image: "
                  f"{artifact['why_cudnn']})", "",
                  "| configuration | provider | " + " | ".join(f"batch {b}" for b in BATCHES)
                  + f" | model alone, batch {MODEL_ALONE_BATCH} | cosine to float (min / mean) |",
                  "|---|---|" + "---:|" * (len(BATCHES) + 1) + "---|"]
        for config in CONFIGS:
            r = rows[config]
            if r.get("provider") is None:
                lines.append(f"| {config} | failed: {r.get('error')} |" + " |" * (len(BATCHES) + 2))
                continue
            cells = [_latency(r["latency"].get(str(b)), b) for b in BATCHES]
            lines.append(f"| {config} | {r['provider']} | " + " | ".join(cells)
                         + f" | {r['model_alone_ms']:.2f} ms | {r['cosine_min']:.6f} / {r['cosine_mean']:.6f} |")
        fp16, fp32, cpu = (rows[c].get("latency", {}) for c in CONFIGS)
        if all(str(b) in d for d in (fp16, fp32, cpu) for b in (32, 256)):
            lines += ["", f"fp16 on CUDA is {fp32['32'] / fp16['32']:.2f}x fp32 on CUDA at batch 32; CUDA fp16 is "
                      f"{cpu['32'] / fp16['32']:.1f}x the CPU at batch 32 and {cpu['256'] / fp16['256']:.1f}x at 256."]
        mapped = rows["fp16-cuda"].get("mapped", {})
        if mapped:
            lines += ["", "Mapped by the CUDA process: " + ", ".join(f"`{k}` {v} MiB" for k, v in mapped.items())
                      + f" ({sum(mapped.values()):.0f} MiB)."]
        lines.append("")
    sweep = data["artifacts"].get("minilm", {}).get("fp16-cuda", {}).get("latency", {})
    if len(sweep) > len(BATCHES):
        base = sweep["1"]
        lines += ["### Batch size (MiniLM fp16 on CUDA, text in)", "",
                  "| batch | latency | sentences/s | cost vs batch 1 |", "|---:|---:|---:|---:|"]
        lines += [f"| {b} | {ms:.2f} ms | {int(b) * 1000 / ms:,.0f} | {ms / base:.1f}x |" for b, ms in sweep.items()]
        lines.append("")
    opt = data.get("optimizer", {})
    lines += ["### The optimizer on the target", ""]
    if "skipped" in opt:
        lines += [f"Not run: {opt['skipped']}.", ""]
    else:
        lines += [f"`optimize_model` for cuda-gpu on the demo, on this host: timed on {opt['measured_on'] or 'nothing'}, "
                  f"gated in {opt['gated_with']}; ships {opt['chosen']} ({opt['why']}).", "", "```text",
                  opt["table"], "```", ""]
    return "\n".join(lines)


def quick_check(out: Path, built: bool = False) -> int:
    """The build side of the cuda-gpu target, checked (no GPU figure): see the docstring.
    `built`: check the `build --quick` already in `out`."""
    from benchmarks.quick import Ratio, report as check_report

    if built and not (out / "plan.json").is_file():
        raise SystemExit(f"--built: {out} holds no build; run `python -m benchmarks.gpu build --quick --out {out}` first")
    plan = json.loads((out / "plan.json").read_text()) if built else build(out, quick=True)
    if built and [a["name"] for a in plan["artifacts"]] != ["demo", "cnn"]:
        raise SystemExit(f"--built: {out} holds a full build, not `build --quick`")
    ratios, problems = [], []
    for artifact in plan["artifacts"]:
        name = artifact["name"]
        if artifact["variant"] != "fp16":
            problems.append(f"{name} ships {artifact['variant']}, not fp16")
        if not artifact["gated_with"].startswith(plan["onnxruntime"].replace("==", " ")):
            problems.append(f"{name} was gated in {artifact['gated_with']}, not the pinned {plan['onnxruntime']}")
        convolutional = name == "cnn"  # the demo is an MLP
        if ("libcudnn_cnn.so.9" in artifact["cudnn"]) != convolutional:
            problems.append(f"{name}'s image carries {artifact['cudnn']}")
        ratios.append(Ratio(f"{name}: the fp16 model / the float model (bytes)", artifact["model_bytes"],
                            artifact["float_bytes"], FP16_SIZE_LIMIT))
    for problem in problems:
        print(f"check: {problem}: REGRESSION")
    print("check: no GPU figure is measured by --quick: ok")
    return check_report(ratios, True) or (1 if problems else 0)


def _latency(ms: float | None, batch: int) -> str:
    if ms is None:
        return "-"
    return f"{ms:.2f} ms" + (f" ({batch * 1000 / ms:,.0f}/s)" if batch > 1 else "")


def not_run_section() -> str:
    return (f"## {HEADING}\n\nNot produced yet: `python -m benchmarks.gpu` has not run on a GPU host. "
            "No figure here was measured on a GPU.\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("step", nargs="?", default="all", choices=["all", "build", "run", "report", "measure"])
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="the working folder (default bench-out/gpu; with --quick "
                        "--check, a temporary one)")
    parser.add_argument("--quick", action="store_true", help="build: the demo and the CNN only (no MiniLM); "
                        "with --check and no step: check that build's CPU side (no GPU figure)")
    parser.add_argument("--check", action="store_true", help="with --quick: exit 1 if a check fails")
    parser.add_argument("--built", action="store_true", help="with --quick --check --out DIR: check the "
                        "`build --quick --out DIR` already there instead of building")
    parser.add_argument("--allow-cpu", action="store_true", help="run: on a host without a GPU (CI), marked so")
    parser.add_argument("--sweep", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.quick and args.check and args.step == "all":
        if args.out:
            raise SystemExit(quick_check(args.out, built=args.built))
        if args.built:
            raise SystemExit("--built checks the build in --out DIR: name the folder")
        with tempfile.TemporaryDirectory(prefix="mlpack-gpu-quick-") as tmp:
            code = quick_check(Path(tmp))
        raise SystemExit(code)
    args.out = args.out or Path("bench-out/gpu")
    if args.step == "measure":
        app, probes, result, config = args.args
        measure(Path(app), Path(probes), Path(result), config, args.sweep)
        return
    if args.step in ("all", "build"):
        build(args.out, quick=args.quick)
    if args.step in ("all", "run"):
        run(args.out, allow_cpu=args.allow_cpu)
    if args.step in ("all", "report"):
        text = report(args.out) if (args.out / "gpu.json").is_file() else not_run_section()
        print(text)
        if not args.no_write:
            from benchmarks.markdown import write_section

            write_section(HEADING, text)


if __name__ == "__main__":
    main()
