# syntax=docker/dockerfile:1
#
# The connector image of the kind end-to-end test (hack/e2e-kind.sh, chart value
# cloudflared.image): the operator image with the cloudflared stand-in (cloudflared_stub.py) as
# entrypoint, since the operator gives the connector container cloudflared's arguments only and
# keeps the image's entrypoint. Build context: hack/e2e/.
ARG OPERATOR_IMAGE=cftunnel-operator:e2e
FROM ${OPERATOR_IMAGE}
COPY cloudflared_stub.py /opt/e2e/cloudflared_stub.py
USER 65532:65532
ENTRYPOINT ["python", "/opt/e2e/cloudflared_stub.py"]
