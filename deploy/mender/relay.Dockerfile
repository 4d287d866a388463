# devicehooks-relay (docs/mender.md): Mender's workflows' iot-manager calls, signed with SigV4, to
# devicehooks' internal API. Build from the repository's root:
#
#   docker build -f deploy/mender/relay.Dockerfile -t devicehooks-relay .
#
# It holds the relay's package and what it imports (botocore, urllib3), at the versions the tests
# ran with (constraints.txt); nothing of the Lambda layer, the local stack or the tests.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY constraints.txt /app/constraints.txt
RUN pip install -c /app/constraints.txt botocore urllib3 && rm /app/constraints.txt
COPY devicehooks_relay /app/devicehooks_relay
RUN python -m compileall -q /app/devicehooks_relay

# not root: the relay only listens and sends
USER 65534:65534
EXPOSE 8080
# the relay's own health (it never asks devicehooks: see docs/mender.md, "Keeping the relay up")
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["python", "-m", "devicehooks_relay"]
