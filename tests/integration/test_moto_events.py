"""moto's EventBridge and the local stack's fix to it (devicehooks_dev.local.motofixes,
``eventbridge-jsonpath``): for each target of each event a rule matches, moto builds a jsonpath
parser per input path. Counted on moto's server in this process, a rule sending to SQS as the
stack's does.
"""

from __future__ import annotations

import json
from typing import Any

from devicehooks_dev.local import motofixes
from tests.conftest import moto_client
from tests.integration.mototools import counting, moto_in_process, pinned, still_needed

EVENTS = (1, 3)


def parsers_built(events: int) -> int:
    """How many jsonpath parsers moto builds to send ``events`` events through a rule to a queue."""
    from jsonpath_ng.ext.parser import ExtendedJsonPathParser

    with moto_in_process() as url:
        bus, sqs = moto_client("events", url), moto_client("sqs", url)
        queue = sqs.create_queue(QueueName="dispatch")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        bus.put_rule(Name="devices", EventPattern=json.dumps({"source": ["devicehooks.test"]}))
        bus.put_targets(Rule="devices", Targets=[{"Id": "dispatch", "Arn": arn}])
        entry = {"Source": "devicehooks.test", "DetailType": "device-provisioned", "Detail": '{"device": "d-1"}'}
        with counting(ExtendedJsonPathParser, "__init__") as built:
            for _ in range(events):
                assert bus.put_events(Entries=[entry])["FailedEntryCount"] == 0
        sent = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
        assert sent["Attributes"]["ApproximateNumberOfMessages"] == str(events)
    return built.calls


def test_moto_builds_jsonpath_parsers_for_every_event() -> None:
    with motofixes.using():
        counts = [parsers_built(n) for n in EVENTS]
    still_needed("eventbridge-jsonpath", counts[1] > counts[0] > 0, f"parsers built for {EVENTS} events: {counts}")


@pinned
def test_with_the_fix_a_paths_parser_is_built_once() -> None:
    from moto.events.utils import EventTemplateParser

    paths = len(EventTemplateParser.DEFAULT_EVENT_INPUT_PATHS_MAP)  # a target with moto's default input
    for events in EVENTS:
        with motofixes.using("eventbridge-jsonpath"):
            assert parsers_built(events) == paths


def transformed() -> list[Any]:
    """What moto makes of an event for a target with the default input and with a transformer."""
    from moto.events.utils import EventTemplateParser

    event: Any = {
        "version": "0",
        "id": "e-1",
        "detail-type": "device-provisioned",
        "source": "devicehooks.test",
        "account": "123456789012",
        "time": 1767225600.0,
        "region": "us-east-1",
        "resources": [],
        "detail": {"device": "d-1", "tenant": "t-1", "attributes": [{"name": "mac", "value": "00:11"}]},
        "ingestion-time": 1767225600.0,
    }
    paths = {"device": "$.detail.device", "mac": "$.detail.attributes[?(@.name == 'mac')].value", "none": "$.nope"}
    template = '{"device": "<device>", "mac": "<mac>", "none": "<none>", "whole": <aws.events.event.json>}'
    return [EventTemplateParser.parse(None, {}, event), EventTemplateParser.parse(template, paths, event)] * 2


@pinned
def test_with_the_fix_events_are_transformed_as_moto_does() -> None:
    with motofixes.using():
        as_moto = transformed()
    with motofixes.using("eventbridge-jsonpath"):
        assert transformed() == as_moto
