"""devicehooks-relay: Mender's workflows reach devicehooks' IAM-authorized internal API through it.

Mender's workflows worker calls iot-manager at ``http://$IOT_MANAGER_ADDR/api/internal/v1/iot-manager/...``:
plain HTTP, no credentials. Deployed, devicehooks' internal routes take only requests signed with
SigV4 for ``execute-api``. The relay runs in Mender's network as ``IOT_MANAGER_ADDR``, signs each
request with the credentials of its environment (botocore's chain: a role, a profile or keys) and
forwards it; see docs/mender.md.

An operations component, never shipped in the Lambda layer: it needs botocore and urllib3 only
(``deploy/mender/relay.Dockerfile``).
"""
