"""Lint template.yaml for every combination of its optional parameters (``make template-check``).

``sam validate --lint``, cfn-lint and checkov each see one set of parameter values: the defaults,
under which the optional parts (the egress VPC, the custom domain, tracing off, the alarm
address, production's deletion protection) do not exist or take one branch. This renders the
template once per combination of :data:`OPTIONAL` and checks each one, with no AWS account:

* the SAM transform (``samtranslator``, what ``sam validate`` and ``sam deploy`` run) with the
  combination's values: it must translate;
* cfn-lint (what ``sam validate --lint`` runs) with the combination's values as ``--parameters``;
* checkov, once over every rendered copy (each is the template with the combination's values as
  its parameters' defaults: checkov evaluates conditions with the defaults).

    python -m devicehooks_dev.templatelint [--checkov .tools/checkov/bin/checkov] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from devicehooks_dev.local.template import load_template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-4000-8000-000000000000"

# The optional parameters, each with the values that change what the stack holds (parameters that
# only fill an environment variable are not here: every value lints alike). Grouped parameters
# take their values together.
OPTIONAL: dict[tuple[str, ...], list[tuple[str, ...]]] = {
    ("Tracing",): [("Active",), ("PassThrough",), ("Disabled",)],
    ("StaticEgressIps",): [("false",), ("true",)],
    ("ApiDomainName", "ApiCertificateArn"): [("", ""), ("webhooks.example.com", CERTIFICATE)],
    ("AlarmEmail",): [("",), ("oncall@example.com",)],
}
REQUIRED = {"JwtPublicKeys": "-----BEGIN PUBLIC KEY-----"}  # no default: any value lints alike
# production (deletion protection on) with every optional part, once: Stage only flips booleans
PRODUCTION = {
    **REQUIRED,
    "Stage": "prod",
    "Tracing": "Active",
    "StaticEgressIps": "true",
    "ApiDomainName": "webhooks.example.com",
    "ApiCertificateArn": CERTIFICATE,
    "AlarmEmail": "oncall@example.com",
}


def combinations() -> Iterator[dict[str, str]]:
    """Every combination of :data:`OPTIONAL`'s values (on Stage dev), then :data:`PRODUCTION`."""
    for choice in itertools.product(*OPTIONAL.values()):
        values = {**REQUIRED, "Stage": "dev"}
        for names, chosen in zip(OPTIONAL, choice, strict=True):
            values.update(zip(names, chosen, strict=True))
        yield values
    yield dict(PRODUCTION)


def label(values: Mapping[str, str]) -> str:
    """A short name for a combination (a file name)."""
    parts = [f"Stage-{values['Stage']}"]
    for names in OPTIONAL:
        value = values[names[0]] or "none"
        parts.append(f"{names[0]}-{value.split('.')[0]}")
    return "_".join(parts)


def rendered(text: str, values: Mapping[str, str]) -> str:
    """template.yaml's text with ``values`` as its parameters' defaults, comments kept (checkov
    reads its skips there): each parameter's ``Default:`` line replaced, or added after its ``Type:``."""
    lines = text.splitlines(keepends=True)
    start = lines.index("Parameters:\n")
    for name, value in values.items():
        at = lines.index(f"  {name}:\n", start)
        end = next(i for i in range(at + 1, len(lines)) if not lines[i].startswith("    "))
        line = f"    Default: {json.dumps(value)}\n"
        default = next((i for i in range(at + 1, end) if lines[i].startswith("    Default:")), None)
        if default is not None:
            lines[default] = line
        else:
            kind = next(i for i in range(at + 1, end) if lines[i].startswith("    Type:"))
            lines.insert(kind + 1, line)
    return "".join(lines)


def translate(template: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """The SAM transform of ``template`` with ``values`` (raises when it cannot translate)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(dict(template))
    for resource in sam["Resources"].values():  # as `sam package` leaves the code: an S3 location
        for uri in ("CodeUri", "ContentUri"):
            if isinstance((resource.get("Properties") or {}).get(uri), str):
                resource["Properties"][uri] = "s3://devicehooks-artifacts/code.zip"
    parameters: dict[str, Any] = {"AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    parameters.update({k: p.get("Default") for k, p in sam["Parameters"].items() if "Default" in p})
    parameters.update(values)
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    cfn: dict[str, Any] = translator.translate(sam, parameter_values=parameters, get_managed_policy_map=lambda: {})
    return cfn


def cfn_lint(text: str, values: Mapping[str, str]) -> list[str]:
    """cfn-lint's findings on ``text`` with ``values`` (every rule, as ``sam validate --lint``)."""
    from cfnlint.api import lint
    from cfnlint.config import ManualArgs

    return [str(m) for m in lint(text, config=ManualArgs(regions=[REGION], parameters=[dict(values)]))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devicehooks_dev.templatelint", description=__doc__.split("\n")[0])
    parser.add_argument("--checkov", help="checkov's executable: also run it over every rendered copy")
    parser.add_argument("--out", default=str(ROOT / ".aws-sam" / "combinations"), help="where the copies go")
    args = parser.parse_args(argv)
    template = load_template(TEMPLATE)
    text = TEMPLATE.read_text()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)  # checkov reads every template in it: this run's only
    out.mkdir(parents=True)
    failed = 0
    count = 0
    for values in combinations():
        count += 1
        name = label(values)
        problems: list[str] = []
        try:
            translate(template, values)
        except Exception as exc:  # noqa: BLE001 - reported with its combination
            problems.append(f"SAM transform: {exc}")
        problems += cfn_lint(text, values)
        path = out / f"{name}.yaml"
        path.write_text(rendered(text, values))
        defaults = {k: str(p.get("Default")) for k, p in load_template(path)["Parameters"].items()}
        if {k: defaults[k] for k in values} != dict(values):
            problems.append(f"{path} does not hold the combination's values as defaults")
        if problems:
            failed += 1
            print(f"{name}:", *problems, sep="\n  ")
    print(f"SAM transform and cfn-lint: {count - failed} of {count} combinations clean")
    if args.checkov:
        env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
        command = [args.checkov, "--quiet", "--compact", "--skip-download", "--framework", "cloudformation"]
        result = subprocess.run([*command, "-d", str(out)], env=env, check=False)
        if result.returncode:
            failed += 1
        else:
            print(f"checkov: {count} combinations clean")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
