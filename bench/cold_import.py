"""P3: cold-start import cost of each function module, against ``import boto3`` + one client.

Each figure is the median of N fresh interpreters timing the import in-process (perf_counter
around the import, interpreter start excluded). The baseline is the floor of any function that
touches DynamoDB: ``import boto3; boto3.client("dynamodb")``, measured in the same run.
Prints ``P3_cold_import_<function> <ratio>`` lines (and the milliseconds behind them).

The functions import the devicehooks package as the layer ships it: a copy compiled the way
layers/common/Makefile compiles the layer (unchecked-hash bytecode; Lambda's /opt is read-only,
so without it every cold start compiles every module). Third-party packages come from .venv,
compiled by pip as the layer's are by its build. ``BENCH_NO_BYTECODE=1`` measures the package
compiled at import instead (what a layer built by SAM's python3.12 builder, which ships no
bytecode, costs on top, for the package alone).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))

ENV = {
    **os.environ,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "DEVICEHOOKS_INTEGRATIONS_TABLE": "integrations",
    "DEVICEHOOKS_ACTIVITY_TABLE": "activity",
    "DEVICEHOOKS_EVENT_BUS": "bus",
    "DEVICEHOOKS_RETRY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/retry",
    "DEVICEHOOKS_DELIVERY_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/delivery-dlq",
    "DEVICEHOOKS_DISPATCH_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dispatch-dlq",
    "DEVICEHOOKS_DISPATCH_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dispatch",
    "DEVICEHOOKS_SECRETS_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/bench",
    "DEVICEHOOKS_JWT_PUBLIC_KEYS": "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
    "POWERTOOLS_SERVICE_NAME": "bench",
}

BASELINE = "import boto3; boto3.client('dynamodb')"


def _time(setup: str, statement: str, cwd: Path | None = None) -> float:
    code = f"{setup}\nimport time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def median_ms(setup: str, statement: str, cwd: Path | None = None) -> float:
    return statistics.median(_time(setup, statement, cwd) for _ in range(RUNS)) * 1000


def functions() -> list[str]:
    return sorted(p.name for p in FUNCTIONS.iterdir() if (p / "app.py").is_file())


def layer_copy(into: Path) -> Path:
    """The devicehooks package as the layer ships it, under ``into``; returns the directory for sys.path."""
    site = into / "python"
    shutil.copytree(ROOT / "layers" / "common" / "devicehooks", site / "devicehooks")
    if not os.environ.get("BENCH_NO_BYTECODE"):
        command = [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(site)]
        subprocess.run(command, check=True)
    return site


def main() -> None:
    baseline = median_ms("", BASELINE)
    print(f"# baseline import boto3 + one client: {baseline:.0f} ms (median of {RUNS})")
    with tempfile.TemporaryDirectory(prefix="bench-p3-") as tmp:
        site = layer_copy(Path(tmp))
        for name in functions():
            setup = f"import sys; sys.path[:0] = [{str(FUNCTIONS / name)!r}, {str(site)!r}]"
            check = f"import devicehooks; assert devicehooks.__file__.startswith({str(site)!r}), devicehooks.__file__"
            _time(setup, check)  # the layer's copy is the one imported, not .venv's editable install
            took = median_ms(setup, "import app")
            print(f"# {name}: {took:.0f} ms")
            print(f"P3_cold_import_{name} {took / baseline:.2f}")


if __name__ == "__main__":
    main()
