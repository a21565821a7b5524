"""Cold start of the `videolens` command: --help, errors, and time to the first result.

Each case runs in a fresh process, ``--runs`` times (an error case slower than 10 s, i.e. the
old half-minute of hub retries, runs once);
the table shows the best and the median wall time. Nothing leaves the machine: the hub is
pointed at a closed local port (``HF_ENDPOINT=http://127.0.0.1:9``) with an empty
Hugging Face cache, and ``HF_HUB_OFFLINE`` is unset, as on a laptop without network.

Cases:
  help           videolens --help
  usage-error    videolens classify a.mp4 --top x           (argparse rejects the value)
  model-typo     videolens classify a.mp4 -l ... --model clip-b23
  offline        videolens classify a.mp4 -l ... --model clip-b32   (not cached, no hub)
  first-result   videolens classify a.mp4 -l ... --model TINY --json: the first JSON line,
                 with a tiny CLIP saved to a temp folder (tests/tiny_models.py) and a cold
                 text-embedding cache

``python -X importtime`` of `--help` and of `first-result` gives the import share.

    python benchmarks/bench_startup.py [--runs 5] [--baseline DIR]

``--baseline DIR`` also runs another source tree (e.g. the commit before a change, from
``git archive <commit> src | tar -x -C DIR``) under the same conditions, alternating with
this tree run by run so that both see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's tiny-model and video builders
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_info  # noqa: E402

SLOW = 10.0  # seconds: a case this slow is timed once


def run_once(argv: list[str], env: dict[str, str], first_line: bool) -> tuple[float, int, str]:
    """(seconds until exit — or until the first stdout line when ``first_line`` —, exit code,
    last stderr line)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    if first_line:
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - start if line else float("nan")
        _, err = proc.communicate()
    else:
        _, err = proc.communicate()
        elapsed = time.perf_counter() - start
    return elapsed, proc.returncode, err.strip().splitlines()[-1] if err.strip() else ""


def time_case(argv, envs: dict[str, dict[str, str]], runs: int, first_line: bool = False
              ) -> dict[str, dict]:
    """Run ``argv`` under each labelled environment in turn, ``runs`` rounds (the first-result
    case always all of them)."""
    times: dict[str, list[float]] = {label: [] for label in envs}
    codes: dict[str, int] = {}
    messages: dict[str, str] = {}
    for _ in range(runs):
        for label, env in envs.items():
            if times[label] and max(times[label]) > SLOW and not first_line:
                continue
            elapsed, codes[label], messages[label] = run_once(argv, env, first_line)
            times[label].append(elapsed)
    return {label: {"best_s": round(min(t), 3), "median_s": round(statistics.median(t), 3),
                    "runs": len(t), "exit_code": codes[label], "stderr_tail": messages[label]}
            for label, t in times.items()}


def import_profile(argv: list[str], env: dict[str, str]) -> dict:
    """Total top-level import time and the five costliest top-level imports (seconds)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True,
                          text=True, env=env)
    top: dict[str, float] = {}
    heavy = {"torch": False, "transformers": False}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if match:  # no indentation: a top-level import of this process
            top[match.group(2)] = top.get(match.group(2), 0.0) + int(match.group(1)) / 1e6
        name = line.rsplit("|", 1)[-1].strip()
        if name in heavy:
            heavy[name] = True
    worst = sorted(top.items(), key=lambda kv: -kv[1])[:5]
    return {"imports_s": round(sum(top.values()), 3),
            "top": [[name, round(seconds, 3)] for name, seconds in worst],
            "imports_torch": heavy["torch"], "imports_transformers": heavy["transformers"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="another source tree (its src/ folder) to compare with")
    args = parser.parse_args()

    from media import make_video
    from tiny_models import make_tiny_clip

    work = Path(tempfile.mkdtemp(prefix="videolens-bench-startup-"))
    video = make_video(work / "a.mp4", num_frames=30, fps=15)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # building the tiny model needs no hub
    tiny = make_tiny_clip(work / "tiny-clip")

    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(work / "hf-home"),
               VIDEOLENS_CACHE_DIR="off")  # cold text cache every run
    envs = {"this": env}
    if args.baseline:
        envs = {"baseline": {**env, "PYTHONPATH": str(Path(args.baseline).resolve())}, **envs}
    cli = [sys.executable, "-m", "videolens"]
    labels = ["--labels", "running, swimming, playing guitar"]
    cases = {
        "help": (cli + ["--help"], False),
        "usage-error": (cli + ["classify", str(video), "--top", "x"], False),
        "model-typo": (cli + ["classify", str(video), *labels, "--model", "clip-b23"], False),
        "offline": (cli + ["classify", str(video), *labels, "--model", "clip-b32"], False),
        "first-result": (cli + ["classify", str(video), *labels, "--model", str(tiny),
                                "--json", "--device", "cpu"], True),
    }
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = {}
    for name, (argv, first_line) in cases.items():
        results[name] = time_case(argv, envs, args.runs, first_line)
        for label, row in results[name].items():
            print(f"  {name:<13} {label:<9} best {row['best_s']:7.3f} s  median "
                  f"{row['median_s']:7.3f} s  ({row['runs']} runs, exit {row['exit_code']})",
                  flush=True)
    profiles = {label: {
        "help": import_profile(["-m", "videolens", "--help"], env),
        "first-result": import_profile(["-m", "videolens", *cases["first-result"][0][3:]], env),
    } for label, env in envs.items()}

    print("\nvideolens startup, wall time of a fresh process (best / median of "
          f"{args.runs}; slow cases once)")
    print("| case | " + " | ".join(envs) + " |\n|---|" + "---|" * len(envs))
    for name, rows in results.items():
        print(f"| {name} | " + " | ".join(
            f"{row['best_s']:.3f} / {row['median_s']:.3f} s (exit {row['exit_code']})"
            for row in rows.values()) + " |")
    for label, by_case in profiles.items():
        for name, profile in by_case.items():
            top = ", ".join(f"{module} {seconds:.2f}" for module, seconds in profile["top"])
            print(f"{label}: imports of {name}: {profile['imports_s']:.2f} s (torch: "
                  f"{profile['imports_torch']}, transformers: "
                  f"{profile['imports_transformers']}); largest: {top}")

    import torch
    import transformers

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "startup.json"
    out.write_text(json.dumps({
        "machine": machine_info(torch=torch.__version__, transformers=transformers.__version__),
        # a shared machine's load changes every figure: kept so readers can tell
        "load_average_1_5_15": {"start": load_before,
                                "end": os.getloadavg() if load_before else None},
        "runs_per_case": args.runs, "baseline": args.baseline, "cases": results,
        "imports": profiles}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
