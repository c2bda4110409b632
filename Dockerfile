# otlpd as a small container: config by environment, health on :9464, clean SIGTERM.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY otlpd ./otlpd
COPY storage ./storage
COPY query ./query
COPY alerting ./alerting
RUN python -m venv /opt/otlpd \
 && /opt/otlpd/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim
RUN useradd --system --uid 10001 otlpd && mkdir /data && chown otlpd /data
COPY --from=build /opt/otlpd /opt/otlpd
USER otlpd
# A container's ports are meant to be reached from outside it, so it requires tokens from
# the start (and therefore listens on every interface): make one with
#   docker compose exec otlpd otlpd tokens create --project P --scope ingest
ENV PATH=/opt/otlpd/bin:$PATH \
    OTLPD_DATA_DIR=/data \
    OTLPD_AUTH=required \
    PYTHONUNBUFFERED=1
EXPOSE 4317 4318 4319 9464
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/readyz').status != 200)"
# exec form: otlpd is PID 1 and receives SIGTERM itself.
ENTRYPOINT ["otlpd"]
CMD ["serve"]
