"""What the event filters and webhook health cost in DynamoDB: requests and request units per
delivery with and without the two filter indexes, and per read (counted by bench/dynamometer.py).

Not part of ``make bench``: run ``cd bench && ../.venv/bin/python filter_costs.py``. The production
dispatcher (real stores, the real sender, retries kept in memory) runs in this process against
moto's server (also in this process: only units and requests are counted, never time) and a
receiver that answers 200. Scenarios as P1 (bench/delivery.py): ``1x1`` events to one webhook,
one batch each; ``10x1`` batches of ten; ``1x5`` events to five webhooks. "before" is a table without
the filter indexes, with neither the markers' state keys moved nor attempts counted (the new item
attributes are still written: 62 bytes here, ~130 with a 24-character tenant and a 36-character
device id, which move no item of these scenarios across a 1 KB boundary).
"""

from __future__ import annotations

import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import benchlib
import dynamometer
from benchlib import bus_event

EVENTS = 30
WEBHOOKS = {"1x1": 1, "10x1": 1, "1x5": 5}
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


FILTER_INDEXES = ("by_device", "by_state")


def _without_filter_indexes(template: dict[str, Any]) -> dict[str, Any]:
    """``template`` with an activity table as before the event filters: no ``by_device``, ``by_state``."""
    props = template["Resources"]["ActivityLogTable"]["Properties"]
    props["GlobalSecondaryIndexes"] = [
        g for g in props["GlobalSecondaryIndexes"] if g["IndexName"] not in FILTER_INDEXES
    ]
    props["AttributeDefinitions"] = [
        a for a in props["AttributeDefinitions"] if a["AttributeName"] not in ("gsi3pk", "gsi4pk")
    ]
    return template


def _tables(indexes: str) -> tuple[Any, Any, str, str]:
    """A moto server with the template's tables (``indexes="0"``: without the filter indexes), a
    client, the names."""
    from moto.server import ThreadedMotoServer

    from devicehooks import aws
    from devicehooks_dev.local import motofixes
    from devicehooks_dev.local.stack import create_resources
    from devicehooks_dev.local.template import load_template

    if motofixes.enabled():
        motofixes.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({**AWS_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"})
    aws.reset_clients()
    template = load_template(benchlib.ROOT / "template.yaml")
    if indexes == "0":
        template = _without_filter_indexes(template)
    _, physical = create_resources(template, {"JwtPublicKeys": "unused"})
    return (
        server,
        aws.client("dynamodb"),
        physical["IntegrationsTable"]["TableName"],
        physical["ActivityLogTable"]["TableName"],
    )


def measure(indexes: str, receiver: benchlib.Receiver, pool: ThreadPoolExecutor) -> dict[str, dict[str, float]]:
    """Per-delivery figures with the filter indexes (``indexes="2"``), or as before them and the
    health counts (``"0"``: no filter index, and neither markers moved nor attempts counted)."""
    from devicehooks_dev.doubles import PlainTestCipher

    server, client, integrations_table, activity_table = _tables(indexes)
    template = benchlib.template()
    shapes = {
        integrations_table: dynamometer.TableShape.from_template(template["Resources"]["IntegrationsTable"]),
        activity_table: dynamometer.TableShape.from_template(template["Resources"]["ActivityLogTable"]),
    }
    if indexes == "0":
        shapes[activity_table] = dynamometer.TableShape(
            keys=shapes[activity_table].keys, indexes=shapes[activity_table].indexes[:2]
        )
    cipher = PlainTestCipher()
    out: dict[str, dict[str, float]] = {}
    try:
        for scenario, hooks in WEBHOOKS.items():
            meter = dynamometer.Meter()
            integrations, activity = benchlib.dynamo_stores(
                integrations_table, activity_table, dynamometer.MeteredClient(client, shapes, meter)
            )
            for n in range(hooks):
                benchlib.add_webhook(integrations, cipher, scenario, receiver.url(f"/{scenario}/{n}"))
            if indexes == "0":
                activity.count_attempts = lambda *_: None
                activity._deliveries._mark = lambda *_, **__: None  # noqa: SLF001
            dispatcher = benchlib.dispatcher(integrations, activity, cipher)
            for warm in range(2):  # warm: the webhooks proven, as on the happy path
                benchlib.one_batch(dispatcher, [bus_event(scenario, f"warm-{warm}")])
            meter.reset()
            bodies = [bus_event(scenario, f"dev-{n}") for n in range(EVENTS)]
            if scenario == "10x1":
                for start in range(0, EVENTS, 10):
                    benchlib.one_batch(dispatcher, bodies[start : start + 10], pool)
            else:
                for body in bodies:
                    benchlib.one_batch(dispatcher, [body])
            deliveries = EVENTS * hooks
            out[scenario] = {
                "requests": meter.total_requests / deliveries,
                "wru": meter.write_units / deliveries,
                "rru": meter.read_units / deliveries,
                **{op: n / deliveries for op, n in meter.requests.items()},
            }
            if indexes != "0" and scenario == "1x5":
                out["reads"] = reads(integrations, activity, meter, scenario)
    finally:
        urllib.request.urlopen(
            urllib.request.Request(f"{os.environ['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"), timeout=30
        ).close()
        server.stop()
    return out


def reads(integrations: Any, activity: Any, meter: dynamometer.Meter, tenant: str) -> dict[str, float]:
    """Requests and read units of one page of 20 (a filtered list) and of one health view."""
    from devicehooks.domain.activity import EventFilter
    from devicehooks.services.health import HealthService

    hooks = integrations.list_tenant(tenant)
    found: dict[str, float] = {}
    views = {
        "page_unfiltered": (None, None),
        "page_device": (None, EventFilter(device_id="dev-3")),
        "page_status_tenant": (None, EventFilter(state="delivered")),
        "page_status_webhook": (hooks[1].id, EventFilter(state="delivered")),
        "page_status_type_webhook": (hooks[1].id, EventFilter(state="delivered", type="device-status-changed")),
        "page_type_tenant": (None, EventFilter(type="device-status-changed")),
        "page_device_webhook": (hooks[1].id, EventFilter(device_id="dev-3")),
    }
    for name, (integration_id, only) in views.items():
        meter.reset()
        listed = activity.list_events(tenant, 1, 20, integration_id, only)
        found[f"{name}_requests"] = meter.total_requests
        found[f"{name}_rru"] = meter.read_units
        found[f"{name}_events"] = len(listed)
    meter.reset()
    service = HealthService(integrations, activity, 5 * 24 * 3600)
    service.health(tenant, hooks[0].id)
    found["health_requests"] = meter.total_requests
    found["health_rru"] = meter.read_units
    return found


def main() -> None:
    benchlib.quiet()
    with benchlib.receiver() as receiver, ThreadPoolExecutor(10) as pool:
        before = measure("0", receiver, pool)
        after = measure("2", receiver, pool)
    out = benchlib.OUT
    print(
        f"filter costs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {EVENTS} events per scenario, per delivery:", file=out
    )
    for scenario in WEBHOOKS:
        b, a = before[scenario], after[scenario]
        calls = ", ".join(f"{k} {v:.2f}" for k, v in sorted(a.items()) if k not in ("requests", "wru", "rru"))
        print(
            f"  {scenario}: requests {b['requests']:.2f} -> {a['requests']:.2f}, "
            f"WRU {b['wru']:.2f} -> {a['wru']:.2f}, RRU {b['rru']:.2f} -> {a['rru']:.2f}  ({calls})",
            file=out,
        )
    print("reads:", {k: round(v, 2) for k, v in after["reads"].items()}, file=out)


if __name__ == "__main__":
    main()
