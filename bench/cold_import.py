"""P3: cold-start import cost of each function module, against ``import boto3`` + one client.

Each figure is the median of N fresh interpreters timing the import in-process (perf_counter
around the import, interpreter start excluded). The baseline is the floor of any function that
touches DynamoDB: ``import boto3; boto3.client("dynamodb")``, measured in the same run.
Prints ``P3_cold_import_<function> <ratio>`` lines (and the milliseconds behind them).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
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


def main() -> None:
    baseline = median_ms("", BASELINE)
    print(f"# baseline import boto3 + one client: {baseline:.0f} ms (median of {RUNS})")
    for name in functions():
        took = median_ms(f"import sys; sys.path.insert(0, {str(FUNCTIONS / name)!r})", "import app")
        print(f"# {name}: {took:.0f} ms")
        print(f"P3_cold_import_{name} {took / baseline:.2f}")


if __name__ == "__main__":
    main()
